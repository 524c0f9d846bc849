//! Mask R-CNN's mask branch (He et al. 2017): a small fully convolutional head on each
//! region's RoIAligned features — 3×3 convolutions, a 2× transposed convolution, and 1×1 mask
//! logits per class (or one class-agnostic mask) — trained by per-pixel binary cross-entropy on
//! the positive regions against the ground-truth mask resampled into each region.

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};
use kiln_nets::conv;
use serde::{Deserialize, Serialize};

use crate::data::BoundingBox;
use crate::ops::RoiAlignConfig;
use crate::ops::masks::mask_target;
use crate::{DetectError, Result};

/// The mask branch's settings (`[mask_rcnn]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaskHeadConfig {
    /// RoIAlign bins per side of a region's features (14); the mask is twice that.
    pub bins: usize,
    /// 3×3 convolutions before the upsampling (torchvision: 4).
    pub convs: usize,
    /// Their channels (torchvision: 256).
    pub channels: usize,
    /// One mask for every class (`true`) instead of one per class.
    pub class_agnostic: bool,
    /// Weight of the mask loss in the sum of losses.
    pub loss_weight: f32,
    /// A pasted mask pixel is foreground at this probability or above.
    pub threshold: f32,
}

impl Default for MaskHeadConfig {
    fn default() -> Self {
        Self {
            bins: 14,
            convs: 4,
            channels: 256,
            class_agnostic: false,
            loss_weight: 1.0,
            threshold: 0.5,
        }
    }
}

impl MaskHeadConfig {
    /// Checks every setting, naming the first one out of range.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |field: &str, why: String| DetectError::invalid(format!("[mask_rcnn] {field}"), why);
        if !(2..=64).contains(&self.bins) {
            return Err(bad("bins", format!("{} is outside 2..=64", self.bins)));
        }
        if self.convs > 8 {
            return Err(bad("convs", format!("{} is more than 8", self.convs)));
        }
        if !(1..=1024).contains(&self.channels) {
            return Err(bad(
                "channels",
                format!("{} is outside 1..=1024", self.channels),
            ));
        }
        if !(self.loss_weight.is_finite() && self.loss_weight >= 0.0) {
            return Err(bad(
                "loss_weight",
                format!("{} is not >= 0", self.loss_weight),
            ));
        }
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return Err(bad(
                "threshold",
                format!("{} is outside (0, 1)", self.threshold),
            ));
        }
        Ok(())
    }

    /// Side of the predicted masks (twice the bins).
    pub fn mask_size(&self) -> usize {
        2 * self.bins
    }

    /// The RoIAlign of the branch on a map of `stride` pixels a cell (aligned, 2 samples).
    pub fn pooler(&self, stride: usize) -> RoiAlignConfig {
        RoiAlignConfig::new([self.bins, self.bins])
            .with_spatial_scale(1.0 / stride.max(1) as f32)
            .with_sampling_ratio(Some(2))
            .with_aligned(true)
    }
}

/// The mask branch.
#[derive(Module, Debug)]
pub struct MaskHead {
    /// 3×3 convolutions, each followed by ReLU.
    pub convs: Vec<Conv2d>,
    /// 2× upsampling (kernel 2, stride 2), then ReLU.
    pub upsample: ConvTranspose2d,
    /// Mask logits: one channel per class, or one.
    pub predictor: Conv2d,
}

impl MaskHead {
    /// A head on `in_channels`-channel region features for `classes` object classes.
    pub fn new(
        config: &MaskHeadConfig,
        in_channels: usize,
        classes: usize,
        device: &Device,
    ) -> Self {
        let mut convs = Vec::with_capacity(config.convs);
        let mut channels = in_channels;
        for _ in 0..config.convs {
            convs.push(
                Conv2dConfig::new([channels, config.channels], [3, 3])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init(device),
            );
            channels = config.channels;
        }
        let outputs = if config.class_agnostic { 1 } else { classes };
        Self {
            convs,
            upsample: ConvTranspose2dConfig::new([channels, config.channels], [2, 2])
                .with_stride([2, 2])
                .init(device),
            predictor: Conv2dConfig::new([config.channels, outputs], [1, 1]).init(device),
        }
    }

    /// Mask logits `[R, outputs, 2 bins, 2 bins]` of region features `[R, C, bins, bins]`.
    pub fn forward(&self, regions: Tensor<4>) -> Tensor<4> {
        let mut x = regions;
        for conv in &self.convs {
            x = relu(conv::forward(conv, x));
        }
        let up = conv::forward_transposed(&self.upsample, x);
        conv::forward(&self.predictor, relu(up))
    }

    /// Whether there is one mask for all classes.
    pub fn class_agnostic(&self) -> bool {
        self.predictor.weight.dims()[0] == 1
    }

    /// The logits of each region's own class (`classes[r]`, 0-based; ignored when
    /// class-agnostic): `[R, size, size]`.
    pub fn select(&self, logits: Tensor<4>, classes: &[usize]) -> Tensor<3> {
        let [r, k, h, w] = logits.dims();
        if k == 1 {
            return logits.reshape([r, h, w]);
        }
        let device = logits.device();
        let mut one_hot = vec![0f32; r * k];
        for (i, &c) in classes.iter().enumerate() {
            one_hot[i * k + c.min(k - 1)] = 1.0;
        }
        let pick = Tensor::<4>::from_data(TensorData::new(one_hot, [r, k, 1, 1]), &device);
        (logits * pick).sum_dim(1).reshape([r, h, w])
    }
}

/// One positive region's mask target: the region (input pixels), its class, and the mask of
/// the object it matched with the size of the image that mask is at.
pub struct MaskTargetRegion<'a> {
    /// The region in input pixels.
    pub region: BoundingBox,
    /// Its object's class (0-based).
    pub class: usize,
    /// The object's mask (row-major 0/1) at `mask_size`.
    pub mask: &'a [u8],
    /// `[width, height]` of `mask`.
    pub mask_size: [usize; 2],
    /// `[width, height]` of the input image the region is in.
    pub input_size: [usize; 2],
}

/// Per-pixel binary cross-entropy of the regions' own-class mask logits against their targets
/// (mean over pixels and regions); `None` without regions.
pub fn mask_loss(
    head: &MaskHead,
    logits: Tensor<4>,
    regions: &[MaskTargetRegion<'_>],
) -> Option<Tensor<1>> {
    if regions.is_empty() {
        return None;
    }
    let [_, _, size, _] = logits.dims();
    let classes: Vec<usize> = regions.iter().map(|r| r.class).collect();
    let selected = head.select(logits, &classes);
    let mut targets = Vec::with_capacity(regions.len() * size * size);
    for r in regions {
        let [mw, mh] = r.mask_size;
        let (sx, sy) = (
            mw as f32 / r.input_size[0].max(1) as f32,
            mh as f32 / r.input_size[1].max(1) as f32,
        );
        let in_mask = BoundingBox {
            x1: r.region.x1 * sx,
            y1: r.region.y1 * sy,
            x2: r.region.x2 * sx,
            y2: r.region.y2 * sy,
        };
        targets.extend(mask_target(r.mask, mw, mh, &in_mask, size));
    }
    let device = selected.device();
    let t = Tensor::<3>::from_data(
        TensorData::new(targets, [regions.len(), size, size]),
        &device,
    );
    Some(
        binary_cross_entropy_with_logits(selected, t)
            .mean()
            .reshape([1]),
    )
}

/// Elementwise `BCE(sigmoid(x), t)`, computed stably as `max(x, 0) - x t + ln(1 + e^{-|x|})`.
pub fn binary_cross_entropy_with_logits(x: Tensor<3>, t: Tensor<3>) -> Tensor<3> {
    let softplus = x.clone().abs().neg().exp().add_scalar(1.0).log();
    x.clone().clamp_min(0.0) - x * t + softplus
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_doubles_the_bins_and_selects_the_class_channel() {
        let device = Device::default();
        let config = MaskHeadConfig {
            convs: 2,
            channels: 8,
            bins: 7,
            ..MaskHeadConfig::default()
        };
        let head = MaskHead::new(&config, 4, 3, &device);
        let logits = head.forward(Tensor::<4>::ones([5, 4, 7, 7], &device));
        assert_eq!(logits.dims(), [5, 3, 14, 14]);
        let values: Vec<f32> = (0..2 * 3 * 2 * 2).map(|v| v as f32).collect();
        let fake = Tensor::<4>::from_data(TensorData::new(values, [2, 3, 2, 2]), &device);
        let picked = head
            .select(fake, &[2, 0])
            .into_data()
            .try_to_vec_as::<f32>()
            .unwrap();
        assert_eq!(picked, vec![8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0]);
        let agnostic = MaskHead::new(
            &MaskHeadConfig {
                class_agnostic: true,
                ..config
            },
            4,
            3,
            &device,
        );
        assert!(agnostic.class_agnostic());
    }

    #[test]
    fn bce_with_logits_matches_its_definition() {
        let device = Device::default();
        let x = Tensor::<3>::from_data(
            TensorData::new(vec![-30.0f32, -1.0, 0.0, 2.5], [1, 2, 2]),
            &device,
        );
        let t = Tensor::<3>::from_data(
            TensorData::new(vec![0.0f32, 1.0, 0.5, 0.0], [1, 2, 2]),
            &device,
        );
        let got = binary_cross_entropy_with_logits(x, t)
            .into_data()
            .try_to_vec_as::<f32>()
            .unwrap();
        let bce = |x: f64, t: f64| {
            let p = 1.0 / (1.0 + (-x).exp());
            -(t * p.ln() + (1.0 - t) * (1.0 - p).ln())
        };
        let want = [
            bce(-30.0, 0.0),
            bce(-1.0, 1.0),
            bce(0.0, 0.5),
            bce(2.5, 0.0),
        ];
        for (g, w) in got.iter().zip(want) {
            assert!((f64::from(*g) - w).abs() < 1e-5, "{g} vs {w}");
        }
    }

    #[test]
    fn the_loss_is_low_for_logits_that_agree_with_the_target() {
        let device = Device::default();
        let config = MaskHeadConfig {
            convs: 0,
            channels: 2,
            bins: 2,
            ..MaskHeadConfig::default()
        };
        let head = MaskHead::new(&config, 2, 1, &device);
        // A mask whose left half is set; the region covers the whole 8×8 input.
        let mut mask = vec![0u8; 64];
        for y in 0..8 {
            mask[y * 8..y * 8 + 4].fill(1);
        }
        let region = MaskTargetRegion {
            region: BoundingBox {
                x1: 0.0,
                y1: 0.0,
                x2: 8.0,
                y2: 8.0,
            },
            class: 0,
            mask: &mask,
            mask_size: [8, 8],
            input_size: [8, 8],
        };
        let logits = |v: [f32; 4]| {
            let row: Vec<f32> = (0..4).flat_map(|_| v).collect();
            Tensor::<4>::from_data(TensorData::new(row, [1, 1, 4, 4]), &device)
        };
        let good = mask_loss(
            &head,
            logits([9.0, 9.0, -9.0, -9.0]),
            std::slice::from_ref(&region),
        )
        .unwrap()
        .into_scalar::<f32>();
        let bad = mask_loss(
            &head,
            logits([-9.0, -9.0, 9.0, 9.0]),
            std::slice::from_ref(&region),
        )
        .unwrap()
        .into_scalar::<f32>();
        assert!(good < 1e-3 && bad > 8.0, "{good} {bad}");
        assert!(mask_loss(&head, logits([0.0; 4]), &[]).is_none());
    }
}
