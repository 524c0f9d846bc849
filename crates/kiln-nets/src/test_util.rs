//! Shared test helpers: gradient checks of whole networks in f64.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{DType, Device, Distribution, Tensor, TensorData};
use kiln_classic::gradcheck::{CastFloat, GradCheckOptions, check_module};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Draws N(0, 1) values from a generator of the test's own, so that a test's numbers do not
/// depend on what other tests running beside it draw from the backend's shared generator.
pub struct LocalNormal(ChaCha8Rng);

impl LocalNormal {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    /// `count` standard normal values (Box–Muller).
    pub fn values(&mut self, count: usize) -> Vec<f64> {
        use rand::Rng;
        (0..count)
            .map(|_| {
                let (u, v): (f64, f64) = (self.0.random(), self.0.random());
                (-2.0 * (1.0 - u).ln()).sqrt() * (std::f64::consts::TAU * v).cos()
            })
            .collect()
    }

    /// A `shape` tensor of f64 normal values scaled by `scale`, on `device`.
    pub fn tensor<const D: usize>(
        &mut self,
        shape: [usize; D],
        scale: f64,
        device: &Device,
    ) -> Tensor<D> {
        let values: Vec<f64> = self
            .values(shape.iter().product())
            .into_iter()
            .map(|v| v * scale)
            .collect();
        Tensor::from_data(TensorData::new(values, shape), device)
    }
}

/// Sets every trainable float parameter to `LocalNormal` values times `scale` (f64), keeping
/// ids and trainability; running statistics stay as they are.
pub struct RedrawTrainable {
    /// The values' source.
    pub normal: LocalNormal,
    /// Their standard deviation.
    pub scale: f64,
}

impl ModuleMapper for RedrawTrainable {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if !param.is_require_grad() {
            return param;
        }
        let (normal, scale) = (&mut self.normal, self.scale);
        param
            .map(|t| {
                let shape: [usize; D] = t.dims();
                normal.tensor(shape, scale, &t.device()).cast(DType::F64)
            })
            .set_require_grad(true)
    }
}

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
