//! kiln's batch normalisation against Burn's `BatchNorm::forward`: outputs, running statistics
//! and the gradients of the input, γ and β — training, frozen statistics, inference — on several
//! ranks and shapes; and the path taken.

use burn::module::{Param, RunningState};
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::{Device, Tensor, TensorData};

use super::{FusedActivation, forward_activated};
use crate::test_util::LocalNormal;

/// Input shapes: image maps, a `[batch, features]` table, a sequence, one sample of 1×1 maps.
const SHAPES: [&[usize]; 5] = [
    &[4, 5, 6, 7],
    &[8, 3],
    &[2, 3, 5],
    &[1, 4, 1, 1],
    &[3, 16, 9, 9],
];

fn draw(normal: &mut LocalNormal, shape: &[usize], offset: f32) -> TensorData {
    let values = normal
        .values(shape.iter().product())
        .into_iter()
        .map(|v| v as f32 * 1.5 + offset)
        .collect::<Vec<_>>();
    TensorData::new(values, shape.to_vec())
}

/// A batch norm over `channels` with random γ, β and running statistics (momentum 0.2).
fn layer(channels: usize, seed: u64, device: &Device, training: bool) -> BatchNorm {
    let mut normal = LocalNormal::new(seed);
    let mut norm = BatchNormConfig::new(channels)
        .with_momentum(0.2)
        .with_epsilon(1e-3)
        .init(device);
    let vector = |t: TensorData| Tensor::<1>::from_data(t, device);
    norm.gamma = Param::from_tensor(vector(draw(&mut normal, &[channels], 1.0)));
    norm.beta = Param::from_tensor(vector(draw(&mut normal, &[channels], 0.0)));
    norm.running_mean = RunningState::new(vector(draw(&mut normal, &[channels], 0.5)));
    let var = draw(&mut normal, &[channels], 0.0)
        .try_to_vec::<f32>()
        .unwrap();
    let var: Vec<f32> = var.iter().map(|v| v * v + 0.1).collect();
    norm.running_var = RunningState::new(vector(TensorData::new(var, [channels])));
    if !training {
        norm.training = norm.training.with_value(false);
    }
    norm
}

/// Output, running statistics and gradients (input, γ, β) of `Σ r · norm(x)`.
#[derive(Debug)]
struct Run {
    out: Vec<f32>,
    running: [Vec<f32>; 2],
    grads: Vec<Vec<f32>>,
}

fn run<const D: usize>(
    shape: &[usize],
    seed: u64,
    training: bool,
    device: &Device,
    apply: impl Fn(&BatchNorm, Tensor<D>) -> Tensor<D>,
) -> Run {
    let norm = layer(shape[1], seed, device, training);
    let mut normal = LocalNormal::new(seed + 1000);
    let x = Tensor::<D>::from_data(draw(&mut normal, shape, 2.0), device);
    let x = if device.is_autodiff() {
        x.require_grad()
    } else {
        x
    };
    let out = apply(&norm, x.clone());
    let vec = |t: TensorData| t.try_to_vec::<f32>().unwrap();
    let running = [
        vec(norm.running_mean.value_sync().into_data()),
        vec(norm.running_var.value_sync().into_data()),
    ];
    let mut grads = Vec::new();
    if device.is_autodiff() {
        let r = Tensor::<D>::from_data(draw(&mut normal, &out.dims(), 0.0), device);
        let g = (out.clone() * r).sum().backward();
        grads.push(vec(x.grad(&g).unwrap().into_data()));
        grads.push(vec(norm.gamma.val().grad(&g).unwrap().into_data()));
        grads.push(vec(norm.beta.val().grad(&g).unwrap().into_data()));
    }
    Run {
        out: vec(out.into_data()),
        running,
        grads,
    }
}

fn assert_close(what: &str, shape: &[usize], got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what} of {shape:?}");
    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 2e-5 * scale,
            "{what}[{i}] of {shape:?}: kiln {g}, Burn {w} (scale {scale})"
        );
    }
}

fn compare(shape: &[usize], kiln: Run, burn: Run) {
    assert_close("output", shape, &kiln.out, &burn.out);
    assert_close("running mean", shape, &kiln.running[0], &burn.running[0]);
    assert_close("running var", shape, &kiln.running[1], &burn.running[1]);
    assert_eq!(kiln.grads.len(), burn.grads.len());
    for (name, (got, want)) in ["input grad", "γ grad", "β grad"]
        .iter()
        .zip(kiln.grads.iter().zip(&burn.grads))
    {
        assert_close(name, shape, got, want);
    }
}

/// Burn's `activation` of `y`, from Burn's own operations.
fn burns<const D: usize>(activation: FusedActivation, y: Tensor<D>) -> Tensor<D> {
    match activation {
        FusedActivation::Identity => y,
        FusedActivation::Relu => burn::tensor::activation::relu(y),
        FusedActivation::Relu6 => y.clamp(0.0, 6.0),
    }
}

const ACTIVATIONS: [FusedActivation; 3] = [
    FusedActivation::Identity,
    FusedActivation::Relu,
    FusedActivation::Relu6,
];

/// Runs kiln's forward (with `activation` fused) and Burn's forward then activation on the same
/// layer and input, for the shape's rank.
fn both(
    shape: &[usize],
    seed: u64,
    training: bool,
    device: &Device,
    activation: FusedActivation,
) -> (Run, Run) {
    macro_rules! rank {
        ($d:literal) => {
            (
                run::<$d>(shape, seed, training, device, |n, x| {
                    forward_activated(n, x, activation)
                }),
                run::<$d>(shape, seed, training, device, |n, x| {
                    burns(activation, n.forward(x))
                }),
            )
        };
    }
    match shape.len() {
        2 => rank!(2),
        3 => rank!(3),
        4 => rank!(4),
        r => panic!("no test rank {r}"),
    }
}

#[test]
fn training_equals_burns_outputs_statistics_and_gradients() {
    let device = Device::flex().autodiff();
    for (k, shape) in SHAPES.iter().enumerate() {
        let activation = ACTIVATIONS[k % 3];
        let (kiln, burn) = both(shape, k as u64, true, &device, activation);
        // The running statistics moved towards the batch's.
        let before = layer(shape[1], k as u64, &device, true);
        let before = before.running_mean.value().into_data();
        assert_ne!(kiln.running[0], before.try_to_vec::<f32>().unwrap());
        compare(shape, kiln, burn);
    }
}

#[test]
fn frozen_statistics_equal_burns_and_stay_put() {
    let device = Device::flex().autodiff();
    for (k, shape) in SHAPES.iter().enumerate() {
        let seed = 50 + k as u64;
        let (kiln, burn) = both(shape, seed, false, &device, ACTIVATIONS[(k + 1) % 3]);
        let before = layer(shape[1], seed, &device, false);
        assert_eq!(
            kiln.running[1],
            before
                .running_var
                .value()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        );
        compare(shape, kiln, burn);
    }
}

#[test]
fn inference_equals_burns() {
    let device = Device::flex();
    for (k, shape) in SHAPES.iter().enumerate() {
        let (kiln, burn) = both(shape, 100 + k as u64, true, &device, ACTIVATIONS[k % 3]);
        compare(shape, kiln, burn);
    }
}

/// The comparisons above test kiln's kernels, not a fallback.
#[test]
fn flex_tensors_take_kilns_path() {
    let one = |device: &Device| Tensor::<1>::ones([3], device);
    for device in [Device::flex(), Device::flex().autodiff()] {
        let x = Tensor::<4>::zeros([2, 3, 4, 4], &device);
        let affine =
            super::flex::channel_affine(&x, &one(&device), &one(&device), FusedActivation::Relu);
        assert!(affine.is_some());
    }
    let device = Device::flex().autodiff();
    let x = Tensor::<4>::zeros([2, 3, 4, 4], &device);
    let train = |x: &Tensor<4>, device: &Device| {
        super::flex::batch_norm_train(x, &one(device), &one(device), 1e-5, FusedActivation::Relu6)
            .is_some()
    };
    assert!(train(&x, &device));
    let plain = Device::flex();
    assert!(!train(&Tensor::<4>::zeros([2, 3, 4, 4], &plain), &plain));
}

#[test]
fn a_half_input_is_normalised_in_the_layers_f32_and_handed_back_in_half() {
    use burn::tensor::{DType, FloatDType};
    let device = Device::flex().autodiff();
    let shape = [4, 5, 6, 7];
    // The same layer and input through the half path, and in f32 on the input rounded to half
    // (the only rounding before the f32 normalisation).
    let half = run::<4>(&shape, 9, true, &device, |n, x| {
        let y = forward_activated(n, x.cast(FloatDType::F16), FusedActivation::Relu);
        assert_eq!(y.dtype(), DType::F16, "the output has the input's type");
        assert_eq!(n.running_mean.value_sync().dtype(), DType::F32);
        assert_eq!(n.running_var.value_sync().dtype(), DType::F32);
        y.cast(FloatDType::F32)
    });
    let full = run::<4>(&shape, 9, true, &device, |n, x| {
        let rounded = x.cast(FloatDType::F16).cast(FloatDType::F32);
        forward_activated(n, rounded, FusedActivation::Relu)
    });
    // Statistics are computed in f32 from the same values: equal.
    assert_close("running mean", &shape, &half.running[0], &full.running[0]);
    assert_close("running var", &shape, &half.running[1], &full.running[1]);
    // The output and the gradients pass through half once more: f16's 11-bit mantissa.
    let close = |what: &str, got: &[f32], want: &[f32]| {
        let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 2e-3 * scale,
                "{what}[{i}]: half path {g}, f32 {w}"
            );
        }
    };
    close("output", &half.out, &full.out);
    for (k, (got, want)) in half.grads.iter().zip(&full.grads).enumerate() {
        close(["input grad", "γ grad", "β grad"][k], got, want);
    }
}
