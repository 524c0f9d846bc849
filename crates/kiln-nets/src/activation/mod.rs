//! ReLU6, `min(max(x, 0), 6)` (EfficientNet-Lite's and MobileNet's activation), as one pass
//! forward and one backward on the CPU.
//!
//! On Burn's Flex backend (the `flex` feature) [`relu6`] is one custom autodiff operation: the
//! clamp forward, and backward the output gradient where `0 < x < 6` (PyTorch's `hardtanh`
//! rule), zero elsewhere. Elsewhere it is composed of Burn's fused `relu` kernels as
//! `6 − relu(6 − relu(x))` (six element-wise passes forward): Burn's autodiff `clamp` builds
//! its gradient from masks, which on the CPU cost more than the convolutions around them.
//! `KILN_BURN_RELU6=1` takes the composed path everywhere (to compare speed).

#[cfg(feature = "flex")]
mod flex;

use burn::tensor::Tensor;
use burn::tensor::activation::relu;

/// ReLU6 of `x`: the same values and gradients on every backend (within half an ulp of 6
/// inside (0, 6) on the composed path), one pass each way on Flex.
pub fn relu6<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if !burns_only()
        && let Some(out) = flex::relu6(&x)
    {
        return out;
    }
    composed(x)
}

/// `6 − relu(6 − relu(x))` from Burn's `relu` kernels.
fn composed<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    relu(relu(x).neg().add_scalar(6.0)).neg().add_scalar(6.0)
}

/// Whether `KILN_BURN_RELU6=1` asks for the composed path (read once per process).
#[cfg(feature = "flex")]
fn burns_only() -> bool {
    static BURNS_ONLY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *BURNS_ONLY.get_or_init(|| std::env::var("KILN_BURN_RELU6").is_ok_and(|v| v == "1"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    /// Values and input gradients of `f` at `values` (upstream gradient `weights`).
    fn run(
        f: impl Fn(Tensor<2>) -> Tensor<2>,
        device: &Device,
        values: &[f32],
        weights: &[f32],
    ) -> (Vec<f32>, Vec<f32>) {
        let n = values.len();
        let x = Tensor::<1>::from_floats(values, device)
            .reshape([1, n])
            .require_grad();
        let w = Tensor::<1>::from_floats(weights, device).reshape([1, n]);
        let y = f(x.clone());
        let out = y.clone().into_data().try_to_vec::<f32>().unwrap();
        let grads = (y * w).sum().backward();
        let grad = x
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        (out, grad)
    }

    #[test]
    fn equals_the_clamp_forward_and_hardtanh_backward() {
        let device = Device::flex().autodiff();
        let values = [
            -3.0f32,
            -0.0,
            0.0,
            1e-3,
            2.5,
            5.999,
            6.0,
            6.5,
            1e4,
            f32::MIN_POSITIVE,
        ];
        let weights: Vec<f32> = (1..=values.len()).map(|i| i as f32 * 0.5).collect();
        let (out, grad) = run(relu6, &device, &values, &weights);
        let (composed_out, composed_grad) = run(composed, &device, &values, &weights);
        for ((o, c), v) in out.iter().zip(&composed_out).zip(&values) {
            assert_eq!(*o, v.clamp(0.0, 6.0), "relu6({v})");
            assert!((o - c).abs() <= 3e-7, "relu6({v}): {o} vs composed {c}");
        }
        // Gradient only strictly inside (0, 6), as PyTorch's hardtanh_backward.
        let expected: Vec<f32> = values
            .iter()
            .zip(&weights)
            .map(|(&v, &w)| if v > 0.0 && v < 6.0 { w } else { 0.0 })
            .collect();
        assert_eq!(grad, expected);
        assert_eq!(composed_grad, expected);
    }

    #[test]
    fn matches_the_composed_path_on_large_maps_with_and_without_autodiff() {
        let device = Device::flex();
        let x = Tensor::<4>::random([3, 5, 17, 19], Distribution::Uniform(-2.0, 8.0), &device);
        relu6(x.clone())
            .into_data()
            .assert_approx_eq::<f32>(&composed(x.clone()).into_data(), Default::default());
        // A strided (transposed) input is read in its logical order.
        let t = x.clone().swap_dims(2, 3);
        relu6(t.clone())
            .into_data()
            .assert_approx_eq::<f32>(&composed(t).into_data(), Default::default());
        let ad = device.autodiff();
        let x = Tensor::<4>::from_data(x.into_data(), &ad).require_grad();
        let w = Tensor::<4>::random([3, 5, 17, 19], Distribution::Normal(0.0, 1.0), &ad);
        let grad_of = |f: fn(Tensor<4>) -> Tensor<4>| {
            let grads = (f(x.clone()) * w.clone()).sum().backward();
            x.grad(&grads).unwrap().into_data()
        };
        grad_of(relu6).assert_approx_eq::<f32>(&grad_of(composed), Default::default());
    }
}
