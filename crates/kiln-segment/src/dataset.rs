//! Segmentation photos and labels decoded into memory, served as [`SegmentationItem`]s with
//! seeded, mask-aware augmentation (kiln-data's pipeline: flips, crops and resizes move the
//! labels with the pixels, nearest-neighbour; colour jitter leaves them alone).

use kiln_data::AugmentedItems;
use rayon::prelude::*;

use crate::Result;
use crate::batch::SegmentationItem;
use crate::data::{ClassList, SegmentationSplit, load_sample};

/// Decodes every photo and label of `split` (in parallel), checking each label.
pub fn decode_split(
    split: &SegmentationSplit,
    classes: &ClassList,
) -> Result<Vec<SegmentationItem>> {
    split
        .samples
        .par_iter()
        .map(|sample| {
            let (image, mask) = load_sample(sample, classes)?;
            let name = sample
                .image
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            Ok(SegmentationItem { image, mask, name })
        })
        .collect()
}

/// Segmentation items augmented on access (seeded, mask-aware).
pub type SegmentationImages = AugmentedItems<SegmentationItem>;
