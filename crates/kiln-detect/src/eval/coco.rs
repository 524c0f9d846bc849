//! The COCO box evaluator: the same numbers as pycocotools' `COCOeval` with `iouType='bbox'`.
//!
//! The steps, each as `COCOeval` takes them:
//!
//! 1. Per image and category, detections are sorted by descending score (stable, so ties keep
//!    their order in the input) and cut to the 100 best; ground truths keep their order, with
//!    the ignored ones moved last.
//! 2. A ground truth is ignored when it is a crowd region (`iscrowd`), when it is outside the
//!    area range being evaluated (by [`Object::area`], COCO's `area` field), and — kiln's
//!    addition, as pycocotools has no such flag — when it is VOC `difficult`. A difficult object
//!    is ignored like a crowd region but matched with ordinary IoU and used up by one match.
//! 3. At each IoU threshold `0.50, 0.55, …, 0.95` detections are matched greedily
//!    ([`MatchRule::Coco`]); IoU against a crowd region uses the detection's area as the union.
//!    A detection matched to an ignored ground truth is ignored; an unmatched detection whose
//!    box area is outside the area range is ignored too.
//! 4. Per category, area range and detection limit (1, 10, 100 per image), the detections of all
//!    images (in ascending image id order, each image's in its sorted order) are merged by a
//!    stable sort on descending score; precision is made non-increasing from the right and
//!    sampled at 101 recall points ([`super::ApMethod::Coco101`]); recall is the final recall.
//! 5. A category without non-ignored ground truth in a setting gets -1 there, and every summary
//!    number is the mean over the entries that are not -1 (or -1 if there is none).
//!
//! Every image of the ground truth counts, with or without detections; every category of the
//! ground truth counts, with or without objects. Detections whose image is not in the ground
//! truth or whose class is not one of its categories are not evaluated (the results reader
//! rejects them). Scores are `f32` ([`Detection::score`]), so scores that differ only beyond
//! `f32` precision tie here.

use std::collections::{BTreeMap, HashSet};

use rayon::prelude::*;
use serde::Serialize;

use super::ap::{Outcome, PrCurve, recall_thresholds};
use super::matcher::{GtFlags, IouMatrix, MatchRule, match_detections};
use crate::data::{Detection, DetectionSet, MaskDetection, Object};
use crate::{DetectError, Result};

/// The detection limits per image: AR@1, AR@10 and everything else at 100.
pub const MAX_DETS: [usize; 3] = [1, 10, 100];

/// Number of IoU thresholds.
const T: usize = 10;
/// Number of recall thresholds.
const R: usize = 101;
/// Number of area ranges.
const A: usize = 4;
/// Number of detection limits.
const M: usize = MAX_DETS.len();

/// COCO's IoU thresholds `0.50, 0.55, …, 0.95`, bit for bit as `np.linspace(.5, .95, 10)`
/// computes them (`0.5 + i * (0.45 / 9)`, the last one exactly 0.95).
pub fn iou_thresholds() -> [f64; T] {
    let step = (0.95f64 - 0.5) / 9.0;
    let mut t = [0.0; T];
    for (i, v) in t.iter_mut().enumerate() {
        *v = i as f64 * step + 0.5;
    }
    t[T - 1] = 0.95;
    t
}

/// The index of IoU 0.50 in [`iou_thresholds`].
pub const IOU_50: usize = 0;
/// The index of IoU 0.75 in [`iou_thresholds`].
pub const IOU_75: usize = 5;

/// COCO's object size ranges, by area in square pixels (both ends inclusive, as in `COCOeval`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AreaRange {
    /// `[0, 1e10]`.
    All,
    /// `[0, 32²]`.
    Small,
    /// `[32², 96²]`.
    Medium,
    /// `[96², 1e10]`.
    Large,
}

impl AreaRange {
    /// The four ranges in `COCOeval`'s order.
    pub const EVERY: [AreaRange; A] = [Self::All, Self::Small, Self::Medium, Self::Large];

    /// Lower and upper bound (inclusive).
    pub fn bounds(self) -> (f64, f64) {
        match self {
            Self::All => (0.0, 1e10),
            Self::Small => (0.0, 32.0 * 32.0),
            Self::Medium => (32.0 * 32.0, 96.0 * 96.0),
            Self::Large => (96.0 * 96.0, 1e10),
        }
    }

    /// Whether `area` is inside the range.
    pub fn contains(self, area: f64) -> bool {
        let (lo, hi) = self.bounds();
        !(area < lo || area > hi)
    }

    /// The label pycocotools prints (`all`, `small`, `medium`, `large`).
    pub fn label(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Small => "small",
            Self::Medium => "medium",
            Self::Large => "large",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The 12 numbers pycocotools' `summarize()` prints, in its order (`COCOeval.stats`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct CocoStats {
    /// AP at IoU 0.50:0.95, all areas, 100 detections.
    pub ap: f64,
    /// AP at IoU 0.50.
    pub ap50: f64,
    /// AP at IoU 0.75.
    pub ap75: f64,
    /// AP on small objects.
    pub ap_small: f64,
    /// AP on medium objects.
    pub ap_medium: f64,
    /// AP on large objects.
    pub ap_large: f64,
    /// AR with 1 detection per image.
    pub ar1: f64,
    /// AR with 10 detections per image.
    pub ar10: f64,
    /// AR with 100 detections per image.
    pub ar100: f64,
    /// AR on small objects (100 detections).
    pub ar_small: f64,
    /// AR on medium objects.
    pub ar_medium: f64,
    /// AR on large objects.
    pub ar_large: f64,
}

impl CocoStats {
    /// The field names, in [`CocoStats::to_array`] order.
    pub const NAMES: [&'static str; 12] = [
        "ap",
        "ap50",
        "ap75",
        "ap_small",
        "ap_medium",
        "ap_large",
        "ar1",
        "ar10",
        "ar100",
        "ar_small",
        "ar_medium",
        "ar_large",
    ];

    /// The numbers in pycocotools' `stats` order.
    pub fn to_array(&self) -> [f64; 12] {
        [
            self.ap,
            self.ap50,
            self.ap75,
            self.ap_small,
            self.ap_medium,
            self.ap_large,
            self.ar1,
            self.ar10,
            self.ar100,
            self.ar_small,
            self.ar_medium,
            self.ar_large,
        ]
    }
}

/// One category's COCO numbers (all areas, 100 detections per image); -1 where the category
/// has no non-ignored ground truth.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CocoClassMetrics {
    /// Index into [`DetectionSet::categories`].
    pub class: usize,
    /// The COCO category id.
    pub category_id: u64,
    /// The category name.
    pub name: String,
    /// Ground truths that count (neither crowd nor difficult).
    pub num_gt: usize,
    /// Detections of this class on the evaluated images (before the 100-per-image cut).
    pub num_detections: usize,
    /// AP at IoU 0.50:0.95.
    pub ap: f64,
    /// AP at IoU 0.50.
    pub ap50: f64,
    /// AP at IoU 0.75.
    pub ap75: f64,
    /// AR at 100 detections (IoU 0.50:0.95).
    pub ar100: f64,
    /// Interpolated precision at the 101 recall thresholds (`recall_thresholds`), IoU 0.50;
    /// all -1 without ground truth.
    #[serde(skip)]
    pub precision_50: Vec<f64>,
    /// The same at IoU 0.75.
    #[serde(skip)]
    pub precision_75: Vec<f64>,
}

/// The result of [`evaluate_coco`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CocoEvaluation {
    /// The 12 summary numbers.
    pub stats: CocoStats,
    /// Per-category numbers, in category order.
    pub classes: Vec<CocoClassMetrics>,
    /// `COCOeval.eval['precision']` as `[class][area][max_dets][iou][recall]`, -1 where absent.
    #[serde(skip)]
    precision: Vec<f64>,
    /// `COCOeval.eval['recall']` as `[class][area][max_dets][iou]`, -1 where absent.
    #[serde(skip)]
    recall: Vec<f64>,
}

fn max_dets_index(max_dets: usize) -> usize {
    MAX_DETS
        .iter()
        .position(|&m| m == max_dets)
        .unwrap_or_else(|| panic!("max_dets must be one of {MAX_DETS:?}, not {max_dets}"))
}

impl CocoEvaluation {
    /// The interpolated precision at the 101 recall thresholds for one class, area range,
    /// detection limit (1, 10 or 100) and IoU threshold index ([`iou_thresholds`]); `None`
    /// where the class has no non-ignored ground truth in that range.
    ///
    /// # Panics
    /// If `max_dets` is not in [`MAX_DETS`] or an index is out of range.
    pub fn precision(
        &self,
        class: usize,
        area: AreaRange,
        max_dets: usize,
        iou: usize,
    ) -> Option<&[f64]> {
        assert!(class < self.classes.len() && iou < T, "index out of range");
        let at = (((class * A + area.index()) * M + max_dets_index(max_dets)) * T + iou) * R;
        let p = &self.precision[at..at + R];
        (p[0] > -1.0).then_some(p)
    }

    /// The recall reached by one class in a setting (see [`CocoEvaluation::precision`]); `None`
    /// where the class has no non-ignored ground truth in that range.
    ///
    /// # Panics
    /// As [`CocoEvaluation::precision`].
    pub fn recall(
        &self,
        class: usize,
        area: AreaRange,
        max_dets: usize,
        iou: usize,
    ) -> Option<f64> {
        assert!(class < self.classes.len() && iou < T, "index out of range");
        let r = self.recall[((class * A + area.index()) * M + max_dets_index(max_dets)) * T + iou];
        (r > -1.0).then_some(r)
    }
}

/// What the COCO evaluator matches: boxes (pycocotools' `iouType='bbox'`, [`Detection`]) or
/// instance masks (`iouType='segm'`, [`MaskDetection`]).
pub trait Evaluable: Sync {
    /// The box, class, image and score.
    fn detection(&self) -> &Detection;
    /// The area COCO's area ranges use for an unmatched detection.
    fn area(&self) -> f64;
    /// IoUs of detections (rows) against ground truths (columns, with their crowd flags).
    fn ious(dets: &[&Self], gts: &[&Object]) -> IouMatrix;
}

impl Evaluable for Detection {
    fn detection(&self) -> &Detection {
        self
    }

    fn area(&self) -> f64 {
        (f64::from(self.bbox.x2) - f64::from(self.bbox.x1))
            * (f64::from(self.bbox.y2) - f64::from(self.bbox.y1))
    }

    fn ious(dets: &[&Self], gts: &[&Object]) -> IouMatrix {
        let det_boxes: Vec<_> = dets.iter().map(|d| d.bbox).collect();
        let gt_boxes: Vec<_> = gts.iter().map(|g| (g.bbox, g.crowd)).collect();
        IouMatrix::new(&det_boxes, &gt_boxes)
    }
}

impl Evaluable for MaskDetection {
    fn detection(&self) -> &Detection {
        &self.detection
    }

    fn area(&self) -> f64 {
        self.area
    }

    /// Mask IoU ([`Rle::iou`](crate::data::Rle::iou)); 0 against a ground truth without a
    /// mask ([`evaluate_coco_masks`] refuses those).
    fn ious(dets: &[&Self], gts: &[&Object]) -> IouMatrix {
        let values = dets
            .iter()
            .flat_map(|d| {
                gts.iter()
                    .map(|g| g.mask.as_ref().map_or(0.0, |m| d.mask.iou(m, g.crowd)))
            })
            .collect();
        IouMatrix::from_values(dets.len(), gts.len(), values)
    }
}

/// One image's objects and detections of one class.
struct Cell<'a, D> {
    gts: Vec<&'a Object>,
    dets: Vec<&'a D>,
}

impl<D> Default for Cell<'_, D> {
    fn default() -> Self {
        Self {
            gts: Vec::new(),
            dets: Vec::new(),
        }
    }
}

/// One image and class after matching, for one area range: per detection (in score order), the
/// thresholds at which it matched (bit `t`) and those at which it is ignored.
struct AreaMatches {
    matched: Vec<u16>,
    ignored: Vec<u16>,
    /// Non-ignored ground truths.
    npig: usize,
}

/// A score as a sort key: NaN counts as the lowest score.
fn score_key(score: f64) -> f64 {
    if score.is_nan() {
        f64::NEG_INFINITY
    } else {
        score
    }
}

/// Sorts by descending score key, stable.
pub(super) fn sort_by_score<T>(items: &mut [T], score: impl Fn(&T) -> f64) {
    items.sort_by(|a, b| {
        score_key(score(b))
            .partial_cmp(&score_key(score(a)))
            .expect("NaN is mapped to -inf")
    });
}

/// `COCOeval.evaluateImg` for one image and class, at every area range.
fn evaluate_cell<D: Evaluable>(
    cell: &mut Cell<'_, D>,
    thresholds: &[f64; T],
) -> (Vec<f64>, Vec<AreaMatches>) {
    sort_by_score(&mut cell.dets, |d| f64::from(d.detection().score));
    cell.dets.truncate(MAX_DETS[M - 1]);
    let scores: Vec<f64> = cell
        .dets
        .iter()
        .map(|d| f64::from(d.detection().score))
        .collect();
    let ious = D::ious(&cell.dets, &cell.gts);
    let det_areas: Vec<f64> = cell.dets.iter().map(|d| d.area()).collect();
    let per_area = AreaRange::EVERY
        .iter()
        .map(|&range| {
            let flags: Vec<GtFlags> = cell
                .gts
                .iter()
                .map(|g| GtFlags {
                    ignore: g.crowd || g.difficult || !range.contains(f64::from(g.area)),
                    crowd: g.crowd,
                })
                .collect();
            let mut matched = vec![0u16; cell.dets.len()];
            let mut ignored = vec![0u16; cell.dets.len()];
            for (t, &thr) in thresholds.iter().enumerate() {
                let m = match_detections(&ious, &flags, thr, MatchRule::Coco);
                for (d, g) in m.into_iter().enumerate() {
                    let ignore = match g {
                        Some(g) => {
                            matched[d] |= 1 << t;
                            flags[g].ignore
                        }
                        None => !range.contains(det_areas[d]),
                    };
                    if ignore {
                        ignored[d] |= 1 << t;
                    }
                }
            }
            AreaMatches {
                matched,
                ignored,
                npig: flags.iter().filter(|f| !f.ignore).count(),
            }
        })
        .collect();
    (scores, per_area)
}

/// `COCOeval.accumulate` for one class: precision `[area][max_dets][iou][recall]` and recall
/// `[area][max_dets][iou]`, -1 where there is no non-ignored ground truth.
fn evaluate_class<D: Evaluable>(cells: &mut BTreeMap<u64, Cell<'_, D>>) -> (Vec<f64>, Vec<f64>) {
    let thresholds = iou_thresholds();
    let rec_thr = recall_thresholds();
    // (score, rank in its image, matched bits, ignored bits) per area range, image order.
    let mut entries: Vec<Vec<(f64, usize, u16, u16)>> = vec![Vec::new(); A];
    let mut npig = [0usize; A];
    for cell in cells.values_mut() {
        let (scores, per_area) = evaluate_cell(cell, &thresholds);
        for (a, am) in per_area.into_iter().enumerate() {
            npig[a] += am.npig;
            entries[a].extend(
                scores
                    .iter()
                    .zip(am.matched.iter().zip(&am.ignored))
                    .enumerate()
                    .map(|(rank, (&s, (&m, &i)))| (s, rank, m, i)),
            );
        }
    }
    let mut precision = vec![-1.0; A * M * T * R];
    let mut recall = vec![-1.0; A * M * T];
    for (a, mut list) in entries.into_iter().enumerate() {
        if npig[a] == 0 {
            continue;
        }
        sort_by_score(&mut list, |e| e.0);
        for (m, &max_det) in MAX_DETS.iter().enumerate() {
            for t in 0..T {
                let bit = 1u16 << t;
                let outcomes = list.iter().filter(|e| e.1 < max_det).map(|e| {
                    if e.3 & bit != 0 {
                        Outcome::Ignored
                    } else if e.2 & bit != 0 {
                        Outcome::TruePositive
                    } else {
                        Outcome::FalsePositive
                    }
                });
                let curve = PrCurve::from_outcomes(outcomes, npig[a]);
                let at = (a * M + m) * T + t;
                recall[at] = curve.final_recall();
                precision[at * R..(at + 1) * R].copy_from_slice(&curve.sample(&rec_thr));
            }
        }
    }
    (precision, recall)
}

/// The mean of the values that are not -1, or -1 if there is none (`summarize`).
fn mean_valid(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values
        .filter(|&v| v > -1.0)
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { -1.0 } else { sum / n as f64 }
}

/// Evaluates `detections` against `gt` exactly as pycocotools' `COCOeval` (bbox) does; see the
/// module documentation for the semantics.
pub fn evaluate_coco(gt: &DetectionSet, detections: &[Detection]) -> CocoEvaluation {
    evaluate(gt, detections)
}

/// Evaluates mask detections against `gt`'s instance masks exactly as pycocotools' `COCOeval`
/// with `iouType='segm'` does: as [`evaluate_coco`], with mask IoU in place of box IoU and
/// [`MaskDetection::area`] as a detection's area. Ground-truth areas are [`Object::area`]
/// (COCO's `area` field). Refuses a ground truth without a mask, naming its image.
pub fn evaluate_coco_masks(
    gt: &DetectionSet,
    detections: &[MaskDetection],
) -> Result<CocoEvaluation> {
    if let Some(im) = gt.image_without_masks() {
        return Err(DetectError::invalid(
            "mask evaluation",
            format!(
                "image {} ({}) has an object without a mask; segm evaluation needs every \
                 ground-truth object's segmentation",
                im.id,
                im.path.display()
            ),
        ));
    }
    Ok(evaluate(gt, detections))
}

/// [`evaluate_coco`] for boxes or masks.
fn evaluate<D: Evaluable>(gt: &DetectionSet, detections: &[D]) -> CocoEvaluation {
    let k_count = gt.categories.len();
    let image_ids: HashSet<u64> = gt.images.iter().map(|im| im.id).collect();
    let mut cells: Vec<BTreeMap<u64, Cell<'_, D>>> =
        (0..k_count).map(|_| BTreeMap::new()).collect();
    let mut num_gt = vec![0usize; k_count];
    let mut num_det = vec![0usize; k_count];
    for im in &gt.images {
        for o in im.objects.iter().filter(|o| o.class < k_count) {
            cells[o.class].entry(im.id).or_default().gts.push(o);
            if !o.crowd && !o.difficult {
                num_gt[o.class] += 1;
            }
        }
    }
    for item in detections {
        let d = item.detection();
        if d.class < k_count && image_ids.contains(&d.image_id) {
            cells[d.class]
                .entry(d.image_id)
                .or_default()
                .dets
                .push(item);
            num_det[d.class] += 1;
        }
    }
    let per_class: Vec<(Vec<f64>, Vec<f64>)> = cells.par_iter_mut().map(evaluate_class).collect();
    let mut precision = Vec::with_capacity(k_count * A * M * T * R);
    let mut recall = Vec::with_capacity(k_count * A * M * T);
    for (p, r) in per_class {
        precision.extend(p);
        recall.extend(r);
    }

    let p_at = |k: usize, a: usize, m: usize, t: usize| {
        let at = (((k * A + a) * M + m) * T + t) * R;
        &precision[at..at + R]
    };
    let r_at = |k: usize, a: usize, m: usize, t: usize| recall[((k * A + a) * M + m) * T + t];
    let m100 = M - 1;
    let ap = |a: usize, ts: &[usize]| {
        mean_valid((0..k_count).flat_map(|k| {
            ts.iter()
                .flat_map(move |&t| p_at(k, a, m100, t).iter().copied())
        }))
    };
    let ar = |a: usize, m: usize| {
        mean_valid((0..k_count).flat_map(|k| (0..T).map(move |t| r_at(k, a, m, t))))
    };
    let all_t: Vec<usize> = (0..T).collect();
    let stats = CocoStats {
        ap: ap(0, &all_t),
        ap50: ap(0, &[IOU_50]),
        ap75: ap(0, &[IOU_75]),
        ap_small: ap(1, &all_t),
        ap_medium: ap(2, &all_t),
        ap_large: ap(3, &all_t),
        ar1: ar(0, 0),
        ar10: ar(0, 1),
        ar100: ar(0, m100),
        ar_small: ar(1, m100),
        ar_medium: ar(2, m100),
        ar_large: ar(3, m100),
    };
    let classes = gt
        .categories
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let class_ap = |ts: &[usize]| {
                mean_valid(ts.iter().flat_map(|&t| p_at(k, 0, m100, t).iter().copied()))
            };
            CocoClassMetrics {
                class: k,
                category_id: c.id,
                name: c.name.clone(),
                num_gt: num_gt[k],
                num_detections: num_det[k],
                ap: class_ap(&all_t),
                ap50: class_ap(&[IOU_50]),
                ap75: class_ap(&[IOU_75]),
                ar100: mean_valid((0..T).map(|t| r_at(k, 0, m100, t))),
                precision_50: p_at(k, 0, m100, IOU_50).to_vec(),
                precision_75: p_at(k, 0, m100, IOU_75).to_vec(),
            }
        })
        .collect();
    CocoEvaluation {
        stats,
        classes,
        precision,
        recall,
    }
}
