//! Object detection on Burn, the way CS231n walks it: localization as regression, sliding
//! windows (OverFeat), region proposals (selective search), R-CNN and Fast R-CNN, with everything detectors
//! share in one place.
//!
//! - [`data`]: annotated images, Pascal VOC and COCO readers and writers, COCO results;
//! - [`ops`]: box ops as tensor functions (IoU, GIoU, box coding, clipping, NMS), shared by
//!   every detector as torchvision's `ops` are;
//! - [`eval`]: the COCO evaluator (equal to pycocotools' `COCOeval`) and VOC's AP;
//! - [`proposals`]: selective search (Felzenszwalb–Huttenlocher segmentation and hierarchical
//!   grouping) and proposal recall;
//! - [`two_stage`]: Fast R-CNN (RoI pooling of a shared feature map, the box head) and Faster
//!   R-CNN (the region proposal network);
//! - [`yolo`]: YOLOv1 and a modern anchor-box YOLO, one pass and no proposals;
//! - [`detector`]: what every end-to-end detector gives kiln-train's loop, and the one training
//!   task made from it.
//!
//! The crate never picks a Burn backend: every function takes tensors or a device.

#![warn(missing_docs)]

pub mod batch;
pub mod config;
pub mod data;
pub mod dataset;
pub mod detector;
pub mod draw;
mod error;
pub mod eval;
pub mod localize;
pub mod ops;
pub mod predict;
pub mod proposals;
pub mod rcnn;
pub mod run;
pub mod train;
pub mod two_stage;
pub mod yolo;

pub use error::{DetectError, Result};
