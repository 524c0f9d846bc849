//! Pascal VOC average precision, as the VOC devkit (and Detectron's `voc_eval.py`) computes it.
//!
//! Per class, detections of all images are ranked by descending score (stable: ties keep their
//! input order); each takes the ground truth of its image it overlaps most, if that IoU is
//! strictly above the threshold ([`MatchRule::Voc`]): a free ground truth makes it a true
//! positive, one already taken a false positive (a duplicate), a `difficult` one neither. Crowd
//! regions (COCO ground truth) are treated as difficult. Boxes are in continuous coordinates, so
//! IoU has no `+ 1` (the VOC reader already moved VOC's inclusive pixel indices).
//!
//! A class without non-difficult ground truth gets AP -1 and is left out of the mean.

use std::collections::{BTreeMap, HashSet};

use rayon::prelude::*;
use serde::Serialize;

use super::ap::{ApMethod, Outcome, PrCurve};
use super::coco::sort_by_score;
use super::matcher::{GtFlags, IouMatrix, MatchRule, match_detections};
use crate::data::{Detection, DetectionSet, Object};

/// Which VOC AP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VocAp {
    /// VOC2007's 11-point interpolated AP ([`ApMethod::ElevenPoint`]).
    ElevenPoint,
    /// VOC2010+'s area under the precision envelope ([`ApMethod::AllPoint`]).
    AllPoint,
}

impl VocAp {
    /// The integrator this AP uses.
    pub fn method(self) -> ApMethod {
        match self {
            Self::ElevenPoint => ApMethod::ElevenPoint,
            Self::AllPoint => ApMethod::AllPoint,
        }
    }
}

/// One class's VOC result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VocClassMetrics {
    /// Index into [`DetectionSet::categories`].
    pub class: usize,
    /// The category id.
    pub category_id: u64,
    /// The class name.
    pub name: String,
    /// Ground truths that count (not difficult, not crowd).
    pub num_gt: usize,
    /// Detections of this class on the evaluated images.
    pub num_detections: usize,
    /// Average precision, -1 without ground truth.
    pub ap: f64,
    /// Precision/recall after each ranked detection.
    #[serde(skip)]
    pub curve: PrCurve,
}

/// The result of [`evaluate_voc`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VocEvaluation {
    /// The IoU a match must exceed.
    pub iou_threshold: f64,
    /// The AP definition.
    pub method: VocAp,
    /// Mean AP over the classes with ground truth (-1 if none has any).
    pub map: f64,
    /// Per-class results, in category order.
    pub classes: Vec<VocClassMetrics>,
}

/// Evaluates `detections` against `gt` by Pascal VOC rules at `iou_threshold` (0.5 for VOC);
/// see the module documentation. Detections whose image is not in `gt`, or whose class is not
/// one of its categories, are not evaluated.
pub fn evaluate_voc(
    gt: &DetectionSet,
    detections: &[Detection],
    iou_threshold: f64,
    method: VocAp,
) -> VocEvaluation {
    let k_count = gt.categories.len();
    // Per class: image id → (ground truths, detection indices in input order).
    type Cells<'a> = BTreeMap<u64, (Vec<&'a Object>, Vec<usize>)>;
    let mut cells: Vec<Cells<'_>> = (0..k_count).map(|_| BTreeMap::new()).collect();
    for im in &gt.images {
        for o in im.objects.iter().filter(|o| o.class < k_count) {
            cells[o.class].entry(im.id).or_default().0.push(o);
        }
    }
    let image_ids: HashSet<u64> = gt.images.iter().map(|im| im.id).collect();
    for (i, d) in detections.iter().enumerate() {
        if d.class < k_count && image_ids.contains(&d.image_id) {
            cells[d.class].entry(d.image_id).or_default().1.push(i);
        }
    }
    let classes = cells
        .into_par_iter()
        .enumerate()
        .map(|(k, cells)| {
            let mut npos = 0;
            // (score, input index, outcome)
            let mut ranked: Vec<(f64, usize, Outcome)> = Vec::new();
            for (objects, mut dets) in cells.into_values() {
                let flags: Vec<GtFlags> = objects
                    .iter()
                    .map(|o| GtFlags {
                        ignore: o.difficult || o.crowd,
                        crowd: false,
                    })
                    .collect();
                npos += flags.iter().filter(|f| !f.ignore).count();
                sort_by_score(&mut dets, |&i| f64::from(detections[i].score));
                let boxes: Vec<_> = dets.iter().map(|&i| detections[i].bbox).collect();
                let gts: Vec<_> = objects.iter().map(|o| (o.bbox, false)).collect();
                let ious = IouMatrix::new(&boxes, &gts);
                let matches = match_detections(&ious, &flags, iou_threshold, MatchRule::Voc);
                for (&i, m) in dets.iter().zip(matches) {
                    let outcome = match m {
                        Some(g) if flags[g].ignore => Outcome::Ignored,
                        Some(_) => Outcome::TruePositive,
                        None => Outcome::FalsePositive,
                    };
                    ranked.push((f64::from(detections[i].score), i, outcome));
                }
            }
            ranked.sort_by_key(|e| e.1);
            sort_by_score(&mut ranked, |e| e.0);
            let curve = PrCurve::from_outcomes(ranked.iter().map(|e| e.2), npos);
            let ap = if npos == 0 {
                -1.0
            } else {
                curve.average_precision(method.method())
            };
            let c = &gt.categories[k];
            VocClassMetrics {
                class: k,
                category_id: c.id,
                name: c.name.clone(),
                num_gt: npos,
                num_detections: ranked.len(),
                ap,
                curve,
            }
        })
        .collect::<Vec<_>>();
    let valid: Vec<f64> = classes.iter().map(|c| c.ap).filter(|&a| a > -1.0).collect();
    let map = if valid.is_empty() {
        -1.0
    } else {
        valid.iter().sum::<f64>() / valid.len() as f64
    };
    VocEvaluation {
        iou_threshold,
        method,
        map,
        classes,
    }
}
