//! The box ops on plain boxes in memory, for code off the tensor path.

use crate::data::BoundingBox;

/// Area of a box (zero when degenerate).
pub fn area(b: &BoundingBox) -> f32 {
    b.width() * b.height()
}

/// Area of the overlap of two boxes.
pub fn intersection(a: &BoundingBox, b: &BoundingBox) -> f32 {
    let w = (a.x2.min(b.x2) - a.x1.max(b.x1)).max(0.0);
    let h = (a.y2.min(b.y2) - a.y1.max(b.y1)).max(0.0);
    w * h
}

/// Intersection over union of two boxes; 0 when both are empty.
pub fn iou(a: &BoundingBox, b: &BoundingBox) -> f32 {
    let inter = intersection(a, b);
    let union = area(a) + area(b) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// A box from two corners in any order (a regressor's raw output may swap them).
pub fn ordered(b: &BoundingBox) -> BoundingBox {
    BoundingBox {
        x1: b.x1.min(b.x2),
        y1: b.y1.min(b.y2),
        x2: b.x1.max(b.x2),
        y2: b.y1.max(b.y2),
    }
}

/// A box clipped to a `width`×`height` image.
pub fn clip(b: &BoundingBox, width: f32, height: f32) -> BoundingBox {
    BoundingBox {
        x1: b.x1.clamp(0.0, width),
        y1: b.y1.clamp(0.0, height),
        x2: b.x2.clamp(0.0, width),
        y2: b.y2.clamp(0.0, height),
    }
}

/// Greedy non-maximum suppression: indices of the kept boxes, best score first. Boxes are
/// visited by descending score (ties keep input order) and a box is dropped when its IoU with a
/// kept one exceeds `iou_threshold` — burn-vision's and torchvision's rule.
pub fn nms(boxes: &[BoundingBox], scores: &[f32], iou_threshold: f32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len().min(scores.len())).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut suppressed = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for (rank, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        for &j in &order[rank + 1..] {
            if !suppressed[j] && iou(&boxes[i], &boxes[j]) > iou_threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// NMS within each class: boxes of different classes never suppress each other. Indices of the
/// kept boxes, best score first.
pub fn batched_nms(
    boxes: &[BoundingBox],
    scores: &[f32],
    classes: &[usize],
    iou_threshold: f32,
) -> Vec<usize> {
    let mut keep = Vec::new();
    let mut by_class: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, &c) in classes.iter().enumerate().take(boxes.len()) {
        by_class.entry(c).or_default().push(i);
    }
    for members in by_class.values() {
        let class_boxes: Vec<BoundingBox> = members.iter().map(|&i| boxes[i]).collect();
        let class_scores: Vec<f32> = members.iter().map(|&i| scores[i]).collect();
        keep.extend(
            nms(&class_boxes, &class_scores, iou_threshold)
                .into_iter()
                .map(|k| members[k]),
        );
    }
    keep.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x1: f32, y1: f32, x2: f32, y2: f32) -> BoundingBox {
        BoundingBox { x1, y1, x2, y2 }
    }

    #[test]
    fn iou_of_hand_computed_pairs() {
        assert_eq!(
            iou(&b(0.0, 0.0, 2.0, 2.0), &b(1.0, 0.0, 3.0, 2.0)),
            2.0 / 6.0
        );
        assert_eq!(iou(&b(0.0, 0.0, 1.0, 1.0), &b(5.0, 5.0, 6.0, 6.0)), 0.0);
        assert_eq!(iou(&b(0.0, 0.0, 0.0, 0.0), &b(0.0, 0.0, 0.0, 0.0)), 0.0);
    }

    #[test]
    fn nms_keeps_the_best_of_each_overlapping_group() {
        // 0 and 1 overlap at IoU 0.81 (9×10 inside 10×10 → 90/100... see below), 2 is apart.
        let boxes = [
            b(0.0, 0.0, 10.0, 10.0),
            b(1.0, 0.0, 10.0, 10.0), // IoU with 0 = 90 / 100 = 0.9
            b(20.0, 20.0, 30.0, 30.0),
            b(5.0, 0.0, 15.0, 10.0), // IoU with 0 = 50 / 150 = 1/3
        ];
        let scores = [0.8, 0.9, 0.5, 0.7];
        assert_eq!(nms(&boxes, &scores, 0.5), vec![1, 3, 2]);
        // 3 with 1: overlap 5..10 = 50, union 90 + 100 - 50 = 140 → 0.357 < 0.5: kept.
        assert_eq!(nms(&boxes, &scores, 0.3), vec![1, 2]);
    }

    #[test]
    fn batched_nms_never_suppresses_across_classes() {
        let boxes = [
            b(0.0, 0.0, 10.0, 10.0),
            b(0.0, 0.0, 10.0, 10.0),
            b(0.0, 0.0, 10.0, 9.0),
        ];
        let scores = [0.9, 0.8, 0.7];
        assert_eq!(batched_nms(&boxes, &scores, &[0, 1, 0], 0.5), vec![0, 1]);
    }
}
