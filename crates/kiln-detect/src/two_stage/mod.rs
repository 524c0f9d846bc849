//! Two-stage detectors: features of the whole image computed once, regions cut from them with
//! an RoI op ([`crate::ops::roi_align`] / [`crate::ops::roi_pool`]) and classified and refined by
//! a box head — Fast R-CNN (Girshick 2015) on selective-search proposals, and Faster R-CNN
//! (Ren et al. 2015), whose region proposal network proposes the regions from the same map.
//!
//! - [`anchors`]: anchor boxes per feature-map cell;
//! - [`rpn`]: the region proposal network, its anchor labels, losses and proposals;
//! - [`faster`]: Faster R-CNN's network, task and config;
//! - [`sampler`]: matching regions to ground truth and the minibatch of regions per image;
//! - [`model`]: backbone, neck and box head;
//! - [`roi_heads`]: the head's losses and its test-time detections;
//! - [`task`]: Fast R-CNN's losses and detections on given regions (its [`crate::detector::Detector`]);
//! - [`pipeline`]: proposals attached to images, training and detection from a config;
//! - [`config`]: the `[fast_rcnn]` table.

pub mod anchors;
pub mod config;
pub mod faster;
pub mod mask_head;
pub mod mask_rcnn;
pub mod model;
pub mod pipeline;
pub mod roi_heads;
pub mod rpn;
pub mod sampler;
pub mod scale;
pub mod task;

pub use config::{BoxHeadConfig, Candidate, DetectionRule, FastRcnnConfig, RoiOp, RoiPooler};
pub use faster::{FasterRcnn, FasterRcnnConfig, FasterRcnnTask};
pub use mask_head::{MaskHead, MaskHeadConfig};
pub use mask_rcnn::{MaskRcnn, MaskRcnnTask};
pub use model::{BoxHead, FastRcnn};
pub use sampler::{RoiSampling, SampledRoi, sample_rois};
pub use scale::ScaleJitter;
pub use task::FastRcnnTask;
