//! Which regions a two-stage detector learns from: every candidate box matched to the
//! ground-truth box it overlaps most, labelled foreground, background or ignored by its IoU, and a
//! minibatch drawn with a bounded share of foreground (Fast R-CNN's "25 % foreground" rule;
//! torchvision's `Matcher` and `BalancedPositiveNegativeSampler`).

use rand::Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::data::BoundingBox;
use crate::ops::host::iou;
use crate::{DetectError, Result};

/// The minibatch rule for the box head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoiSampling {
    /// Regions per image in a minibatch (fewer when the image has fewer candidates).
    pub per_image: usize,
    /// Largest share of foreground regions (the rest is background).
    pub positive_fraction: f32,
    /// A region overlapping a ground-truth box by at least this IoU is foreground.
    pub foreground_iou: f32,
    /// A region whose best IoU is in `[low, high)` is background; outside it and below
    /// `foreground_iou` it is ignored. Fast R-CNN: `[0.1, 0.5)`.
    pub background_iou: [f32; 2],
}

impl Default for RoiSampling {
    fn default() -> Self {
        Self {
            per_image: 128,
            positive_fraction: 0.25,
            foreground_iou: 0.5,
            background_iou: [0.1, 0.5],
        }
    }
}

impl RoiSampling {
    /// Checks the fractions and thresholds; `what` names the config section in errors.
    pub fn validate(&self, what: &str) -> Result<()> {
        let bad =
            |field: &str, why: String| Err(DetectError::invalid(format!("{what}.{field}"), why));
        if self.per_image == 0 {
            return bad("per_image", "must be positive".into());
        }
        if !(self.positive_fraction > 0.0 && self.positive_fraction <= 1.0) {
            return bad(
                "positive_fraction",
                format!("{} is not in (0, 1]", self.positive_fraction),
            );
        }
        if !(self.foreground_iou > 0.0 && self.foreground_iou <= 1.0) {
            return bad(
                "foreground_iou",
                format!("{} is not in (0, 1]", self.foreground_iou),
            );
        }
        let [low, high] = self.background_iou;
        if !(0.0 <= low && low < high && high <= self.foreground_iou) {
            return bad(
                "background_iou",
                format!(
                    "[{low}, {high}) must satisfy 0 ≤ low < high ≤ foreground_iou ({})",
                    self.foreground_iou
                ),
            );
        }
        Ok(())
    }
}

/// A sampled region and what it should become.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampledRoi {
    /// The region (a proposal or a ground-truth box).
    pub region: BoundingBox,
    /// 0 for background, `1 + class` for foreground.
    pub label: usize,
    /// The ground-truth box a foreground region should be regressed to.
    pub target: Option<BoundingBox>,
}

/// Each candidate's best IoU with `gt` and the index of that box (`None` without ground truth).
pub fn match_boxes(candidates: &[BoundingBox], gt: &[BoundingBox]) -> Vec<Option<(usize, f32)>> {
    candidates
        .iter()
        .map(|c| {
            gt.iter()
                .enumerate()
                .map(|(j, g)| (j, iou(c, g)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
        })
        .collect()
}

/// Draws a minibatch for the box head from `proposals` plus the ground-truth boxes themselves
/// (so every image has foreground from the first step, as torchvision adds them): up to
/// `per_image · positive_fraction` foreground regions at random, the rest background, foreground
/// first. `labels[j]` is the class index of `gt[j]`.
pub fn sample_rois(
    proposals: &[BoundingBox],
    gt: &[BoundingBox],
    labels: &[usize],
    rule: &RoiSampling,
    rng: &mut impl Rng,
) -> Vec<SampledRoi> {
    let candidates: Vec<BoundingBox> = proposals.iter().chain(gt).copied().collect();
    let matches = match_boxes(&candidates, gt);
    let [low, high] = rule.background_iou;
    let (mut foreground, mut background) = (Vec::new(), Vec::new());
    for (i, m) in matches.iter().enumerate() {
        let best = m.map_or(0.0, |(_, v)| v);
        if best >= rule.foreground_iou {
            foreground.push(i);
        } else if best >= low && best < high {
            background.push(i);
        }
    }
    foreground.shuffle(rng);
    background.shuffle(rng);
    let positives =
        ((rule.per_image as f32 * rule.positive_fraction) as usize).min(foreground.len());
    let negatives = (rule.per_image - positives).min(background.len());
    let mut out = Vec::with_capacity(positives + negatives);
    for &i in &foreground[..positives] {
        let (j, _) = matches[i].expect("foreground regions have a match");
        out.push(SampledRoi {
            region: candidates[i],
            label: 1 + labels[j],
            target: Some(gt[j]),
        });
    }
    for &i in &background[..negatives] {
        out.push(SampledRoi {
            region: candidates[i],
            label: 0,
            target: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn bx(x1: f32, y1: f32, x2: f32, y2: f32) -> BoundingBox {
        BoundingBox { x1, y1, x2, y2 }
    }

    #[test]
    fn regions_are_labelled_by_their_best_overlap() {
        let gt = [bx(0.0, 0.0, 10.0, 10.0), bx(20.0, 0.0, 30.0, 10.0)];
        // IoU with gt 1: 1.0 shifted by 2 → 80/120 = 0.667 (foreground of class 7);
        // 0.2-ish overlap with gt 0 → background; far away (IoU 0) → ignored (below 0.1).
        let proposals = [
            bx(22.0, 0.0, 32.0, 10.0),
            bx(7.0, 0.0, 17.0, 10.0),
            bx(50.0, 50.0, 60.0, 60.0),
        ];
        let rule = RoiSampling::default();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let sampled = sample_rois(&proposals, &gt, &[3, 6], &rule, &mut rng);
        // Foreground: the shifted box and both ground-truth boxes; background: the 0.176 one.
        assert_eq!(sampled.len(), 4);
        let foreground: Vec<_> = sampled.iter().filter(|s| s.label > 0).collect();
        assert_eq!(foreground.len(), 3);
        let shifted = sampled.iter().find(|s| s.region == proposals[0]).unwrap();
        assert_eq!((shifted.label, shifted.target), (7, Some(gt[1])));
        let background = sampled.iter().find(|s| s.label == 0).unwrap();
        assert_eq!((background.region, background.target), (proposals[1], None));
        assert!(sampled.iter().all(|s| s.region != proposals[2]));
        // Foreground comes first.
        assert!(sampled[..3].iter().all(|s| s.label > 0));
    }

    #[test]
    fn the_foreground_share_is_bounded_and_draws_follow_the_seed() {
        let gt = [bx(0.0, 0.0, 100.0, 100.0)];
        // 40 near-copies of the box (foreground) and 40 boxes of IoU 0.25 (background).
        let near: Vec<_> = (0..40)
            .map(|i| bx(i as f32 * 0.1, 0.0, 100.0, 100.0))
            .collect();
        let half: Vec<_> = (0..40)
            .map(|i| bx(0.0, 0.0, 50.0 + i as f32 * 0.01, 50.0))
            .collect();
        let proposals: Vec<_> = near.into_iter().chain(half).collect();
        let rule = RoiSampling {
            per_image: 16,
            ..RoiSampling::default()
        };
        let draw = |seed| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            sample_rois(&proposals, &gt, &[0], &rule, &mut rng)
        };
        let sampled = draw(1);
        assert_eq!(sampled.len(), 16);
        assert_eq!(sampled.iter().filter(|s| s.label == 1).count(), 4);
        assert_eq!(draw(1), sampled);
        assert_ne!(draw(2), sampled);
        // Without ground truth every region in the background band is background: none here.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        assert!(sample_rois(&proposals, &[], &[], &rule, &mut rng).is_empty());
    }

    #[test]
    fn bad_rules_are_refused() {
        let ok = RoiSampling::default();
        assert!(ok.validate("fast_rcnn.sampling").is_ok());
        let bad = RoiSampling {
            background_iou: [0.5, 0.3],
            ..ok.clone()
        };
        let err = bad.validate("fast_rcnn.sampling").unwrap_err().to_string();
        assert!(err.contains("fast_rcnn.sampling.background_iou"), "{err}");
        assert!(
            RoiSampling {
                per_image: 0,
                ..ok.clone()
            }
            .validate("s")
            .is_err()
        );
        assert!(
            RoiSampling {
                positive_fraction: 0.0,
                ..ok
            }
            .validate("s")
            .is_err()
        );
    }
}
