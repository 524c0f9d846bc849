//! From a YOLO head's scored boxes to detections: score threshold, clipping, minimum size,
//! per-class NMS, the best `max_detections` — the same rule for both heads.

use burn::tensor::Tensor;

use crate::batch::ImageInfo;
use crate::data::{BoundingBox, Detection};
use crate::ops::host::{batched_nms, clip};
use crate::two_stage::DetectionRule;
use crate::{DetectError, Result};

/// One scored box of one class, in input pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// The box.
    pub bbox: BoundingBox,
    /// Its score for `class`.
    pub score: f32,
    /// Class index.
    pub class: usize,
}

/// A tensor's values on the host, in row-major order.
pub(crate) fn read_values<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| DetectError::invalid("YOLO output", format!("{e:?}")))
}

/// The detections (input pixels) `rule` keeps of one image's `candidates`.
pub fn select_detections(
    candidates: &[Candidate],
    info: &ImageInfo,
    rule: &DetectionRule,
) -> Vec<Detection> {
    let [w, h] = [info.input_size[0] as f32, info.input_size[1] as f32];
    let kept: Vec<Candidate> = candidates
        .iter()
        .filter(|c| c.score > rule.score_threshold)
        .map(|c| Candidate {
            bbox: clip(&c.bbox, w, h),
            ..*c
        })
        .filter(|c| {
            c.bbox.x2 - c.bbox.x1 >= rule.min_size && c.bbox.y2 - c.bbox.y1 >= rule.min_size
        })
        .collect();
    let boxes: Vec<BoundingBox> = kept.iter().map(|c| c.bbox).collect();
    let scores: Vec<f32> = kept.iter().map(|c| c.score).collect();
    let classes: Vec<usize> = kept.iter().map(|c| c.class).collect();
    let mut keep = batched_nms(&boxes, &scores, &classes, rule.nms_iou);
    keep.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    keep.truncate(rule.max_detections);
    keep.into_iter()
        .map(|k| Detection {
            image_id: info.image_id,
            class: classes[k],
            bbox: boxes[k],
            score: scores[k],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(x1: f32, y1: f32, x2: f32, y2: f32) -> BoundingBox {
        BoundingBox { x1, y1, x2, y2 }
    }

    #[test]
    fn threshold_clip_nms_per_class_and_top_k() {
        let info = ImageInfo {
            image_id: 3,
            original_size: [100, 100],
            input_size: [100, 100],
            boxes: vec![],
            labels: vec![],
            proposals: vec![],
        };
        let c = |b, score, class| Candidate {
            bbox: b,
            score,
            class,
        };
        let candidates = [
            c(bx(10.0, 10.0, 50.0, 50.0), 0.9, 0),
            // Overlaps the first, same class: suppressed.
            c(bx(12.0, 10.0, 52.0, 50.0), 0.8, 0),
            // Same place, other class: kept.
            c(bx(12.0, 10.0, 52.0, 50.0), 0.7, 1),
            // Below the threshold.
            c(bx(60.0, 60.0, 90.0, 90.0), 0.01, 0),
            // Crosses the border: clipped.
            c(bx(80.0, -5.0, 120.0, 30.0), 0.6, 0),
            // Thinner than min_size after clipping.
            c(bx(99.5, 0.0, 130.0, 30.0), 0.95, 0),
        ];
        let rule = DetectionRule {
            score_threshold: 0.05,
            nms_iou: 0.5,
            max_detections: 2,
            min_size: 1.0,
        };
        let found = select_detections(&candidates, &info, &rule);
        assert_eq!(found.len(), 2);
        assert_eq!((found[0].class, found[0].score), (0, 0.9));
        assert_eq!((found[1].class, found[1].score), (1, 0.7));
        let all = select_detections(
            &candidates,
            &info,
            &DetectionRule {
                max_detections: 10,
                ..rule
            },
        );
        assert_eq!(all.len(), 3);
        assert_eq!(all[2].bbox, bx(80.0, 0.0, 100.0, 30.0));
        assert_eq!(all[2].image_id, 3);
    }
}
