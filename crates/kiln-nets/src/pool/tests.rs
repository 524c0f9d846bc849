//! kiln's max pool against Burn's: outputs and input gradients on Flex, with and without
//! autodiff, for the geometries kiln's networks use and odd ones around them.

use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Distribution, Tensor, TensorData};

/// Input shape, kernel, stride, symmetric padding, dilation.
type Case = ([usize; 4], [usize; 2], [usize; 2], [usize; 2], [usize; 2]);

fn cases() -> Vec<Case> {
    vec![
        // The conv nets' 2×2 pool, on even and odd sizes.
        ([3, 5, 8, 8], [2, 2], [2, 2], [0, 0], [1, 1]),
        ([2, 3, 9, 7], [2, 2], [2, 2], [0, 0], [1, 1]),
        // Rows long enough for the vector loops (33 windows: two blocks of 16 and a tail).
        ([2, 3, 7, 67], [2, 2], [2, 2], [0, 0], [1, 1]),
        // ResNet's stem pool.
        ([2, 4, 15, 16], [3, 3], [2, 2], [1, 1], [1, 1]),
        // Overlapping windows, rectangular windows and strides, dilation.
        ([1, 3, 10, 11], [3, 3], [1, 1], [0, 0], [1, 1]),
        ([2, 2, 12, 9], [3, 2], [2, 1], [1, 0], [1, 1]),
        ([1, 2, 13, 13], [3, 3], [2, 2], [1, 1], [2, 2]),
        ([2, 3, 8, 10], [2, 2], [2, 2], [0, 0], [2, 1]),
    ]
}

fn options((_, kernel, stride, padding, dilation): Case) -> MaxPoolOptions<2> {
    MaxPoolOptions::new(kernel)
        .with_stride(stride)
        .with_padding(padding)
        .with_dilation(dilation)
}

/// The pool's output and (on an autodiff device) the input gradient under a random upstream
/// gradient, through `pool`.
fn run(
    pool: impl Fn(Tensor<4>, MaxPoolOptions<2>) -> Tensor<4>,
    case: Case,
    x: &TensorData,
    upstream: &TensorData,
    device: &Device,
) -> (TensorData, Option<TensorData>) {
    let x = Tensor::<4>::from_data(x.clone(), device);
    let x = if device.is_autodiff() {
        x.require_grad()
    } else {
        x
    };
    let y = pool(x.clone(), options(case));
    let out = y.clone().into_data();
    if !device.is_autodiff() {
        return (out, None);
    }
    let w = Tensor::<4>::from_data(upstream.clone(), device);
    let grads = (y * w).sum().backward();
    (out, Some(x.grad(&grads).unwrap().into_data()))
}

/// The pool through kiln's kernel, failing when it would fall back to Burn's.
fn kilns_kernel(x: Tensor<4>, options: MaxPoolOptions<2>) -> Tensor<4> {
    let window = super::flex::Window {
        kernel: options.kernel_size,
        stride: options.stride,
        padding: options.padding.map(|(before, _)| before),
        dilation: options.dilation,
    };
    super::flex::max_pool2d(&x, window).expect("kiln's kernel takes this geometry")
}

/// kiln's kernel and Burn's give equal outputs and (with autodiff) equal input gradients.
fn assert_same_as_burns(
    case: Case,
    x: &TensorData,
    upstream: &TensorData,
    device: &Device,
    what: &str,
) {
    let (out, grad) = run(kilns_kernel, case, x, upstream, device);
    let (burn_out, burn_grad) = run(burn::tensor::module::max_pool2d, case, x, upstream, device);
    assert_eq!(out, burn_out, "{what} {case:?}: output");
    assert_eq!(grad, burn_grad, "{what} {case:?}: gradient");
}

#[test]
fn equals_burns_pool_and_gradient() {
    let flex = Device::flex();
    for (i, case) in cases().into_iter().enumerate() {
        let x = Tensor::<4>::random(case.0, Distribution::Normal(0.0, 1.0), &flex).into_data();
        let expected =
            burn::tensor::module::max_pool2d(Tensor::from_data(x.clone(), &flex), options(case));
        let upstream =
            Tensor::<4>::random(expected.dims(), Distribution::Normal(0.0, 1.0), &flex).into_data();
        for device in [flex.clone(), flex.clone().autodiff()] {
            assert_same_as_burns(case, &x, &upstream, &device, &format!("case {i}"));
        }
    }
}

#[test]
fn ties_route_the_gradient_like_burn() {
    // A constant input ties every window: the first position gets the gradient, and
    // overlapping windows add up.
    let device = Device::flex().autodiff();
    let case: Case = ([1, 2, 6, 6], [3, 3], [1, 1], [1, 1], [1, 1]);
    let x = TensorData::new(vec![0.5f32; 72], case.0);
    let upstream = TensorData::new((0..72).map(|v| v as f32).collect::<Vec<_>>(), case.0);
    assert_same_as_burns(case, &x, &upstream, &device, "ties");
}

#[test]
fn the_module_forward_matches_burns_layer() {
    use burn::nn::PaddingConfig2d;
    use burn::nn::pool::MaxPool2dConfig;
    let device = Device::flex().autodiff();
    let x = Tensor::<4>::random([2, 3, 9, 10], Distribution::Normal(0.0, 1.0), &device);
    for layer in [
        MaxPool2dConfig::new([2, 2]).init(),
        MaxPool2dConfig::new([3, 3])
            .with_strides([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(),
        // "Same" padding is asymmetric here: Burn's kernels take it.
        MaxPool2dConfig::new([2, 2])
            .with_strides([1, 1])
            .with_padding(PaddingConfig2d::Same)
            .init(),
    ] {
        assert_eq!(
            super::forward(&layer, x.clone()).into_data(),
            layer.forward(x.clone()).into_data()
        );
    }
}
