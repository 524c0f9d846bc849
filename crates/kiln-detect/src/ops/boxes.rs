//! Areas, IoU and GIoU matrices, and clipping.

use burn::tensor::Tensor;

/// The four coordinates of `[N, 4]` boxes as `[N]` tensors.
fn corners(boxes: Tensor<2>) -> [Tensor<1>; 4] {
    let [n, _] = boxes.dims();
    let cols = boxes.split(1, 1);
    let mut it = cols.into_iter().map(|c| c.reshape([n]));
    [(); 4].map(|_| it.next().expect("four columns"))
}

/// Areas `[N]` of `[N, 4]` boxes (zero for degenerate ones).
pub fn box_area(boxes: Tensor<2>) -> Tensor<1> {
    let [x1, y1, x2, y2] = corners(boxes);
    (x2 - x1).clamp_min(0.0) * (y2 - y1).clamp_min(0.0)
}

/// Intersections and unions `[N, M]` of every pair of `a` `[N, 4]` and `b` `[M, 4]`.
fn intersection_union(a: Tensor<2>, b: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
    let (n, m) = (a.dims()[0], b.dims()[0]);
    let area_a = box_area(a.clone()).reshape([n, 1]);
    let area_b = box_area(b.clone()).reshape([1, m]);
    let a3 = a.reshape([n, 1, 4]);
    let b3 = b.reshape([1, m, 4]);
    let lo = a3.clone().max_pair(b3.clone().expand([n, m, 4]));
    let hi = a3.min_pair(b3.expand([n, m, 4]));
    let wh = (hi.slice([0..n, 0..m, 2..4]) - lo.slice([0..n, 0..m, 0..2])).clamp_min(0.0);
    let inter =
        (wh.clone().slice([0..n, 0..m, 0..1]) * wh.slice([0..n, 0..m, 1..2])).reshape([n, m]);
    let union = area_a + area_b - inter.clone();
    (inter, union)
}

/// IoU `[N, M]` of every box of `a` `[N, 4]` with every box of `b` `[M, 4]` (torchvision's
/// `box_iou`); pairs with a zero union get 0.
pub fn box_iou(a: Tensor<2>, b: Tensor<2>) -> Tensor<2> {
    let (inter, union) = intersection_union(a, b);
    inter / union.clamp_min(f32::MIN_POSITIVE)
}

/// Generalized IoU `[N, M]` (Rezatofighi et al. 2019): IoU minus the share of the smallest
/// enclosing box that the union leaves empty; in [-1, 1], and 1 only for equal boxes.
pub fn generalized_box_iou(a: Tensor<2>, b: Tensor<2>) -> Tensor<2> {
    let (n, m) = (a.dims()[0], b.dims()[0]);
    let (inter, union) = intersection_union(a.clone(), b.clone());
    let iou = inter / union.clone().clamp_min(f32::MIN_POSITIVE);
    let a3 = a.reshape([n, 1, 4]).expand([n, m, 4]);
    let b3 = b.reshape([1, m, 4]).expand([n, m, 4]);
    let lo = a3.clone().min_pair(b3.clone()).slice([0..n, 0..m, 0..2]);
    let hi = a3.max_pair(b3).slice([0..n, 0..m, 2..4]);
    let wh = (hi - lo).clamp_min(0.0);
    let hull =
        (wh.clone().slice([0..n, 0..m, 0..1]) * wh.slice([0..n, 0..m, 1..2])).reshape([n, m]);
    iou - (hull.clone() - union) / hull.clamp_min(f32::MIN_POSITIVE)
}

/// Generalized IoU `[N]` of `a[i]` with `b[i]` (the pairs a GIoU loss compares).
pub fn paired_generalized_iou(a: Tensor<2>, b: Tensor<2>) -> Tensor<1> {
    let [ax1, ay1, ax2, ay2] = corners(a);
    let [bx1, by1, bx2, by2] = corners(b);
    let area = |x1: &Tensor<1>, y1: &Tensor<1>, x2: &Tensor<1>, y2: &Tensor<1>| {
        (x2.clone() - x1.clone()).clamp_min(0.0) * (y2.clone() - y1.clone()).clamp_min(0.0)
    };
    let area_a = area(&ax1, &ay1, &ax2, &ay2);
    let area_b = area(&bx1, &by1, &bx2, &by2);
    let inter = area(
        &ax1.clone().max_pair(bx1.clone()),
        &ay1.clone().max_pair(by1.clone()),
        &ax2.clone().min_pair(bx2.clone()),
        &ay2.clone().min_pair(by2.clone()),
    );
    let hull = area(
        &ax1.min_pair(bx1),
        &ay1.min_pair(by1),
        &ax2.max_pair(bx2),
        &ay2.max_pair(by2),
    );
    let union = area_a + area_b - inter.clone();
    inter / union.clone().clamp_min(f32::MIN_POSITIVE)
        - (hull.clone() - union) / hull.clamp_min(f32::MIN_POSITIVE)
}

/// Complete IoU `[N]` of `a[i]` with `b[i]` (Zheng et al. 2020, the box loss of YOLOv4/v5):
/// IoU, minus the squared centre distance over the squared diagonal of the enclosing box, minus
/// `α·v` where `v` measures how the aspect ratios differ and `α = v / (1 − IoU + v)` is held
/// constant (no gradient), as the paper and YOLOv5 do. In [-1.5, 1], and 1 only for equal boxes.
pub fn paired_complete_iou(a: Tensor<2>, b: Tensor<2>) -> Tensor<1> {
    let eps = 1e-7;
    let [ax1, ay1, ax2, ay2] = corners(a);
    let [bx1, by1, bx2, by2] = corners(b);
    let (aw, ah) = (ax2.clone() - ax1.clone(), ay2.clone() - ay1.clone());
    let (bw, bh) = (bx2.clone() - bx1.clone(), by2.clone() - by1.clone());
    let inter = (ax2.clone().min_pair(bx2.clone()) - ax1.clone().max_pair(bx1.clone()))
        .clamp_min(0.0)
        * (ay2.clone().min_pair(by2.clone()) - ay1.clone().max_pair(by1.clone())).clamp_min(0.0);
    let union = aw.clone().clamp_min(0.0) * ah.clone().clamp_min(0.0)
        + bw.clone().clamp_min(0.0) * bh.clone().clamp_min(0.0)
        - inter.clone()
        + eps;
    let iou = inter / union;
    let hull_w = ax2.clone().max_pair(bx2.clone()) - ax1.clone().min_pair(bx1.clone());
    let hull_h = ay2.clone().max_pair(by2.clone()) - ay1.clone().min_pair(by1.clone());
    let diagonal = hull_w.powi_scalar(2) + hull_h.powi_scalar(2) + eps;
    let centre_dx = (bx1 + bx2) - (ax1 + ax2);
    let centre_dy = (by1 + by2) - (ay1 + ay2);
    let distance = (centre_dx.powi_scalar(2) + centre_dy.powi_scalar(2)).div_scalar(4.0);
    let angle = |w: Tensor<1>, h: Tensor<1>| (w / (h + eps)).atan();
    let v = (angle(bw, bh) - angle(aw, ah))
        .powi_scalar(2)
        .mul_scalar(4.0 / (std::f32::consts::PI * std::f32::consts::PI));
    let alpha = (v.clone() / (v.clone() - iou.clone() + (1.0 + eps))).detach();
    iou - distance / diagonal - alpha * v
}

/// Boxes `[N, 4]` clipped to an image of `height`×`width` (torchvision's `clip_boxes_to_image`).
pub fn clip_boxes(boxes: Tensor<2>, height: f32, width: f32) -> Tensor<2> {
    let [x1, y1, x2, y2] = corners(boxes);
    let n = x1.dims()[0];
    Tensor::stack::<2>(
        vec![
            x1.clamp(0.0, width),
            y1.clamp(0.0, height),
            x2.clamp(0.0, width),
            y2.clamp(0.0, height),
        ],
        1,
    )
    .reshape([n, 4])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData, Tolerance};

    fn t(rows: &[[f32; 4]]) -> Tensor<2> {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_data(TensorData::new(flat, [rows.len(), 4]), &Device::flex())
    }

    fn close(actual: Tensor<2>, expected: &[f32]) {
        let shape = actual.dims();
        actual.into_data().assert_approx_eq::<f32>(
            &TensorData::new(expected.to_vec(), shape),
            Tolerance::absolute(1e-6),
        );
    }

    #[test]
    fn iou_matrix_of_hand_computed_pairs() {
        // a0 = 2×2 at the origin; a1 = 2×2 at (1, 1).
        // b0 = a0 (IoU 1); b1 = 2×1 at (1, 0): overlaps a0 in 1×1 → 1 / (4 + 2 - 1) = 0.2,
        // a1 in (1,1)-(3,1)? no: b1 spans y 0..1 and a1 y 1..3, so 0; b2 far away: 0.
        let a = t(&[[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 3.0]]);
        let b = t(&[
            [0.0, 0.0, 2.0, 2.0],
            [1.0, 0.0, 3.0, 1.0],
            [10.0, 10.0, 11.0, 11.0],
        ]);
        // a1 with b0: overlap (1,1)-(2,2) = 1 → 1 / 7.
        close(box_iou(a, b), &[1.0, 0.2, 0.0, 1.0 / 7.0, 0.0, 0.0]);
    }

    #[test]
    fn generalized_iou_subtracts_the_empty_part_of_the_hull() {
        // Disjoint unit boxes one unit apart: IoU 0, hull 3×1 = 3, union 2 → GIoU = -1/3.
        // Equal boxes: 1. a0 with the 2×2 box at the origin: IoU 1/4, hull 4 = union → 1/4.
        let a = t(&[[0.0, 0.0, 1.0, 1.0]]);
        let b = t(&[
            [2.0, 0.0, 3.0, 1.0],
            [0.0, 0.0, 1.0, 1.0],
            [0.0, 0.0, 2.0, 2.0],
        ]);
        close(
            generalized_box_iou(a.clone(), b.clone()),
            &[-1.0 / 3.0, 1.0, 0.25],
        );
        let paired = paired_generalized_iou(a.repeat_dim(0, 3), b);
        close(paired.reshape([1, 3]), &[-1.0 / 3.0, 1.0, 0.25]);
    }

    #[test]
    fn complete_iou_adds_centre_distance_and_aspect_penalties() {
        // Equal boxes: 1. Unit boxes one unit apart side by side: IoU 0, centre distance² 1,
        // hull 2×1 → diagonal² 5, same aspect → CIoU = −1/5.
        // A 2×2 box around a 2×1 one with the same centre: IoU 1/2, no distance,
        // v = 4/π² (atan 2 − atan 1)², α = v / (1/2 + v).
        let a = t(&[
            [0.0, 0.0, 1.0, 1.0],
            [0.0, 0.0, 1.0, 1.0],
            [0.0, 0.0, 2.0, 2.0],
        ]);
        let b = t(&[
            [0.0, 0.0, 1.0, 1.0],
            [1.0, 0.0, 2.0, 1.0],
            [0.0, 0.5, 2.0, 1.5],
        ]);
        let v = 4.0 / (std::f32::consts::PI.powi(2)) * (2.0f32.atan() - 1.0f32.atan()).powi(2);
        let alpha = v / (0.5 + v);
        close(
            paired_complete_iou(a, b).reshape([1, 3]),
            &[1.0, -0.2, 0.5 - alpha * v],
        );
    }

    #[test]
    fn areas_and_clipping() {
        let boxes = t(&[[-5.0, 2.0, 12.0, 30.0], [1.0, 1.0, 0.0, 4.0]]);
        close(box_area(boxes.clone()).reshape([1, 2]), &[17.0 * 28.0, 0.0]);
        close(
            clip_boxes(boxes, 20.0, 10.0),
            &[0.0, 2.0, 10.0, 20.0, 1.0, 1.0, 0.0, 4.0],
        );
    }
}
