//! Mixed-precision training (`[train] mixed_precision`, or `--precision f16-mixed`): the
//! forward and backward passes in half precision, the weights, the optimizer and the loss in
//! f32, as PyTorch's `torch.autocast` with a `GradScaler` trains.
//!
//! - The device stays f32, so the model's weights, its batch-norm statistics and the optimizer
//!   state are f32 (the master copy).
//! - Each training step runs inside [`kiln_nets::autocast::scope`]: kiln's layers cast their
//!   inputs and weights to the half type. Those casts are autodiff operations, so the
//!   gradients reach the f32 weights in f32.
//! - In f16 the loss is multiplied by a [`LossScaler`]'s scale before the backward pass, so
//!   that small gradients do not flush to zero in f16's 5-bit exponent. The gradients are
//!   divided by it again before the optimizer sees them. A step whose gradients overflowed
//!   is skipped and the scale halved; after 2,000 good steps in a row it doubles. bf16 has
//!   f32's range and needs no scaling.
//!
//! Only tasks whose step casts the network's output back before the loss take part
//! ([`crate::task::Task::MIXED_PRECISION`]); [`crate::trainer::fit`] refuses the others.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{FloatDType, Tensor};
use serde::{Deserialize, Serialize};

/// The half float type a mixed-precision run computes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MixedPrecision {
    /// IEEE half: 10-bit mantissa, range up to 65,504; needs loss scaling.
    F16,
    /// bfloat16: f32's range with a 7-bit mantissa; no loss scaling.
    Bf16,
}

impl MixedPrecision {
    /// The float type of the forward and backward passes.
    pub fn dtype(self) -> FloatDType {
        match self {
            MixedPrecision::F16 => FloatDType::F16,
            MixedPrecision::Bf16 => FloatDType::BF16,
        }
    }

    /// A fresh loss scaler when this type needs one (f16), `None` otherwise.
    pub fn scaler(self) -> Option<LossScaler> {
        match self {
            MixedPrecision::F16 => Some(LossScaler::default()),
            MixedPrecision::Bf16 => None,
        }
    }
}

/// Runs `f` (a training step's forward pass) inside [`kiln_nets::autocast::scope`] of `dtype`,
/// or as it is without one.
pub fn autocast<R>(dtype: Option<FloatDType>, f: impl FnOnce() -> R) -> R {
    match dtype {
        Some(dtype) => kiln_nets::autocast::scope(dtype, f),
        None => f(),
    }
}

/// The gradients of `loss` for `model`'s parameters; with a `scaler`, of the scaled loss and
/// then unscaled. `None` when they overflowed: the caller skips the step (see
/// [`LossScaler::unscale`]).
pub fn gradients<M: Module>(
    loss: Tensor<1>,
    model: &M,
    scaler: Option<&mut LossScaler>,
) -> Option<GradientsParams> {
    match scaler {
        Some(scaler) => {
            let grads = GradientsParams::from_grads(scaler.scale_loss(loss).backward(), model);
            scaler.unscale(model, grads)
        }
        None => Some(GradientsParams::from_grads(loss.backward(), model)),
    }
}

/// Dynamic loss scaling with PyTorch's `GradScaler` defaults: scale 2¹⁶ to start, halved on
/// every step whose gradients are not finite (that step is skipped), doubled after
/// [`LossScaler::GROWTH_INTERVAL`] finite steps in a row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    /// The factor the loss is multiplied by.
    pub scale: f64,
    /// Finite steps since the scale last changed.
    pub good_steps: usize,
}

impl Default for LossScaler {
    fn default() -> Self {
        Self::with_scale(Self::INITIAL_SCALE)
    }
}

impl LossScaler {
    /// The first scale, 2¹⁶.
    pub const INITIAL_SCALE: f64 = 65_536.0;
    /// Finite steps in a row after which the scale doubles.
    pub const GROWTH_INTERVAL: usize = 2_000;

    /// A scaler starting at `scale`.
    pub fn with_scale(scale: f64) -> Self {
        Self {
            scale,
            good_steps: 0,
        }
    }

    /// `loss · scale`, the tensor to differentiate.
    pub fn scale_loss(&self, loss: Tensor<1>) -> Tensor<1> {
        loss.mul_scalar(self.scale)
    }

    /// Divides each of `model`'s gradients in `grads` by the scale. Returns them when all are
    /// finite (counting towards the next growth), or `None` when any is not, having halved
    /// the scale: the caller skips that step. Reads one value back from the device.
    pub fn unscale<M: Module>(
        &mut self,
        model: &M,
        grads: GradientsParams,
    ) -> Option<GradientsParams> {
        let mut visitor = Unscale {
            grads,
            factor: 1.0 / self.scale,
            total: None,
        };
        model.visit(&mut visitor);
        let finite = visitor
            .total
            .map(|t| t.into_scalar::<f64>().is_finite())
            .unwrap_or(true);
        if finite {
            self.good_steps += 1;
            if self.good_steps >= Self::GROWTH_INTERVAL {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
            Some(visitor.grads)
        } else {
            self.scale /= 2.0;
            self.good_steps = 0;
            None
        }
    }
}

/// Scales every gradient and sums them all: the sum is finite exactly when every gradient is
/// (an infinity or NaN anywhere makes it one), so one read decides the step.
struct Unscale {
    grads: GradientsParams,
    factor: f64,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for Unscale {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(grad) = self.grads.remove::<D>(param.id) else {
            return;
        };
        let grad = grad.mul_scalar(self.factor);
        let sum = grad.clone().cast(FloatDType::F32).sum();
        self.total = Some(match self.total.take() {
            Some(total) => total + sum,
            None => sum,
        });
        self.grads.register(param.id, grad);
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::{Device, TensorData};

    use super::*;

    /// A 2 → 1 linear layer on the autodiff device and the gradients of `factor · Σ y`.
    fn layer_and_grads(factor: f32) -> (Linear, GradientsParams) {
        let device = Device::flex().autodiff();
        let layer = LinearConfig::new(2, 1).init(&device);
        let x = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2]),
            &device,
        );
        let loss = layer.forward(x).sum().mul_scalar(factor);
        let grads = GradientsParams::from_grads(loss.backward(), &layer);
        (layer, grads)
    }

    #[test]
    fn finite_gradients_come_back_divided_by_the_scale() {
        let mut scaler = LossScaler::with_scale(8.0);
        let (layer, grads) = layer_and_grads(8.0);
        let grads = scaler.unscale(&layer, grads).expect("finite");
        // d(Σ y)/dW = column sums of x = (4, 6); d/db = rows = 2.
        let w: Tensor<2> = grads.get(layer.weight.id).unwrap();
        assert_eq!(w.into_data().try_to_vec::<f32>().unwrap(), vec![4.0, 6.0]);
        let b: Tensor<1> = grads.get(layer.bias.as_ref().unwrap().id).unwrap();
        assert_eq!(b.into_data().try_to_vec::<f32>().unwrap(), vec![2.0]);
        assert_eq!((scaler.scale, scaler.good_steps), (8.0, 1));
    }

    #[test]
    fn an_overflow_skips_the_step_and_halves_the_scale() {
        let mut scaler = LossScaler::with_scale(1024.0);
        scaler.good_steps = 5;
        let (layer, grads) = layer_and_grads(f32::INFINITY);
        assert!(scaler.unscale(&layer, grads).is_none());
        assert_eq!((scaler.scale, scaler.good_steps), (512.0, 0));
        let (layer, grads) = layer_and_grads(f32::NAN);
        assert!(scaler.unscale(&layer, grads).is_none());
        assert_eq!(scaler.scale, 256.0);
    }

    #[test]
    fn the_scale_doubles_after_the_growth_interval() {
        let mut scaler = LossScaler::with_scale(4.0);
        scaler.good_steps = LossScaler::GROWTH_INTERVAL - 1;
        let (layer, grads) = layer_and_grads(4.0);
        assert!(scaler.unscale(&layer, grads).is_some());
        assert_eq!((scaler.scale, scaler.good_steps), (8.0, 0));
    }

    #[test]
    fn only_f16_is_scaled() {
        assert_eq!(MixedPrecision::F16.scaler(), Some(LossScaler::default()));
        assert_eq!(MixedPrecision::Bf16.scaler(), None);
        assert_eq!(MixedPrecision::Bf16.dtype(), FloatDType::BF16);
    }
}
