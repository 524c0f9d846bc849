//! Shared test helpers: gradient checks of whole networks in f64.

use burn::module::Module;
use burn::tensor::{DType, Device, Distribution, Tensor};
use kiln_classic::gradcheck::{CastFloat, GradCheckOptions, check_module};

/// Casts `model` to f64 and checks the gradients of every parameter (a sample of 30 coordinates
/// each) of `Σ w ⊙ scores` (fixed random weights `w`, so that no layer's invariance — e.g. batch
/// norm's under `Σ scores²` — hides a gradient) on a random batch of `input` shape against
/// centred differences, to relative error `tolerance` (coordinates whose gradient is below 1 % of
/// their tensor's largest are judged relative to that 1 %).
pub fn assert_gradients_match<M: Module + Clone>(
    model: &M,
    input: [usize; 4],
    tolerance: f64,
    forward: impl Fn(&M, Tensor<4>) -> Tensor<2>,
) {
    let device = Device::flex().autodiff();
    device.seed(11);
    let model = model.clone().map(&mut CastFloat(DType::F64));
    let x = Tensor::<4>::random(input, Distribution::Normal(0.0, 1.0), &device).cast(DType::F64);
    let classes = forward(&model, x.clone()).dims()[1];
    let w = Tensor::<2>::random([input[0], classes], Distribution::Normal(0.0, 1.0), &device)
        .cast(DType::F64);
    let options = GradCheckOptions {
        samples: Some(30),
        tensor_scale_floor: 1e-2,
        ..Default::default()
    };
    let report = check_module(
        &model,
        |m| (forward(m, x.clone()) * w.clone()).sum(),
        &options,
    )
    .expect("gradient check runs");
    assert!(report.checked > 30, "{report:?}");
    assert!(report.max_relative_error < tolerance, "{report:?}");
}
