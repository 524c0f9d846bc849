//! Matching detections to ground truths in one image and one class: the IoU the evaluators use
//! and the two matching rules (COCO's greedy matching and Pascal VOC's).

use crate::data::BoundingBox;

/// Intersection over union of a detection and a ground-truth box, computed the way pycocotools
/// computes it for boxes (in `f64`, with `width = x2 - x1` and no `+ 1`).
///
/// For a crowd ground truth (`crowd`), the union is the detection's area alone, so a detection
/// lying inside a crowd region scores 1 however large the region is.
pub fn coco_iou(det: &BoundingBox, gt: &BoundingBox, crowd: bool) -> f64 {
    let (dx1, dy1, dx2, dy2) = (
        f64::from(det.x1),
        f64::from(det.y1),
        f64::from(det.x2),
        f64::from(det.y2),
    );
    let (gx1, gy1, gx2, gy2) = (
        f64::from(gt.x1),
        f64::from(gt.y1),
        f64::from(gt.x2),
        f64::from(gt.y2),
    );
    let w = dx2.min(gx2) - dx1.max(gx1);
    if w <= 0.0 {
        return 0.0;
    }
    let h = dy2.min(gy2) - dy1.max(gy1);
    if h <= 0.0 {
        return 0.0;
    }
    let det_area = (dx2 - dx1) * (dy2 - dy1);
    let gt_area = (gx2 - gx1) * (gy2 - gy1);
    let inter = w * h;
    let union = if crowd {
        det_area
    } else {
        det_area + gt_area - inter
    };
    inter / union
}

/// IoUs of detections (rows) against ground truths (columns).
#[derive(Clone, Debug, PartialEq)]
pub struct IouMatrix {
    /// Number of detections.
    pub dets: usize,
    /// Number of ground truths.
    pub gts: usize,
    /// Row-major `dets × gts` values.
    pub values: Vec<f64>,
}

impl IouMatrix {
    /// The matrix of `dets` against `gts` (each with its crowd flag), from [`coco_iou`].
    pub fn new(dets: &[BoundingBox], gts: &[(BoundingBox, bool)]) -> Self {
        let mut values = Vec::with_capacity(dets.len() * gts.len());
        for d in dets {
            values.extend(gts.iter().map(|(g, crowd)| coco_iou(d, g, *crowd)));
        }
        Self {
            dets: dets.len(),
            gts: gts.len(),
            values,
        }
    }

    /// A matrix from row-major values.
    ///
    /// # Panics
    /// If `values.len() != dets * gts`.
    pub fn from_values(dets: usize, gts: usize, values: Vec<f64>) -> Self {
        assert_eq!(values.len(), dets * gts, "IoU matrix is not dets × gts");
        Self { dets, gts, values }
    }

    /// The IoUs of detection `d` with every ground truth.
    pub fn row(&self, d: usize) -> &[f64] {
        &self.values[d * self.gts..(d + 1) * self.gts]
    }
}

/// What the matcher needs to know about one ground truth.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GtFlags {
    /// A match to it is neither a true nor a false positive (COCO: crowd, VOC `difficult`, or
    /// outside the evaluated area range; VOC: `difficult` or crowd).
    pub ignore: bool,
    /// A crowd region: under [`MatchRule::Coco`] it may absorb any number of detections.
    pub crowd: bool,
}

/// How detections are assigned to ground truths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchRule {
    /// pycocotools' `COCOeval.evaluateImg`: each detection (in descending score order) takes
    /// the ground truth with the highest IoU ≥ the threshold among those still free (crowd
    /// regions are never used up), looking at non-ignored ground truths first and taking an
    /// ignored one only when no non-ignored one qualifies. Among equal IoUs the later ground
    /// truth wins, as in pycocotools. Matches to ignored ground truths use them up too.
    Coco,
    /// The Pascal VOC devkit: each detection looks only at the ground truth it overlaps most
    /// (the first one on ties); if that IoU is strictly above the threshold and the ground truth
    /// is ignored (`difficult`), the detection matches it without using it up; if it is free,
    /// the detection takes it; if it is already taken, the detection is a duplicate (unmatched).
    Voc,
}

/// Matches detections to ground truths in one image and class.
///
/// `ious` holds the detections ([`IouMatrix::new`]) already in
/// descending score order (ties in a stable order) and the ground truths in their original
/// order. Returns, for each detection, the index (into `gts`) of the ground truth it matched.
/// Whether a match counts is the caller's business: a match to an ignored ground truth is
/// neither a true nor a false positive, a detection without a match is a false positive.
///
/// # Panics
/// If `gts` does not have one entry per column of `ious`.
pub fn match_detections(
    ious: &IouMatrix,
    gts: &[GtFlags],
    threshold: f64,
    rule: MatchRule,
) -> Vec<Option<usize>> {
    let n_gt = gts.len();
    assert_eq!(ious.gts, n_gt, "one GtFlags per IoU matrix column");
    let n_det = ious.dets;
    let mut taken = vec![false; n_gt];
    let mut matches = vec![None; n_det];
    match rule {
        MatchRule::Coco => {
            // Non-ignored ground truths first, each group in its original order.
            let order: Vec<usize> = (0..n_gt)
                .filter(|&g| !gts[g].ignore)
                .chain((0..n_gt).filter(|&g| gts[g].ignore))
                .collect();
            let floor = threshold.min(1.0 - 1e-10);
            for (d, slot) in matches.iter_mut().enumerate() {
                let row = ious.row(d);
                let mut best = floor;
                let mut m: Option<usize> = None;
                for &g in &order {
                    if taken[g] && !gts[g].crowd {
                        continue;
                    }
                    if let Some(mg) = m
                        && !gts[mg].ignore
                        && gts[g].ignore
                    {
                        break;
                    }
                    if row[g] < best {
                        continue;
                    }
                    best = row[g];
                    m = Some(g);
                }
                if let Some(g) = m {
                    taken[g] = true;
                    *slot = Some(g);
                }
            }
        }
        MatchRule::Voc => {
            for (d, slot) in matches.iter_mut().enumerate() {
                let row = ious.row(d);
                let mut best = f64::NEG_INFINITY;
                let mut arg = 0;
                for (g, &v) in row.iter().enumerate() {
                    if v > best {
                        best = v;
                        arg = g;
                    }
                }
                if best > threshold {
                    if gts[arg].ignore {
                        *slot = Some(arg);
                    } else if !taken[arg] {
                        taken[arg] = true;
                        *slot = Some(arg);
                    }
                }
            }
        }
    }
    matches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bb(x1: f32, y1: f32, x2: f32, y2: f32) -> BoundingBox {
        BoundingBox { x1, y1, x2, y2 }
    }

    #[test]
    fn iou_plain_and_crowd() {
        // 10×10 boxes offset by 5 in x: intersection 50, union 150.
        let a = bb(0.0, 0.0, 10.0, 10.0);
        let b = bb(5.0, 0.0, 15.0, 10.0);
        assert!((coco_iou(&a, &b, false) - 1.0 / 3.0).abs() < 1e-12);
        // Crowd: union is the detection's area (100) → 0.5.
        assert!((coco_iou(&a, &b, true) - 0.5).abs() < 1e-12);
        // A small detection inside a large crowd region: IoU 1.
        assert_eq!(coco_iou(&bb(1.0, 1.0, 2.0, 2.0), &a, true), 1.0);
        // Touching boxes do not overlap.
        assert_eq!(coco_iou(&a, &bb(10.0, 0.0, 20.0, 10.0), false), 0.0);
    }

    #[test]
    fn coco_rule_takes_next_best_free_gt_and_voc_rule_marks_duplicates() {
        // Two detections both overlapping gt 0 best (0.9, 0.8) and gt 1 second (0.6, 0.7).
        let ious = IouMatrix::from_values(2, 2, vec![0.9, 0.6, 0.8, 0.7]);
        let gts = [GtFlags::default(); 2];
        // COCO: det 0 → gt 0; det 1 falls back to the free gt 1.
        assert_eq!(
            match_detections(&ious, &gts, 0.5, MatchRule::Coco),
            vec![Some(0), Some(1)]
        );
        // VOC: det 1's best gt (0) is taken → duplicate.
        assert_eq!(
            match_detections(&ious, &gts, 0.5, MatchRule::Voc),
            vec![Some(0), None]
        );
    }

    #[test]
    fn coco_rule_prefers_regular_gts_and_lets_crowds_absorb() {
        // gt 0 is ignored with the higher IoU, gt 1 regular with IoU ≥ threshold: regular wins.
        let gts = [
            GtFlags {
                ignore: true,
                crowd: true,
            },
            GtFlags::default(),
        ];
        let ious = IouMatrix::from_values(3, 2, vec![0.95, 0.55, 0.9, 0.3, 0.8, 0.2]);
        let m = match_detections(&ious, &gts, 0.5, MatchRule::Coco);
        // det 0 → regular gt 1; det 1 and det 2 → crowd gt 0 (never used up).
        assert_eq!(m, vec![Some(1), Some(0), Some(0)]);
        // Ties: the later ground truth wins.
        let tie = match_detections(
            &IouMatrix::from_values(1, 2, vec![0.6, 0.6]),
            &[GtFlags::default(); 2],
            0.5,
            MatchRule::Coco,
        );
        assert_eq!(tie, vec![Some(1)]);
        // Thresholds are inclusive for COCO, strict for VOC.
        let one = [GtFlags::default()];
        let half = IouMatrix::from_values(1, 1, vec![0.5]);
        assert_eq!(
            match_detections(&half, &one, 0.5, MatchRule::Coco),
            vec![Some(0)]
        );
        assert_eq!(
            match_detections(&half, &one, 0.5, MatchRule::Voc),
            vec![None]
        );
    }

    #[test]
    fn voc_rule_difficult_is_never_used_up() {
        let gts = [GtFlags {
            ignore: true,
            crowd: false,
        }];
        let m = match_detections(
            &IouMatrix::from_values(2, 1, vec![0.7, 0.8]),
            &gts,
            0.5,
            MatchRule::Voc,
        );
        assert_eq!(m, vec![Some(0), Some(0)]);
        // No ground truth: every detection is unmatched.
        let none = IouMatrix::new(&[bb(0.0, 0.0, 1.0, 1.0)], &[]);
        assert_eq!(
            match_detections(&none, &[], 0.5, MatchRule::Coco),
            vec![None]
        );
    }
}
