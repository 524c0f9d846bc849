//! Scale augmentation for the two-stage detectors: a training batch resized as a whole by a
//! random factor (bilinear, pixel centres aligned, as torchvision resizes its image tensors),
//! with its boxes, proposals and input sizes scaled alike. The images arrive already sized by
//! the config's resize rule, so the factor varies the scale around it; padded sides stay
//! multiples of the backbone's stride.

use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::batch::DetectionBatch;
use crate::data::BoundingBox;
use crate::{DetectError, Result};

/// The range a training batch's scale factor is drawn from (uniformly).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleJitter {
    /// Smallest and largest factor (e.g. `[0.8, 1.25]`).
    pub range: [f32; 2],
}

impl ScaleJitter {
    /// Checks `0 < low ≤ high`, naming `what`.
    pub fn validate(&self, what: &str) -> Result<()> {
        let [lo, hi] = self.range;
        if lo > 0.0 && lo <= hi && hi.is_finite() {
            Ok(())
        } else {
            Err(DetectError::invalid(
                what,
                format!(
                    "scale range {:?} must be increasing and positive",
                    self.range
                ),
            ))
        }
    }

    /// `batch` rescaled by a factor drawn from the range with `rng`; padded sides rounded to
    /// multiples of `divisor`.
    pub fn apply(
        &self,
        batch: DetectionBatch,
        rng: &mut impl Rng,
        divisor: usize,
    ) -> DetectionBatch {
        let [lo, hi] = self.range;
        let factor = if hi > lo {
            rng.random_range(lo..=hi)
        } else {
            lo
        };
        rescale_batch(batch, factor, divisor)
    }
}

/// `batch` resized by about `factor`: each padded side becomes the nearest multiple of
/// `divisor` to `factor` times it (at least one), and every box, proposal and input size is
/// scaled by the side's exact factor.
pub fn rescale_batch(batch: DetectionBatch, factor: f32, divisor: usize) -> DetectionBatch {
    let [_, _, h, w] = batch.images.dims();
    let d = divisor.max(1);
    let side = |s: usize| ((s as f32 * factor / d as f32).round() as usize).max(1) * d;
    let (nh, nw) = (side(h), side(w));
    if (nh, nw) == (h, w) {
        return batch;
    }
    let (sy, sx) = (nh as f32 / h as f32, nw as f32 / w as f32);
    let options = InterpolateOptions::new(InterpolateMode::Bilinear)
        .with_align_corners(false)
        .with_output_size([nh, nw]);
    let scale = |b: &BoundingBox| BoundingBox {
        x1: b.x1 * sx,
        y1: b.y1 * sy,
        x2: b.x2 * sx,
        y2: b.y2 * sy,
    };
    let infos = batch
        .infos
        .into_iter()
        .map(|mut info| {
            info.boxes = info.boxes.iter().map(scale).collect();
            info.proposals = info.proposals.iter().map(scale).collect();
            info.input_size = [
                ((info.input_size[0] as f32 * sx).round() as usize).clamp(1, nw),
                ((info.input_size[1] as f32 * sy).round() as usize).clamp(1, nh),
            ];
            info
        })
        .collect();
    DetectionBatch {
        images: interpolate(batch.images, options),
        infos,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::ImageInfo;
    use burn::tensor::{Device, Tensor, TensorData};
    use rand::SeedableRng;

    fn batch(device: &Device) -> DetectionBatch {
        // A 64×96 padded batch whose image is 60×90 with one box and one proposal.
        let values: Vec<f32> = (0..3 * 64 * 96).map(|i| (i % 96) as f32).collect();
        DetectionBatch {
            images: Tensor::from_data(TensorData::new(values, [1, 3, 64, 96]), device),
            infos: vec![ImageInfo {
                image_id: 1,
                original_size: [180, 120],
                input_size: [90, 60],
                boxes: vec![BoundingBox {
                    x1: 10.0,
                    y1: 20.0,
                    x2: 50.0,
                    y2: 40.0,
                }],
                labels: vec![0],
                proposals: vec![BoundingBox {
                    x1: 0.0,
                    y1: 0.0,
                    x2: 90.0,
                    y2: 60.0,
                }],
                masks: Vec::new(),
            }],
        }
    }

    #[test]
    fn rescaling_keeps_the_stride_and_moves_boxes_with_pixels() {
        let device = Device::flex();
        let out = rescale_batch(batch(&device), 1.5, 32);
        assert_eq!(out.images.dims(), [1, 3, 96, 160]);
        let info = &out.infos[0];
        // Height 64 → 96 (×1.5), width 96 → 160 (×5/3: the nearest multiple of 32 to 144).
        let (sx, sy) = (160.0 / 96.0, 1.5);
        let b = info.boxes[0];
        assert!((b.x1 - 10.0 * sx).abs() < 1e-4 && (b.y2 - 40.0 * sy).abs() < 1e-4);
        assert_eq!(info.input_size, [150, 90]);
        assert!((info.proposals[0].x2 - 150.0).abs() < 1e-3);
        // Each row of the image is a ramp in x: the resized ramp keeps its ends.
        let row: Vec<f32> = out
            .images
            .narrow(2, 40, 1)
            .narrow(1, 0, 1)
            .into_data()
            .try_to_vec()
            .unwrap();
        assert!(row[0] < 1.0 && row[159] > 94.0, "{} {}", row[0], row[159]);
        // The original mapping to the photo still holds: input 150 px ↔ original 180 px.
        assert!((info.scale().0 - 150.0 / 180.0).abs() < 1e-6);
        // A factor that rounds back to the same sides changes nothing.
        let same = rescale_batch(batch(&device), 1.05, 32);
        assert_eq!(same.images.dims(), [1, 3, 64, 96]);
        assert_eq!(same.infos[0].input_size, [90, 60]);
    }

    #[test]
    fn jitter_draws_within_its_range() {
        let device = Device::flex();
        let jitter = ScaleJitter { range: [0.5, 2.0] };
        jitter.validate("x").unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut heights = std::collections::BTreeSet::new();
        for _ in 0..20 {
            let [_, _, h, w] = jitter.apply(batch(&device), &mut rng, 32).images.dims();
            assert!(
                (32..=128).contains(&h) && (32..=192).contains(&w),
                "{h}×{w}"
            );
            heights.insert(h);
        }
        assert!(heights.len() >= 3, "{heights:?}");
        let bad = ScaleJitter { range: [1.2, 0.8] };
        assert!(
            bad.validate("[faster_rcnn] scale_jitter")
                .unwrap_err()
                .to_string()
                .contains("scale_jitter")
        );
    }
}
