//! Batch normalisation that trains fast on the CPU, used by every kiln network.
//!
//! [`forward`] is `burn::nn::BatchNorm::forward` with the same behaviour: batch statistics (and
//! running-statistic updates) on an autodiff device while the layer trains, running statistics
//! otherwise. When the tensors live on Burn's Flex CPU backend (the `flex` feature) both run
//! through [`kernels`] as one autodiff operation each:
//!
//! - training: statistics, normalisation and all three gradients in passes over each channel's
//!   planes, where Burn's generic operation transposes the activation to `[channels, rest]` twice
//!   forward and twice backward and makes several element-wise passes;
//! - inference (and frozen statistics while training): one per-channel affine pass
//!   `x · γ/σ + (β − μ γ/σ)`, its scale and shift computed on the `[channels]` vectors.
//!
//! [`forward_activated`] fuses the ReLU or ReLU6 that follows most batch norms into the same
//! passes (on Flex; elsewhere it applies the activation after Burn's batch norm): the
//! activation costs no pass of its own over the activations, forward or backward.
//!
//! An input whose float type differs from the layer's (half activations under
//! [`crate::autocast`]) is normalised in the layer's type and cast back.
//!
//! Every other backend and dtype keeps Burn's implementation, so models stay ordinary Burn
//! modules. Setting the environment variable `KILN_BURN_NORM=1` sends every batch norm to Burn's
//! implementation instead (to compare speed or rule kiln's kernels out).

#[cfg(feature = "flex")]
mod flex;
pub mod kernels;

use burn::nn::BatchNorm;
use burn::tensor::Tensor;

pub use kernels::FusedActivation;

/// `norm.forward(x)` (input `[batch, channels, …]`), through kiln's kernels on Flex.
pub fn forward<const D: usize>(norm: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    forward_activated(norm, x, FusedActivation::Identity)
}

/// `activation(norm.forward(x))`, the activation fused into kiln's kernels on Flex.
///
/// An input of another float type than the layer's parameters (a half activation inside an
/// [`crate::autocast::scope`]) is normalised in the parameters' type, running statistics
/// included, and the result handed back in the input's type.
pub fn forward_activated<const D: usize>(
    norm: &BatchNorm,
    x: Tensor<D>,
    activation: FusedActivation,
) -> Tensor<D> {
    let own = norm.beta.val().dtype();
    if x.dtype() != own {
        let dtype = x.dtype().into();
        let y = forward_activated(norm, crate::autocast::cast(x, own.into()), activation);
        return crate::autocast::cast(y, dtype);
    }
    #[cfg(feature = "flex")]
    if !burns_only() {
        let device = x.device();
        if device.is_autodiff() && norm.training.is_enabled() {
            if let Some(trained) = flex::batch_norm_train(
                &x,
                &norm.gamma.val(),
                &norm.beta.val(),
                norm.epsilon,
                activation,
            ) {
                update_running_statistics(norm, trained.mean, trained.variance);
                return trained.output;
            }
        } else {
            let (scale, shift) = inference_affine(norm, &device);
            if let Some(out) = flex::channel_affine(&x, &scale, &shift, activation) {
                return out;
            }
        }
    }
    let y = norm.forward(x);
    match activation {
        FusedActivation::Identity => y,
        FusedActivation::Relu => burn::tensor::activation::relu(y),
        FusedActivation::Relu6 => crate::activation::relu6(y),
    }
}

/// `activation.forward(norm.forward(x))` for any of Burn's activation layers: fused into kiln's
/// kernels when the activation is a ReLU (or the identity), applied after them otherwise.
pub fn forward_then<const D: usize>(
    norm: &BatchNorm,
    x: Tensor<D>,
    activation: &burn::nn::activation::Activation,
) -> Tensor<D> {
    use burn::nn::activation::Activation;
    match activation {
        Activation::Relu(_) => forward_activated(norm, x, FusedActivation::Relu),
        Activation::Identity(_) => forward(norm, x),
        other => other.forward(forward(norm, x)),
    }
}

/// Whether `KILN_BURN_NORM=1` asks for Burn's implementation (read once per process).
#[cfg(feature = "flex")]
fn burns_only() -> bool {
    static BURNS_ONLY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *BURNS_ONLY.get_or_init(|| std::env::var("KILN_BURN_NORM").is_ok_and(|v| v == "1"))
}

/// Burn's update of the running statistics: `(1 − momentum) · running + momentum · batch`.
#[cfg(feature = "flex")]
fn update_running_statistics(norm: &BatchNorm, mean: Tensor<1>, variance: Tensor<1>) {
    let device = mean.device();
    let m = norm.momentum;
    let running_mean = norm.running_mean.value_sync().to_device(&device);
    let running_var = norm.running_var.value_sync().to_device(&device);
    let running_mean = running_mean
        .mul_scalar(1.0 - m)
        .add(mean.detach().mul_scalar(m));
    let running_var = running_var
        .mul_scalar(1.0 - m)
        .add(variance.detach().mul_scalar(m));
    norm.running_mean.update(running_mean.detach());
    norm.running_var.update(running_var.detach());
}

/// Scale `γ / √(var + ε)` and shift `β − mean · scale` of the running statistics, on `device`
/// (differentiable in γ and β).
#[cfg(feature = "flex")]
fn inference_affine(norm: &BatchNorm, device: &burn::tensor::Device) -> (Tensor<1>, Tensor<1>) {
    let mean = norm.running_mean.value().to_device(device);
    let var = norm.running_var.value().to_device(device);
    let scale = norm.gamma.val() * var.add_scalar(norm.epsilon).sqrt().recip();
    let shift = norm.beta.val() - mean * scale.clone();
    (scale, shift)
}

#[cfg(all(test, feature = "flex"))]
mod tests;
