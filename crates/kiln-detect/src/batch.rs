//! Detection items and batches: images of different sizes resized by a rule, normalised,
//! padded to one batch tensor, with their boxes scaled alike and the original sizes kept for
//! evaluation.

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::{Device, Tensor, TensorData};
use kiln_data::augment::{Mask, Sample, Target, resize_sample};
use kiln_data::{Augmentable, Image};
use serde::{Deserialize, Serialize};

use crate::data::{BoundingBox, Rle};
use crate::{DetectError, Result};

/// One image with its boxes, as a dataset yields it (after augmentation).
#[derive(Clone, Debug, PartialEq)]
pub struct DetectionItem {
    /// The (augmented) RGB image.
    pub image: Image,
    /// Boxes in `image`'s pixels.
    pub boxes: Vec<BoundingBox>,
    /// One class index per box.
    pub labels: Vec<usize>,
    /// The annotated image's id (for writing detections).
    pub image_id: u64,
    /// `[width, height]` of the original image, which detections are reported in.
    pub original_size: [u32; 2],
    /// Region proposals in `image`'s pixels, best first (for detectors that classify given
    /// regions, such as Fast R-CNN; empty otherwise). Augmentation moves them with the image.
    pub proposals: Vec<BoundingBox>,
    /// Instance masks, one per box (empty when the data has none). Augmentation moves them
    /// with the pixels and boxes and leaves them at `image`'s size; users of a mask map it to
    /// `image` by the ratio of sizes, so a mask at another size (as annotated, before a
    /// decoding downscale) still fits.
    pub masks: Vec<Rle>,
}

/// The label proposals carry through augmentation, beside the objects' class indices.
const PROPOSAL_LABEL: usize = usize::MAX;

/// A mask as a kiln-data mask (0/1) of `width × height`, resampled by nearest pixel when the
/// RLE is at another size.
fn mask_at(rle: &Rle, width: usize, height: usize) -> Mask {
    let (mw, mh) = (rle.width as usize, rle.height as usize);
    let bitmap = rle.to_bitmap();
    let data = if (mw, mh) == (width, height) {
        bitmap
    } else {
        let mut data = Vec::with_capacity(width * height);
        for y in 0..height {
            let sy = ((y * mh) / height.max(1)).min(mh.saturating_sub(1));
            data.extend((0..width).map(|x| {
                let sx = ((x * mw) / width.max(1)).min(mw.saturating_sub(1));
                bitmap.get(sy * mw + sx).copied().unwrap_or(0)
            }));
        }
        data
    };
    Mask {
        width,
        height,
        data,
    }
}

/// Objects (with masks when the item has them) and proposals travel through augmentation as
/// one target: proposals as boxes with a reserved label (and empty masks); the image id and
/// original size travel beside the sample. Masks move with pixels and boxes through every
/// transform (kiln-data's [`Target::Instances`]).
impl Augmentable for DetectionItem {
    type Rest = (u64, [u32; 2]);

    fn into_sample(self) -> (Sample, (u64, [u32; 2])) {
        let with_masks = !self.masks.is_empty() && self.masks.len() == self.boxes.len();
        let (w, h) = (self.image.width, self.image.height);
        let mut boxes = self.boxes;
        let mut labels = self.labels;
        let proposals = self.proposals.len();
        labels.extend(std::iter::repeat_n(PROPOSAL_LABEL, proposals));
        boxes.extend(self.proposals);
        let masks = with_masks.then(|| {
            let mut masks: Vec<Mask> = self.masks.iter().map(|m| mask_at(m, w, h)).collect();
            masks.extend((0..proposals).map(|_| Mask::zeros(w, h)));
            masks
        });
        let target = Target::objects(boxes, labels, masks);
        let sample = Sample {
            image: self.image,
            target,
        };
        (sample, (self.image_id, self.original_size))
    }

    fn from_sample(sample: Sample, (image_id, original_size): (u64, [u32; 2])) -> Self {
        let (all, all_labels, all_masks) = match sample.target {
            Target::Boxes { boxes, labels } => (boxes, labels, Vec::new()),
            Target::Instances {
                boxes,
                labels,
                masks,
            } => (boxes, labels, masks),
            _ => (Vec::new(), Vec::new(), Vec::new()),
        };
        let mut all_masks = all_masks.into_iter();
        let (mut boxes, mut labels, mut proposals, mut masks) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (b, label) in all.into_iter().zip(all_labels) {
            let mask = all_masks.next();
            if label == PROPOSAL_LABEL {
                proposals.push(b);
            } else {
                boxes.push(b);
                labels.push(label);
                if let Some(m) = mask {
                    masks.push(Rle::from_bitmap(&m.data, m.height as u32, m.width as u32));
                }
            }
        }
        Self {
            image: sample.image,
            boxes,
            labels,
            image_id,
            original_size,
            proposals,
            masks,
        }
    }
}

/// How images are sized for the network.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ResizeRule {
    /// Warp to `size`×`size`, not keeping the aspect ratio (localization, R-CNN's warps).
    Square {
        /// Side in pixels.
        size: usize,
    },
    /// Scale, keeping the aspect ratio, so that the short side is `short_side` unless the long
    /// side would then exceed `max_long_side` (then the long side is `max_long_side`):
    /// torchvision's `GeneralizedRCNNTransform` rule.
    ShortSide {
        /// Target short side.
        short_side: usize,
        /// Cap on the long side.
        max_long_side: usize,
    },
}

impl ResizeRule {
    /// Checks the sides are positive.
    pub fn validate(&self) -> Result<()> {
        let ok = match *self {
            Self::Square { size } => size > 0,
            Self::ShortSide {
                short_side,
                max_long_side,
            } => short_side > 0 && max_long_side >= short_side,
        };
        if ok {
            Ok(())
        } else {
            Err(DetectError::invalid(
                "resize",
                format!("{self:?}: sides must be positive and max_long_side ≥ short_side"),
            ))
        }
    }

    /// `[width, height]` an image of `[width, height]` is resized to.
    pub fn output_size(&self, [w, h]: [usize; 2]) -> [usize; 2] {
        match *self {
            Self::Square { size } => [size, size],
            Self::ShortSide {
                short_side,
                max_long_side,
            } => {
                let (short, long) = (w.min(h).max(1) as f32, w.max(h).max(1) as f32);
                let scale = (short_side as f32 / short).min(max_long_side as f32 / long);
                [
                    ((w as f32 * scale).round() as usize).max(1),
                    ((h as f32 * scale).round() as usize).max(1),
                ]
            }
        }
    }
}

/// What the network sees of an image, and how to map its outputs back.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageInfo {
    /// The annotated image's id.
    pub image_id: u64,
    /// `[width, height]` of the original image.
    pub original_size: [u32; 2],
    /// `[width, height]` of the resized image inside the padded batch.
    pub input_size: [usize; 2],
    /// Target boxes in input pixels.
    pub boxes: Vec<BoundingBox>,
    /// Their class indices.
    pub labels: Vec<usize>,
    /// The item's region proposals in input pixels (empty when it has none).
    pub proposals: Vec<BoundingBox>,
    /// Instance masks, one per box, at their own resolution (see [`DetectionItem::masks`];
    /// empty when there are none).
    pub masks: Vec<Rle>,
}

impl ImageInfo {
    /// `(sx, sy)`: input pixels per original pixel.
    pub fn scale(&self) -> (f32, f32) {
        (
            self.input_size[0] as f32 / self.original_size[0].max(1) as f32,
            self.input_size[1] as f32 / self.original_size[1].max(1) as f32,
        )
    }

    /// A box in input pixels mapped to the original image, clipped to it.
    pub fn to_original(&self, b: &BoundingBox) -> BoundingBox {
        let (sx, sy) = self.scale();
        let (w, h) = (self.original_size[0] as f32, self.original_size[1] as f32);
        BoundingBox {
            x1: (b.x1 / sx).clamp(0.0, w),
            y1: (b.y1 / sy).clamp(0.0, h),
            x2: (b.x2 / sx).clamp(0.0, w),
            y2: (b.y2 / sy).clamp(0.0, h),
        }
    }
}

/// A batch: normalised images `[batch, 3, H, W]` (zero-padded at the right and bottom to the
/// largest image, rounded up to a multiple of the batcher's divisor) and one [`ImageInfo`] each.
#[derive(Clone, Debug)]
pub struct DetectionBatch {
    /// The images, ImageNet-normalised.
    pub images: Tensor<4>,
    /// Per image: sizes, targets and id.
    pub infos: Vec<ImageInfo>,
}

/// Makes [`DetectionBatch`]es: resize by the rule, normalise with ImageNet's mean and standard
/// deviation, pad.
#[derive(Clone, Debug)]
pub struct DetectionBatcher {
    /// The resize rule.
    pub rule: ResizeRule,
    /// Padded sides are multiples of this (32 keeps every stride of a backbone whole).
    pub size_divisor: usize,
}

impl DetectionBatcher {
    /// A batcher resizing by `rule`, padding to multiples of 32.
    pub fn new(rule: ResizeRule) -> Self {
        Self {
            rule,
            size_divisor: 32,
        }
    }

    /// The resized items and the padded `[height, width]`.
    fn resized(&self, items: Vec<DetectionItem>) -> (Vec<(Image, ImageInfo)>, [usize; 2]) {
        let divisor = self.size_divisor.max(1);
        let mut max = [0usize; 2];
        let resized: Vec<(Image, ImageInfo)> = items
            .into_iter()
            .map(|item| {
                let [w, h] = self.rule.output_size([item.image.width, item.image.height]);
                // The boxes are in the augmented image's pixels; map them through the resize,
                // and record the scale from the original image to the input.
                let (id, original) = (item.image_id, item.original_size);
                let (sample, rest) = item.into_sample();
                let sample = resize_sample(sample, w, h);
                let resized = DetectionItem::from_sample(sample, rest);
                max = [max[0].max(h), max[1].max(w)];
                let info = ImageInfo {
                    image_id: id,
                    original_size: original,
                    input_size: [w, h],
                    boxes: resized.boxes,
                    labels: resized.labels,
                    proposals: resized.proposals,
                    masks: resized.masks,
                };
                (resized.image.to_rgb(), info)
            })
            .collect();
        let padded = max.map(|s| s.div_ceil(divisor) * divisor);
        (resized, padded)
    }
}

/// Images `[n, 3, height, width]` normalised with ImageNet's statistics, zero (after
/// normalisation) beyond each image.
pub fn normalise_into(images: &[&Image], size: [usize; 2]) -> (Vec<f32>, [usize; 4]) {
    let values = kiln_data::presets::imagenet_normalised_padded(images, size);
    (values, [images.len(), 3, size[0], size[1]])
}

impl Batcher<DetectionItem, DetectionBatch> for DetectionBatcher {
    fn batch(&self, items: Vec<DetectionItem>, device: &Device) -> DetectionBatch {
        let (resized, padded) = self.resized(items);
        let images: Vec<&Image> = resized.iter().map(|(i, _)| i).collect();
        let (values, shape) = normalise_into(&images, padded);
        DetectionBatch {
            images: Tensor::from_data(TensorData::new(values, shape), device),
            infos: resized.into_iter().map(|(_, info)| info).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_travel_with_their_boxes_through_augmentation() {
        // A 10×6 image, one object: box (1, 2, 4, 5) and its mask, annotated at twice the
        // image's size (as when decoding downscaled the photo).
        let b = BoundingBox {
            x1: 1.0,
            y1: 2.0,
            x2: 4.0,
            y2: 5.0,
        };
        let mut big = vec![0u8; 20 * 12];
        for y in 4..10 {
            big[y * 20 + 2..y * 20 + 8].fill(1);
        }
        let mut with_mask = item(10, 6, b);
        with_mask.masks = vec![Rle::from_bitmap(&big, 12, 20)];
        let (sample, rest) = with_mask.into_sample();
        let flipped = kiln_data::augment::HorizontalFlip::flip(sample);
        let back = DetectionItem::from_sample(flipped, rest);
        assert_eq!(back.boxes[0].x1, 6.0);
        let mask = &back.masks[0];
        assert_eq!((mask.width, mask.height), (10, 6));
        let t = mask.bbox();
        assert_eq!((t.x1, t.y1, t.x2, t.y2), (6.0, 2.0, 9.0, 5.0));
    }

    #[test]
    fn a_mosaic_keeps_masks_on_their_boxes_and_proposals_apart() {
        use burn::data::dataset::Dataset;
        // Four photos of different sizes, one object each with a rectangular mask, and a
        // proposal each.
        let items: Vec<DetectionItem> = [(40, 30), (24, 48), (32, 32), (60, 20)]
            .into_iter()
            .enumerate()
            .map(|(k, (w, h))| {
                let b = BoundingBox {
                    x1: (w / 4) as f32,
                    y1: (h / 4) as f32,
                    x2: (3 * w / 4) as f32,
                    y2: (3 * h / 4) as f32,
                };
                let mut bitmap = vec![0u8; w * h];
                for y in h / 4..3 * h / 4 {
                    bitmap[y * w + w / 4..y * w + 3 * w / 4].fill(1);
                }
                let mut with = item(w, h, b);
                with.labels = vec![k];
                with.masks = vec![Rle::from_bitmap(&bitmap, h as u32, w as u32)];
                with.proposals = vec![BoundingBox {
                    x1: 0.0,
                    y1: 0.0,
                    x2: w as f32,
                    y2: h as f32,
                }];
                with
            })
            .collect();
        let steps = [kiln_data::augment::TransformConfig::Mosaic {
            size: 32,
            p: 1.0,
            min_visible: 0.05,
            fill: 114,
        }];
        let data =
            crate::dataset::DetectionImages::new(std::sync::Arc::new(items), &steps, 5).unwrap();
        let counter = data.epoch_counter();
        let mut objects = 0;
        for epoch in 0..10 {
            counter.set(epoch);
            for i in 0..4 {
                let mixed = data.get(i).unwrap();
                assert_eq!((mixed.image.width, mixed.image.height), (32, 32));
                assert_eq!(mixed.masks.len(), mixed.boxes.len());
                assert!(!mixed.proposals.is_empty() && mixed.proposals.len() <= 4);
                assert!(mixed.labels.iter().all(|&l| l < 4));
                for (b, m) in mixed.boxes.iter().zip(&mixed.masks) {
                    let t = m.bbox();
                    // Nearest-pixel masks sit within a pixel of their bilinear boxes.
                    for (got, want) in [(t.x1, b.x1), (t.y1, b.y1), (t.x2, b.x2), (t.y2, b.y2)] {
                        assert!((got - want).abs() <= 1.0, "mask {t:?} box {b:?}");
                    }
                }
                objects += mixed.boxes.len();
            }
        }
        // A mosaic shows objects of several photos.
        assert!(objects > 40, "{objects} objects in 40 mosaics");
    }

    fn item(w: usize, h: usize, b: BoundingBox) -> DetectionItem {
        DetectionItem {
            image: Image::filled(w, h, 3, 128),
            boxes: vec![b],
            labels: vec![0],
            image_id: 7,
            original_size: [w as u32, h as u32],
            proposals: vec![],
            masks: Vec::new(),
        }
    }

    #[test]
    fn short_side_rule_keeps_aspect_and_caps_the_long_side() {
        let rule = ResizeRule::ShortSide {
            short_side: 400,
            max_long_side: 600,
        };
        assert_eq!(rule.output_size([500, 250]), [600, 300]);
        assert_eq!(rule.output_size([300, 400]), [400, 533]);
        assert!(ResizeRule::Square { size: 0 }.validate().is_err());
    }

    #[test]
    fn batch_pads_scales_boxes_and_maps_them_back() {
        let batcher = DetectionBatcher::new(ResizeRule::ShortSide {
            short_side: 64,
            max_long_side: 200,
        });
        let b = BoundingBox {
            x1: 10.0,
            y1: 5.0,
            x2: 30.0,
            y2: 25.0,
        };
        let items = vec![item(64, 32, b), item(40, 40, b)];
        let batch = batcher.batch(items, &Device::flex());
        // 64×32 → 128×64, 40×40 → 64×64; padded to [64, 128] (multiples of 32).
        assert_eq!(batch.images.dims(), [2, 3, 64, 128]);
        let first = &batch.infos[0];
        assert_eq!(first.input_size, [128, 64]);
        assert_eq!(
            first.boxes[0],
            BoundingBox {
                x1: 20.0,
                y1: 10.0,
                x2: 60.0,
                y2: 50.0
            }
        );
        assert_eq!(first.to_original(&first.boxes[0]), b);
        // The padding of the second image is zero after normalisation.
        let pad = batch
            .images
            .slice([1..2, 0..3, 0..64, 64..128])
            .abs()
            .max()
            .into_scalar::<f32>();
        assert_eq!(pad, 0.0);
    }

    #[test]
    fn proposals_travel_with_the_image_and_stay_apart_from_objects() {
        let b = BoundingBox {
            x1: 10.0,
            y1: 5.0,
            x2: 30.0,
            y2: 25.0,
        };
        let proposal = BoundingBox {
            x1: 0.0,
            y1: 0.0,
            x2: 32.0,
            y2: 16.0,
        };
        let mut with = item(64, 32, b);
        with.proposals = vec![proposal, b];
        // Through a sample (what augmentation sees) and back: nothing is mixed up.
        let (sample, rest) = with.clone().into_sample();
        assert_eq!(DetectionItem::from_sample(sample, rest), with);
        // A flip moves them like the objects.
        let (sample, rest) = with.into_sample();
        let flipped =
            DetectionItem::from_sample(kiln_data::augment::HorizontalFlip::flip(sample), rest);
        assert_eq!(flipped.labels, vec![0]);
        assert_eq!((flipped.boxes[0].x1, flipped.boxes[0].x2), (34.0, 54.0));
        assert_eq!(
            (flipped.proposals[0].x1, flipped.proposals[0].x2),
            (32.0, 64.0)
        );
        // The batcher scales them into input pixels.
        let batcher = DetectionBatcher::new(ResizeRule::ShortSide {
            short_side: 64,
            max_long_side: 200,
        });
        let batch = batcher.batch(vec![flipped], &Device::flex());
        assert_eq!(batch.infos[0].proposals[0].x2, 128.0);
        assert_eq!(batch.infos[0].proposals.len(), 2);
    }
}
