//! Linear layers that follow kiln's [`crate::autocast`] scope.

use burn::nn::Linear;
use burn::tensor::Tensor;

use crate::autocast;

/// `linear.forward(x)` (input `[…, d_input]`), computed in the [`autocast::scope`]'s float
/// type inside one, with the weights cast to it (their gradients come back in their own type).
///
/// # Panics
///
/// When the input's last dimension is not the layer's input size, as Burn's `forward`.
pub fn forward<const D: usize>(linear: &Linear, x: Tensor<D>) -> Tensor<D> {
    let weight = linear.weight.val();
    let [d_input, _] = weight.dims();
    assert_eq!(
        x.dims()[D - 1],
        d_input,
        "linear layer of {d_input} inputs given {:?}",
        x.dims()
    );
    let (x, weight, bias) = autocast::layer(x, weight, linear.bias.as_ref().map(|b| b.val()));
    burn::tensor::module::linear(x, weight, bias)
}

#[cfg(test)]
mod tests {
    use burn::nn::LinearConfig;
    use burn::tensor::{DType, Device, Distribution, FloatDType};

    use super::*;

    #[test]
    fn equals_burns_forward_and_follows_the_scope() {
        let device = Device::flex();
        let layer = LinearConfig::new(5, 3).init(&device);
        let x = Tensor::<3>::random([2, 4, 5], Distribution::Normal(0.0, 1.0), &device);
        let ours = forward(&layer, x.clone());
        ours.into_data()
            .assert_eq(&layer.forward(x.clone()).into_data(), true);
        let half = autocast::scope(FloatDType::F16, || forward(&layer, x.clone()));
        assert_eq!(half.dtype(), DType::F16);
        half.cast(FloatDType::F32)
            .into_data()
            .assert_approx_eq::<f32>(
                &layer.forward(x).into_data(),
                burn::tensor::Tolerance::absolute(2e-2),
            );
    }
}
