//! Detection images decoded into memory, served as [`DetectionItem`]s with seeded, box-aware
//! augmentation (kiln-data's pipeline: flips, crops, colour jitter move boxes with pixels).

use std::sync::Arc;

use burn::data::dataset::{Dataset, DatasetError};
use kiln_data::EpochCounter;
use kiln_data::augment::{Pipeline, TransformConfig};
use kiln_data::image_folder::decode_image;
use rayon::prelude::*;

use crate::Result;
use crate::batch::DetectionItem;
use crate::data::DetectionSet;

/// Decodes every image of `set` (in parallel) into items with their boxes and labels. Images
/// whose long side exceeds `max_side` are downscaled to it on decoding (boxes alike; the
/// original size is kept for reporting detections).
pub fn decode_items(set: &DetectionSet, max_side: Option<usize>) -> Result<Vec<DetectionItem>> {
    set.images
        .par_iter()
        .map(|annotated| {
            let image = decode_image(&annotated.path, None)?.to_rgb();
            let (w, h) = (image.width, image.height);
            let item = DetectionItem {
                image,
                boxes: annotated.objects.iter().map(|o| o.bbox).collect(),
                labels: annotated.objects.iter().map(|o| o.class).collect(),
                image_id: annotated.id,
                original_size: [w as u32, h as u32],
                proposals: Vec::new(),
            };
            // Annotations are in the file's pixels: rescale boxes if the annotation's size
            // was wrong (the reader trusts the file) — they agree after reading.
            Ok(match max_side {
                Some(max) if w.max(h) > max => {
                    let scale = max as f32 / w.max(h) as f32;
                    let (nw, nh) = (
                        ((w as f32 * scale).round() as usize).max(1),
                        ((h as f32 * scale).round() as usize).max(1),
                    );
                    let (id, original) = (item.image_id, item.original_size);
                    let (sample, _, _) = item.into_sample();
                    DetectionItem::from_sample(
                        kiln_data::augment::resize_sample(sample, nw, nh),
                        id,
                        original,
                    )
                }
                _ => item,
            })
        })
        .collect()
}

/// A Burn [`Dataset`] of in-memory detection items, augmented on access: item `i` in epoch `e`
/// always gets the same augmentation for a seed, whichever thread reads it.
#[derive(Clone, Debug)]
pub struct DetectionImages {
    items: Arc<Vec<DetectionItem>>,
    pipeline: Arc<Pipeline>,
    epoch: EpochCounter,
}

impl DetectionImages {
    /// `items` augmented by the `[[augment]]` steps with `seed`.
    pub fn new(
        items: Arc<Vec<DetectionItem>>,
        steps: &[TransformConfig],
        seed: u64,
    ) -> Result<Self> {
        Ok(Self {
            items,
            pipeline: Arc::new(Pipeline::from_config(steps, seed)?),
            epoch: EpochCounter::default(),
        })
    }

    /// `items` as they are (evaluation).
    pub fn plain(items: Arc<Vec<DetectionItem>>) -> Self {
        Self {
            items,
            pipeline: Arc::new(Pipeline::default()),
            epoch: EpochCounter::default(),
        }
    }

    /// A handle to set the augmentation epoch after the dataset moved into a loader.
    pub fn epoch_counter(&self) -> EpochCounter {
        self.epoch.clone()
    }

    /// The items without augmentation.
    pub fn items(&self) -> &[DetectionItem] {
        &self.items
    }
}

impl Dataset<DetectionItem> for DetectionImages {
    fn get(&self, index: usize) -> Result<DetectionItem, DatasetError> {
        let item = self.items.get(index).cloned().ok_or_else(|| {
            DatasetError::new(std::io::Error::other(format!(
                "detection item {index} is out of range ({} items)",
                self.items.len()
            )))
        })?;
        if self.pipeline.is_identity() {
            return Ok(item);
        }
        let (sample, id, original) = item.into_sample();
        let sample = self.pipeline.apply(sample, self.epoch.get(), index as u64);
        Ok(DetectionItem::from_sample(sample, id, original))
    }

    fn len(&self) -> usize {
        self.items.len()
    }
}
