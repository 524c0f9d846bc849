//! Detection images decoded into memory, served as [`DetectionItem`]s with seeded, box-aware
//! augmentation (kiln-data's pipeline: flips, crops, colour jitter move boxes with pixels).

use kiln_data::AugmentedItems;
use kiln_data::image_folder::decode_image;
use rayon::prelude::*;

use crate::Result;
use crate::batch::DetectionItem;
use crate::data::DetectionSet;
use kiln_data::Augmentable;

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
                masks: annotated
                    .objects
                    .iter()
                    .map(|o| o.mask.clone())
                    .collect::<Option<Vec<_>>>()
                    .unwrap_or_default(),
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
                    let (sample, rest) = item.into_sample();
                    DetectionItem::from_sample(
                        kiln_data::augment::resize_sample(sample, nw, nh),
                        rest,
                    )
                }
                _ => item,
            })
        })
        .collect()
}

/// Detection items augmented on access (seeded, box-aware).
pub type DetectionImages = AugmentedItems<DetectionItem>;
