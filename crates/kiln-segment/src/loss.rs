//! The per-pixel loss: cross-entropy over classes, each pixel weighted by its true class's
//! weight (median-frequency balancing), ignored pixels left out. As PyTorch's
//! `cross_entropy(weight=w, ignore_index=i)` does, the sum is divided by the total weight of
//! the pixels that count.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

/// The weighted cross-entropy `[1]` of `logits` `[batch, classes, h, w]` against `targets`
/// `[batch, h, w]`; pixels whose target is not below `classes` are ignored. `weights`
/// `[classes]` (`None`: all 1). Zero when no pixel counts.
pub fn pixel_cross_entropy(
    logits: Tensor<4>,
    targets: Tensor<3, Int>,
    weights: Option<Tensor<1>>,
) -> Tensor<1> {
    let [batch, classes, h, w] = logits.dims();
    let valid = targets.clone().lower_elem(classes as i64);
    let index = targets.mask_fill(valid.clone().bool_not(), 0);
    let log_p = log_softmax(logits, 1)
        .gather(1, index.clone().unsqueeze_dim::<4>(1))
        .reshape([batch * h * w]);
    let valid = valid.float().reshape([batch * h * w]);
    let pixel_weight = match weights {
        Some(weights) => weights.select(0, index.reshape([batch * h * w])) * valid,
        None => valid,
    };
    let total = pixel_weight.clone().sum().clamp_min(1e-12);
    -(log_p * pixel_weight).sum() / total
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn matches_a_hand_computed_weighted_mean_with_ignored_pixels() {
        let device = Device::flex();
        // One image of 1×3 pixels, two classes.
        let logits = Tensor::<4>::from_data(
            TensorData::new(vec![2.0f32, 0.0, 1.0, 0.0, 1.0, 1.0], [1, 2, 1, 3]),
            &device,
        );
        let targets =
            Tensor::<3, Int>::from_data(TensorData::new(vec![0i64, 1, 255], [1, 1, 3]), &device);
        let weights = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 3.0], [2]), &device);
        let loss = pixel_cross_entropy(logits.clone(), targets.clone(), Some(weights))
            .into_scalar::<f32>();
        // Pixel 0: class 0 of (2, 0): −log σ = ln(1 + e⁻²); pixel 1: class 1 of (0, 1):
        // ln(1 + e⁻¹); pixel 2 ignored. Weights 1 and 3.
        let (a, b) = (
            (1.0f32 + (-2.0f32).exp()).ln(),
            (1.0f32 + (-1.0f32).exp()).ln(),
        );
        let want = (a + 3.0 * b) / 4.0;
        assert!((loss - want).abs() < 1e-6, "{loss} vs {want}");
        let plain = pixel_cross_entropy(logits.clone(), targets, None).into_scalar::<f32>();
        assert!((plain - (a + b) / 2.0).abs() < 1e-6);
        // Nothing labelled: zero, not NaN.
        let none =
            Tensor::<3, Int>::from_data(TensorData::new(vec![255i64; 3], [1, 1, 3]), &device);
        assert_eq!(
            pixel_cross_entropy(logits, none, None).into_scalar::<f32>(),
            0.0
        );
    }
}
