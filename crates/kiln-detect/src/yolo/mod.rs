//! YOLO: detection in one forward pass, no proposals — the image divided into a grid whose
//! cells regress boxes and score classes.
//!
//! Two heads, chosen by `[yolo] head`:
//!
//! - [`v1`]: YOLOv1 (Redmon et al. 2016) as the paper has it — S×S cells, B boxes each with a
//!   confidence, C class probabilities per cell, fully connected layers, sum-squared loss with
//!   λcoord = 5 and λnoobj = 0.5 — on a kiln-nets backbone instead of Darknet.
//! - [`anchor`]: the modern single-stage detector. It follows YOLOv3 in its structure (anchor
//!   boxes fitted by k-means to the training boxes — [`anchors`] — predicted on two strides,
//!   16 and 32, joined by a top-down neck; objectness and classes by binary cross-entropy) and
//!   YOLOv5 in its training rule: boxes decoded within a quarter to four times their anchor and
//!   half a cell beyond their cell, each object matched to every anchor within a size ratio of
//!   4 in its cell and the two nearest neighbours, the box loss `1 − CIoU`, objectness targets
//!   equal to the IoU reached, YOLOv5's loss weights. Why anchors rather than an anchor-free head
//!   (YOLOX, FCOS): on a few hundred images of one class, k-means anchors put a prior on the
//!   shapes to expect that an anchor-free head must learn from the data, and YOLOv5's matching
//!   gives every object several positives at once without the dynamic assignment (SimOTA) an
//!   anchor-free head leans on.
//!
//! Both train in kiln-train's loop ([`task`]) and keep detections by the rule every detector
//! here shares ([`crate::two_stage::DetectionRule::select`]): score threshold, per-class NMS,
//! the best detections per image.

pub mod anchor;
pub mod anchors;
pub mod config;
pub mod decode;
pub mod task;
pub mod v1;

pub use anchors::{AnchorFit, box_sizes, fit_anchors, write_anchor_sizes};
pub use config::{AnchorHeadConfig, IouLoss, YoloConfig, YoloHead, YoloV1Config};
pub use task::{Yolo, YoloTask, detect_yolo, train_yolo, yolo, yolo_shape};
