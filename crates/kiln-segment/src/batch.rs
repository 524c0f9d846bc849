//! Segmentation items and batches: images normalised with ImageNet's statistics and padded to a
//! multiple of the network's stride (32), label masks padded with the ignored value, and each
//! item's own size kept so that logits are cropped back before scoring.

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::{Device, Int, Tensor, TensorData};
use kiln_data::augment::{Mask, Sample, Target};
use kiln_data::presets::imagenet_normalised_padded;
use kiln_data::{Augmentable, Image};

/// One photo with its label mask, as a dataset yields it (after augmentation).
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentationItem {
    /// The (augmented) RGB photo.
    pub image: Image,
    /// One class id a pixel, [`Mask::IGNORE`] where unlabelled; the photo's size.
    pub mask: Mask,
    /// File stem of the photo (for pictures and reports).
    pub name: String,
}

/// The mask travels through augmentation as the sample's target; the name beside it.
impl Augmentable for SegmentationItem {
    type Rest = String;

    fn into_sample(self) -> (Sample, String) {
        (
            Sample {
                image: self.image,
                target: Target::Mask(self.mask),
            },
            self.name,
        )
    }

    /// # Panics
    /// When the sample's target is not a mask (a bug: only masks go in).
    fn from_sample(sample: Sample, name: String) -> Self {
        let Target::Mask(mask) = sample.target else {
            panic!("a segmentation sample carries a mask");
        };
        Self {
            image: sample.image,
            mask,
            name,
        }
    }
}

/// A batch: images, targets and what is needed to crop the logits back.
#[derive(Clone, Debug)]
pub struct SegmentationBatch {
    /// `[batch, 3, height, width]`, normalised, zero beyond each image.
    pub images: Tensor<4>,
    /// `[batch, height, width]` class ids, [`Mask::IGNORE`] where unlabelled or padded.
    pub targets: Tensor<3, Int>,
    /// The items' label masks at their own sizes (for metrics and pictures).
    pub masks: Vec<Mask>,
    /// The items' photos (for pictures).
    pub photos: Vec<Image>,
    /// The items' names.
    pub names: Vec<String>,
}

/// Pads items to a multiple of `divisor` and stacks them.
#[derive(Clone, Debug)]
pub struct SegmentationBatcher {
    /// Each padded side is a multiple of this (the backbone's coarsest stride).
    pub divisor: usize,
}

impl Default for SegmentationBatcher {
    fn default() -> Self {
        Self { divisor: 32 }
    }
}

impl SegmentationBatcher {
    /// `[height, width]` the items are padded to: the largest of each side, rounded up.
    pub fn padded_size(&self, items: &[SegmentationItem]) -> [usize; 2] {
        let d = self.divisor.max(1);
        let h = items.iter().map(|i| i.image.height).max().unwrap_or(d);
        let w = items.iter().map(|i| i.image.width).max().unwrap_or(d);
        [h.div_ceil(d) * d, w.div_ceil(d) * d]
    }
}

/// Label masks as `[n, height, width]` class ids, [`Mask::IGNORE`] beyond each mask.
fn padded_targets(masks: &[&Mask], [height, width]: [usize; 2]) -> Vec<i64> {
    let mut values = vec![i64::from(Mask::IGNORE); masks.len() * height * width];
    for (n, mask) in masks.iter().enumerate() {
        for y in 0..mask.height.min(height) {
            let row = &mask.data[y * mask.width..][..mask.width.min(width)];
            let out = &mut values[(n * height + y) * width..][..row.len()];
            for (o, &v) in out.iter_mut().zip(row) {
                *o = i64::from(v);
            }
        }
    }
    values
}

impl Batcher<SegmentationItem, SegmentationBatch> for SegmentationBatcher {
    fn batch(&self, items: Vec<SegmentationItem>, device: &Device) -> SegmentationBatch {
        let size = self.padded_size(&items);
        let photos: Vec<&Image> = items.iter().map(|i| &i.image).collect();
        let masks: Vec<&Mask> = items.iter().map(|i| &i.mask).collect();
        let n = items.len();
        let images = Tensor::from_data(
            TensorData::new(
                imagenet_normalised_padded(&photos, size),
                [n, 3, size[0], size[1]],
            ),
            device,
        );
        let targets = Tensor::from_data(
            TensorData::new(padded_targets(&masks, size), [n, size[0], size[1]]),
            device,
        );
        let mut batch = SegmentationBatch {
            images,
            targets,
            masks: Vec::with_capacity(n),
            photos: Vec::with_capacity(n),
            names: Vec::with_capacity(n),
        };
        for item in items {
            batch.masks.push(item.mask);
            batch.photos.push(item.image);
            batch.names.push(item.name);
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(w: usize, h: usize, value: u8) -> SegmentationItem {
        SegmentationItem {
            image: Image::filled(w, h, 3, 124),
            mask: Mask {
                width: w,
                height: h,
                data: vec![value; w * h],
            },
            name: format!("{w}x{h}"),
        }
    }

    #[test]
    fn batches_pad_to_the_stride_with_ignored_labels() {
        let device = Device::flex();
        let batcher = SegmentationBatcher::default();
        let batch = batcher.batch(vec![item(40, 30, 2), item(33, 64, 5)], &device);
        assert_eq!(batch.images.dims(), [2, 3, 64, 64]);
        let targets: Vec<i64> = batch
            .targets
            .into_data()
            .convert::<i64>()
            .try_to_vec()
            .unwrap();
        // Item 0: labelled inside 40×30, ignored beyond (right and below).
        assert_eq!(targets[0], 2);
        assert_eq!(targets[29 * 64 + 39], 2);
        assert_eq!(targets[29 * 64 + 40], i64::from(Mask::IGNORE));
        assert_eq!(targets[30 * 64], i64::from(Mask::IGNORE));
        // Item 1: 33 wide, all 64 rows.
        let second = &targets[64 * 64..];
        assert_eq!((second[63 * 64 + 32], second[63 * 64 + 33]), (5, 255));
        // Images are zero (the mean) beyond each photo.
        let pixels: Vec<f32> = batch.images.into_data().try_to_vec().unwrap();
        assert_eq!(pixels[40], 0.0);
        assert!(pixels[39] != 0.0);
        assert_eq!(batch.masks[1].width, 33);
        assert_eq!(batch.names, ["40x30", "33x64"]);
    }
}
