//! Box ops shared by every detector, as torchvision keeps them in `torchvision.ops`: IoU and
//! GIoU matrices, R-CNN box coding, clipping, NMS and batched (per-class) NMS, and the RoI
//! ops RoIAlign and RoIPool.
//!
//! Boxes are `[N, 4]` tensors of `(x1, y1, x2, y2)` in continuous pixel coordinates (see
//! [`crate::data`]); every function is differentiable where it makes sense and works on any
//! backend. [`host`] holds the same ops on plain [`BoundingBox`]es for
//! code that runs off the tensor path (evaluation, proposals, data). [`masks`] holds Mask
//! R-CNN's mask targets and pasting, [`components`] instances from semantic label maps.

mod boxes;
mod coder;
pub mod components;
pub mod host;
pub mod masks;
mod nms;
mod roi;

pub use boxes::{
    box_area, box_iou, clip_boxes, generalized_box_iou, paired_complete_iou, paired_generalized_iou,
};
pub use coder::{BoxCoder, DEFAULT_DELTA_CLAMP};
pub use nms::{batched_nms, nms};
pub use roi::{RoiAlignConfig, RoiPoolConfig, roi_align, roi_pool};

use burn::tensor::{Tensor, TensorData};

use crate::data::BoundingBox;

/// Boxes as a `[N, 4]` tensor on `device`.
pub fn boxes_to_tensor(boxes: &[BoundingBox], device: &burn::tensor::Device) -> Tensor<2> {
    let flat: Vec<f32> = boxes
        .iter()
        .flat_map(|b| [b.x1, b.y1, b.x2, b.y2])
        .collect();
    Tensor::from_data(TensorData::new(flat, [boxes.len(), 4]), device)
}

/// A `[N, 4]` tensor read back as boxes.
pub fn tensor_to_boxes(boxes: Tensor<2>) -> Vec<BoundingBox> {
    let values = boxes
        .into_data()
        .convert::<f32>()
        .try_into_vec_as::<f32>()
        .unwrap_or_default();
    values
        .chunks_exact(4)
        .map(|c| BoundingBox {
            x1: c[0],
            y1: c[1],
            x2: c[2],
            y2: c[3],
        })
        .collect()
}
