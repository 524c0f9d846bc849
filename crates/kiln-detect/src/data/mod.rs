//! Detection data: what an annotated image is, readers and writers for Pascal VOC and COCO, and
//! detections as COCO results.
//!
//! Coordinates are continuous pixel coordinates with the origin at the top-left corner of the
//! top-left pixel, as torchvision and pycocotools use them: a box covering the whole W×H image is
//! `(0, 0, W, H)`, and its area is `(x2 - x1) * (y2 - y1)`. Pascal VOC's 1-based inclusive pixel
//! indices are converted on reading (`xmin - 1`, `ymin - 1`, `xmax`, `ymax`), as Detectron does.

pub use kiln_data::augment::BoundingBox;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// An object category: its id as written in COCO files, and its name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    /// The COCO `category_id` (VOC classes are numbered from 1 in the order of the class list).
    pub id: u64,
    /// The class name.
    pub name: String,
}

/// One annotated object.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    /// Its box in pixel coordinates of the original image.
    pub bbox: BoundingBox,
    /// Index into [`DetectionSet::categories`] (not the COCO id).
    pub class: usize,
    /// Area used for COCO's small/medium/large ranges: COCO's `area` field when read from COCO
    /// (the segmentation's area), else the box's area.
    pub area: f32,
    /// VOC's `difficult` flag: neither a true nor a false positive when matched (VOC), ignored
    /// like a crowd region by the COCO evaluator.
    pub difficult: bool,
    /// COCO's `iscrowd`.
    pub crowd: bool,
    /// Its instance mask at the original image's size, when annotated (COCO segmentations,
    /// VOC `SegmentationObject` PNGs).
    pub mask: Option<Rle>,
}

impl Object {
    /// An object of `class` known by its mask: the mask's tight box, its pixel count as the
    /// area (as COCO computes both), neither difficult nor crowd.
    pub fn from_mask(class: usize, mask: Rle) -> Self {
        Self {
            bbox: mask.bbox(),
            class,
            area: mask.area() as f32,
            difficult: false,
            crowd: false,
            mask: Some(mask),
        }
    }
}

/// One image and its objects.
#[derive(Clone, Debug, PartialEq)]
pub struct AnnotatedImage {
    /// The COCO `image_id` (VOC images are numbered from 1 in sorted file order).
    pub id: u64,
    /// Where the image file is.
    pub path: PathBuf,
    /// Width in pixels, as annotated (checked against the file when it is decoded).
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Its objects (possibly none).
    pub objects: Vec<Object>,
}

/// A detection data set: categories and annotated images.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct DetectionSet {
    /// The categories, in class-index order.
    pub categories: Vec<Category>,
    /// The images.
    pub images: Vec<AnnotatedImage>,
}

impl DetectionSet {
    /// The first image with an object that has no mask (what mask training and mask
    /// evaluation refuse), if any.
    pub fn image_without_masks(&self) -> Option<&AnnotatedImage> {
        self.images
            .iter()
            .find(|im| im.objects.iter().any(|o| o.mask.is_none()))
    }
}

/// One detection, as a detector outputs it and COCO results files hold it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    /// The image's id ([`AnnotatedImage::id`]).
    pub image_id: u64,
    /// Index into the categories.
    pub class: usize,
    /// The box in pixel coordinates of the original image.
    pub bbox: BoundingBox,
    /// Confidence; higher is surer.
    pub score: f32,
}

/// A detection with its instance mask (Mask R-CNN's output, a COCO `segm` result).
#[derive(Clone, Debug, PartialEq)]
pub struct MaskDetection {
    /// The box, class and score.
    pub detection: Detection,
    /// The mask at the original image's size.
    pub mask: Rle,
    /// The area COCO's small/medium/large ranges use for it: its box's, as pycocotools'
    /// `loadRes` computes it for results that have boxes (the mask's for results without).
    pub area: f64,
}

pub mod coco;
pub mod coco_folder;
pub mod load;
pub mod polygon;
pub mod results;
pub mod rle;
pub mod segmentation;
pub mod shapes;
mod split;
pub mod voc;
pub mod voc_masks;

pub use coco::{read_coco_instances, write_coco_instances};
pub use load::{LoadOptions, LoadReport, LoadedSplits, SplitSource, load_detection_data};
pub use polygon::{polygon_to_rle, polygons_to_rle};
pub use results::{
    read_coco_mask_results, read_coco_results, write_coco_mask_results, write_coco_results,
};
pub use rle::Rle;
pub use voc::{VocAnnotation, VocObject, read_voc_annotation};
