//! Two-stage detectors: features of the whole image computed once, regions cut from them with
//! an RoI op ([`crate::ops::roi_align`] / [`crate::ops::roi_pool`]) and classified and refined by
//! a box head — Fast R-CNN (Girshick 2015) on selective-search proposals.
//!
//! - [`sampler`]: matching regions to ground truth and the minibatch of regions per image;
//! - [`model`]: backbone, neck and box head;
//! - [`roi_heads`]: the head's losses and its test-time detections;
//! - [`task`]: training in kiln-train's loop;
//! - [`pipeline`]: proposals attached to images, training and detection from a config;
//! - [`config`]: the `[fast_rcnn]` table.

pub mod config;
pub mod model;
pub mod pipeline;
pub mod roi_heads;
pub mod sampler;
pub mod task;

pub use config::{BoxHeadConfig, DetectionRule, FastRcnnConfig, RoiOp, RoiPooler};
pub use model::{BoxHead, FastRcnn};
pub use sampler::{RoiSampling, SampledRoi, sample_rois};
pub use task::FastRcnnTask;
