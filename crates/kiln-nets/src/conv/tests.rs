//! kiln's convolution against Burn's: outputs and the three gradients on random shapes, and
//! directional derivatives (exact for a bilinear map) as a gradient check.

use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};

use super::conv2d;
use crate::test_util::LocalNormal;

/// One convolution to compare: input `[n, c, h, w]`, `out` channels, groups, square kernel,
/// stride, `(before, after)` padding per axis, dilation.
#[derive(Clone, Copy, Debug)]
struct Case {
    input: [usize; 4],
    out: usize,
    groups: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [(usize, usize); 2],
    dilation: [usize; 2],
    bias: bool,
}

impl Case {
    fn options(&self) -> ConvOptions<2> {
        ConvOptions::new_with_padding(self.stride, self.padding, self.dilation, self.groups)
    }

    fn weight_shape(&self) -> [usize; 4] {
        [
            self.out,
            self.input[1] / self.groups,
            self.kernel[0],
            self.kernel[1],
        ]
    }
}

fn cases() -> Vec<Case> {
    let base = Case {
        input: [2, 6, 9, 11],
        out: 6,
        groups: 1,
        kernel: [3, 3],
        stride: [1, 1],
        padding: [(1, 1), (1, 1)],
        dilation: [1, 1],
        bias: true,
    };
    let depthwise = Case { groups: 6, ..base };
    vec![
        base,
        Case {
            kernel: [1, 1],
            padding: [(0, 0); 2],
            out: 10,
            ..base
        },
        Case {
            kernel: [1, 1],
            padding: [(0, 0); 2],
            stride: [2, 2],
            bias: false,
            ..base
        },
        Case {
            stride: [2, 2],
            padding: [(0, 1), (1, 0)],
            out: 4,
            ..base
        },
        Case {
            kernel: [5, 3],
            padding: [(2, 1), (0, 3)],
            dilation: [1, 2],
            ..base
        },
        Case {
            input: [3, 3, 8, 7],
            out: 5,
            stride: [2, 1],
            padding: [(0, 0); 2],
            ..base
        },
        // One image (each product on all threads) and a batch of one image per thread or
        // more (images in parallel).
        Case {
            input: [1, 6, 9, 11],
            ..base
        },
        Case {
            input: [8, 3, 7, 6],
            out: 5,
            ..base
        },
        depthwise,
        Case {
            bias: false,
            ..depthwise
        },
        Case {
            stride: [2, 2],
            padding: [(0, 1), (0, 1)],
            ..depthwise
        },
        Case {
            kernel: [5, 5],
            stride: [2, 2],
            padding: [(1, 2), (2, 1)],
            ..depthwise
        },
        Case {
            kernel: [3, 3],
            dilation: [2, 3],
            padding: [(2, 2), (3, 3)],
            ..depthwise
        },
        Case {
            input: [1, 6, 4, 5],
            kernel: [5, 5],
            padding: [(2, 2); 2],
            ..depthwise
        },
        // Rows wider than the forward pass's block of columns, with a remainder; stride 2
        // with TensorFlow's "same" padding (the extra column after) and with dilation.
        Case {
            input: [2, 6, 5, 150],
            ..depthwise
        },
        Case {
            input: [1, 6, 6, 261],
            kernel: [5, 5],
            stride: [2, 2],
            padding: [(1, 2), (1, 2)],
            ..depthwise
        },
        Case {
            input: [1, 6, 7, 133],
            stride: [1, 3],
            dilation: [2, 2],
            padding: [(2, 0), (0, 2)],
            ..depthwise
        },
        // Neither ungrouped nor depthwise: Burn's gradients.
        Case {
            groups: 2,
            out: 4,
            ..base
        },
        Case {
            groups: 3,
            out: 6,
            kernel: [1, 1],
            padding: [(0, 0); 2],
            ..base
        },
    ]
}

/// Output and gradients (input, weight, bias) of `Σ r·conv(x, w, b)`.
struct Run {
    out: Vec<f32>,
    grads: Vec<Vec<f32>>,
}

fn run(
    case: &Case,
    seed: u64,
    conv: impl Fn(Tensor<4>, Tensor<4>, Option<Tensor<1>>) -> Tensor<4>,
) -> Run {
    let device = Device::flex().autodiff();
    let mut normal = LocalNormal::new(seed);
    let mut tensor = |shape: &[usize]| {
        let values: Vec<f32> = normal
            .values(shape.iter().product())
            .into_iter()
            .map(|v| v as f32)
            .collect();
        TensorData::new(values, shape.to_vec())
    };
    let x = Tensor::<4>::from_data(tensor(&case.input), &device).require_grad();
    let w = Tensor::<4>::from_data(tensor(&case.weight_shape()), &device).require_grad();
    let b = case
        .bias
        .then(|| Tensor::<1>::from_data(tensor(&[case.out]), &device).require_grad());
    let out = conv(x.clone(), w.clone(), b.clone());
    let r = Tensor::<4>::from_data(tensor(&out.dims()), &device);
    let grads = (out.clone() * r).sum().backward();
    let values = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().unwrap();
    let mut all = vec![
        values(x.grad(&grads).unwrap()),
        values(w.grad(&grads).unwrap()),
    ];
    if let Some(b) = b {
        all.push(
            b.grad(&grads)
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap(),
        );
    }
    Run {
        out: values(out),
        grads: all,
    }
}

fn assert_close(what: &str, case: &Case, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what} of {case:?}");
    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * scale,
            "{what}[{i}] of {case:?}: kiln {g}, Burn {w} (scale {scale})"
        );
    }
}

#[test]
fn forward_and_gradients_equal_burns() {
    for (k, case) in cases().iter().enumerate() {
        let options = case.options();
        let kiln = run(case, k as u64, |x, w, b| conv2d(x, w, b, options.clone()));
        let burn = run(case, k as u64, |x, w, b| {
            burn::tensor::module::conv2d(x, w, b, options.clone())
        });
        assert_close("output", case, &kiln.out, &burn.out);
        for (name, (got, want)) in ["input grad", "weight grad", "bias grad"]
            .iter()
            .zip(kiln.grads.iter().zip(&burn.grads))
        {
            assert_close(name, case, got, want);
        }
    }
}

#[test]
fn inference_equals_burns() {
    let device = Device::flex();
    for (k, case) in cases().iter().enumerate() {
        let mut normal = LocalNormal::new(100 + k as u64);
        let x = normal
            .tensor(case.input, 1.0, &device)
            .cast(burn::tensor::DType::F32);
        let w = normal
            .tensor(case.weight_shape(), 1.0, &device)
            .cast(burn::tensor::DType::F32);
        let b = normal
            .tensor([case.out], 1.0, &device)
            .cast(burn::tensor::DType::F32);
        let got = conv2d(x.clone(), w.clone(), Some(b.clone()), case.options());
        let want = burn::tensor::module::conv2d(x, w, Some(b), case.options());
        assert_close(
            "inference output",
            case,
            &got.into_data().try_to_vec::<f32>().unwrap(),
            &want.into_data().try_to_vec::<f32>().unwrap(),
        );
    }
}

/// The convolution is linear in the input and in the weight, so `L(x + d) − L(x)` is exactly
/// `⟨∇L, d⟩` for any step: kiln's gradients checked against the forward pass alone.
#[test]
fn gradients_match_directional_differences() {
    for (k, case) in cases().iter().enumerate() {
        let options = case.options();
        let device = Device::flex().autodiff();
        let mut normal = LocalNormal::new(200 + k as u64);
        let mut draw = |shape: &[usize]| -> Vec<f32> {
            normal
                .values(shape.iter().product())
                .into_iter()
                .map(|v| v as f32)
                .collect()
        };
        let (xv, wv) = (draw(&case.input), draw(&case.weight_shape()));
        let (dxv, dwv) = (draw(&case.input), draw(&case.weight_shape()));
        let tensor = |v: &[f32], shape: [usize; 4]| {
            Tensor::<4>::from_data(TensorData::new(v.to_vec(), shape), &device)
        };
        let x = tensor(&xv, case.input).require_grad();
        let w = tensor(&wv, case.weight_shape()).require_grad();
        let out = conv2d(x.clone(), w.clone(), None, options.clone());
        let r = Tensor::<4>::from_data(TensorData::new(draw(&out.dims()), out.dims()), &device);
        let loss = |x: Tensor<4>, w: Tensor<4>| -> f64 {
            let out = conv2d(x, w, None, options.clone());
            (out * r.clone()).sum().into_scalar::<f32>() as f64
        };
        let base = loss(x.clone(), w.clone());
        let grads = (out * r.clone()).sum().backward();
        let dot = |g: Tensor<4>, d: &[f32]| -> f64 {
            let g = g.into_data().try_to_vec::<f32>().unwrap();
            g.iter().zip(d).map(|(a, b)| *a as f64 * *b as f64).sum()
        };
        let along_x = loss(tensor(&add(&xv, &dxv), case.input), w.clone()) - base;
        let along_w = loss(x.clone(), tensor(&add(&wv, &dwv), case.weight_shape())) - base;
        let predicted_x = dot(x.grad(&grads).unwrap(), &dxv);
        let predicted_w = dot(w.grad(&grads).unwrap(), &dwv);
        for (what, got, want) in [
            ("input", predicted_x, along_x),
            ("weight", predicted_w, along_w),
        ] {
            assert!(
                (got - want).abs() <= 1e-3 * (1.0 + want.abs()),
                "{what} direction of {case:?}: gradient says {got}, difference {want}"
            );
        }
    }
}

fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// The comparisons above test kiln's kernels, not a fallback: Flex tensors, with autodiff
/// and without, take kiln's path.
#[test]
fn flex_tensors_take_kilns_path() {
    for device in [Device::flex(), Device::flex().autodiff()] {
        for case in cases() {
            let x = Tensor::<4>::zeros(case.input, &device);
            let w = Tensor::<4>::zeros(case.weight_shape(), &device);
            let b = Tensor::<1>::zeros([case.out], &device);
            let taken = super::flex::conv2d(&x, &w, Some(&b), &case.options()).is_some();
            assert!(taken, "{case:?} on {device:?}");
        }
    }
}

/// [`dense::forward`] on every ungrouped case, 1×1 layers included (on Flex those run Flex's
/// kernel, so the comparisons above do not reach this path for them).
#[test]
fn dense_forward_equals_burns_for_every_ungrouped_case() {
    use super::{ConvGeometry, dense};
    let device = Device::flex();
    for (k, case) in cases().iter().enumerate().filter(|(_, c)| c.groups == 1) {
        let mut normal = LocalNormal::new(300 + k as u64);
        let mut values =
            |n: usize| -> Vec<f32> { normal.values(n).into_iter().map(|v| v as f32).collect() };
        let x = values(case.input.iter().product());
        let w = values(case.weight_shape().iter().product());
        let b = values(case.out);
        let g = ConvGeometry::new(case.input, case.weight_shape(), &case.options()).unwrap();
        let got = dense::forward(&g, &x, &w, case.bias.then_some(&b[..]));
        let want = burn::tensor::module::conv2d(
            Tensor::<4>::from_data(TensorData::new(x, case.input), &device),
            Tensor::<4>::from_data(TensorData::new(w, case.weight_shape()), &device),
            case.bias
                .then(|| Tensor::<1>::from_data(TensorData::new(b, [case.out]), &device)),
            case.options(),
        );
        assert_close(
            "dense forward",
            case,
            &got,
            &want.into_data().try_to_vec::<f32>().unwrap(),
        );
    }
}

#[test]
fn inside_an_autocast_scope_it_computes_in_half_and_returns_f32_gradients() {
    use burn::tensor::{DType, FloatDType};
    for (k, case) in cases().iter().enumerate().take(4) {
        let options = case.options();
        let half = run(case, k as u64, |x, w, b| {
            let y = crate::autocast::scope(FloatDType::F16, || conv2d(x, w, b, options.clone()));
            assert_eq!(y.dtype(), DType::F16, "{case:?}");
            y.cast(FloatDType::F32)
        });
        let full = run(case, k as u64, |x, w, b| {
            burn::tensor::module::conv2d(x, w, b, options.clone())
        });
        // `run` reads every gradient as f32: the casts hand them back in the leaves' type.
        for (name, (got, want)) in ["output", "input grad", "weight grad", "bias grad"]
            .iter()
            .zip(std::iter::once((&half.out, &full.out)).chain(half.grads.iter().zip(&full.grads)))
        {
            let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
            let worst = got
                .iter()
                .zip(want.iter())
                .map(|(g, w)| (g - w).abs())
                .fold(0f32, f32::max);
            assert!(
                worst <= 1e-2 * scale,
                "{name} of {case:?}: off by {worst} (scale {scale})"
            );
            assert!(
                worst > 0.0 || *name == "bias grad",
                "{name} of {case:?}: not computed in half"
            );
        }
    }
}
