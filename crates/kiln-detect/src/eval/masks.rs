//! Instance-mask scores beside COCO's mask AP: the mean mask IoU of matched instances.

use std::collections::BTreeMap;

use super::coco::{Evaluable, sort_by_score};
use super::matcher::{GtFlags, MatchRule, match_detections};
use crate::data::{DetectionSet, MaskDetection, Object};

/// One image's objects and mask detections of one class.
type Cell<'a> = (Vec<&'a Object>, Vec<&'a MaskDetection>);

/// The mean mask IoU of the detections matched to ground-truth objects, and how many matched:
/// per image and class, detections in descending score order are matched greedily at mask
/// IoU ≥ 0.5 (COCO's rule; crowd and difficult objects left out). `(0, 0)` when none match.
pub fn mean_matched_mask_iou(gt: &DetectionSet, detections: &[MaskDetection]) -> (f64, usize) {
    let mut cells: BTreeMap<(u64, usize), Cell<'_>> = BTreeMap::new();
    for im in &gt.images {
        for o in im.objects.iter().filter(|o| !o.crowd && !o.difficult) {
            cells.entry((im.id, o.class)).or_default().0.push(o);
        }
    }
    for d in detections {
        if let Some(cell) = cells.get_mut(&(d.detection.image_id, d.detection.class)) {
            cell.1.push(d);
        }
    }
    let (mut sum, mut matched) = (0.0, 0usize);
    for (gts, mut dets) in cells.into_values() {
        sort_by_score(&mut dets, |d| f64::from(d.detection.score));
        let ious = MaskDetection::ious(&dets, &gts);
        let flags = vec![
            GtFlags {
                ignore: false,
                crowd: false,
            };
            gts.len()
        ];
        for (d, g) in match_detections(&ious, &flags, 0.5, MatchRule::Coco)
            .into_iter()
            .enumerate()
        {
            if let Some(g) = g {
                sum += ious.row(d)[g];
                matched += 1;
            }
        }
    }
    (
        if matched > 0 {
            sum / matched as f64
        } else {
            0.0
        },
        matched,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{AnnotatedImage, BoundingBox, Category, Detection, Rle};

    fn square(x0: usize, side: usize) -> Rle {
        let mut pixels = vec![0u8; 20 * 20];
        for y in 0..side {
            pixels[y * 20 + x0..y * 20 + x0 + side].fill(1);
        }
        Rle::from_bitmap(&pixels, 20, 20)
    }

    #[test]
    fn matched_instances_average_their_mask_iou() {
        let b = BoundingBox {
            x1: 0.0,
            y1: 0.0,
            x2: 10.0,
            y2: 10.0,
        };
        let object = |mask: Rle| Object {
            bbox: b,
            class: 0,
            area: mask.area() as f32,
            difficult: false,
            crowd: false,
            mask: Some(mask),
        };
        let gt = DetectionSet {
            categories: vec![Category {
                id: 1,
                name: "s".into(),
            }],
            images: vec![AnnotatedImage {
                id: 1,
                path: "a.png".into(),
                width: 20,
                height: 20,
                objects: vec![object(square(0, 10)), object(square(10, 10))],
            }],
        };
        let det = |mask: Rle, score| MaskDetection {
            detection: Detection {
                image_id: 1,
                class: 0,
                bbox: b,
                score,
            },
            mask,
            area: 100.0,
        };
        // The first object found exactly (IoU 1), the second by an 8×8 square inside it
        // (IoU 64/100), a third detection matching nothing (IoU 0 with both).
        let dets = [
            det(square(0, 10), 0.9),
            det(square(10, 8), 0.8),
            det(Rle::empty(20, 20), 0.7),
        ];
        let (mean, matched) = mean_matched_mask_iou(&gt, &dets);
        assert_eq!(matched, 2);
        assert!((mean - (1.0 + 0.64) / 2.0).abs() < 1e-12, "{mean}");
    }
}
