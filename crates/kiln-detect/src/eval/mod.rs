//! The COCO evaluator and VOC AP.
//!
//! One matcher ([`matcher`]) and one AP integrator ([`ap`]) serve every metric:
//!
//! - [`evaluate_coco`]: pycocotools' `COCOeval` (bbox) numbers — AP@[.50:.05:.95], AP50, AP75,
//!   AP small/medium/large, AR@1/10/100 and AR small/medium/large — per class and mean, equal
//!   to pycocotools' to 1e-4 (checked by `benches/coco_eval_check.py`). VOC `difficult`
//!   objects are ignored like crowd regions (pycocotools has no such flag).
//!   [`evaluate_coco_masks`]: the same with `iouType='segm'` (mask IoU on RLE).
//! - [`evaluate_voc`]: Pascal VOC AP, VOC2007's 11-point or VOC2010+'s all-point, with
//!   `difficult` objects neither true nor false positives.
//! - [`report`]: the text table `kiln-detect eval` prints, and `metrics.json`;
//!   [`plot`]: `pr_curve.png`.
//!
//! Boxes are continuous pixel coordinates (see [`crate::data`]), so IoU has no `+ 1`.

pub mod ap;
pub mod coco;
pub mod masks;
pub mod matcher;
pub mod plot;
pub mod report;
pub mod voc;

pub use ap::{ApMethod, Outcome, PrCurve, recall_thresholds};
pub use coco::{
    AreaRange, CocoClassMetrics, CocoEvaluation, CocoStats, Evaluable, MAX_DETS, evaluate_coco,
    evaluate_coco_masks, iou_thresholds,
};
pub use masks::mean_matched_mask_iou;
pub use matcher::{GtFlags, IouMatrix, MatchRule, coco_iou, match_detections};
pub use plot::save_pr_curves;
pub use report::{format_report, write_metrics_json};
pub use voc::{VocAp, VocClassMetrics, VocEvaluation, evaluate_voc};

#[cfg(test)]
mod tests;
