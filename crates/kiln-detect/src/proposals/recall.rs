//! Proposal recall: how many ground-truth boxes the top-N proposals cover.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::data::{BoundingBox, DetectionSet};
use crate::ops::host::iou;

/// Recall of ground-truth boxes by the top-N proposals of each image, at several N and IoU
/// thresholds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecallTable {
    /// The numbers of proposals per image considered (columns).
    pub top_ns: Vec<usize>,
    /// The IoU thresholds (rows).
    pub iou_thresholds: Vec<f32>,
    /// `recall[t][n]`: the fraction of ground-truth boxes with IoU ≥ `iou_thresholds[t]` to at
    /// least one of the first `top_ns[n]` proposals of their image (0 when there is no box).
    pub recall: Vec<Vec<f64>>,
    /// Ground-truth boxes counted.
    pub gt_boxes: usize,
    /// Images counted.
    pub images: usize,
    /// Median number of proposals per image.
    pub median_proposals: f64,
    /// Mean number of proposals per image.
    pub mean_proposals: f64,
}

impl RecallTable {
    /// The recall at `top_n` proposals and IoU threshold `iou`, if both are in the table.
    pub fn get(&self, top_n: usize, iou: f32) -> Option<f64> {
        let n = self.top_ns.iter().position(|&v| v == top_n)?;
        let t = self.iou_thresholds.iter().position(|&v| v == iou)?;
        Some(self.recall[t][n])
    }
}

impl fmt::Display for RecallTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>8}", "IoU")?;
        for n in &self.top_ns {
            write!(f, " {:>8}", format!("@{n}"))?;
        }
        writeln!(f)?;
        for (t, row) in self.iou_thresholds.iter().zip(&self.recall) {
            write!(f, "{t:>8.2}")?;
            for r in row {
                write!(f, " {r:>8.3}")?;
            }
            writeln!(f)?;
        }
        write!(
            f,
            "{} boxes in {} images; median {} proposals per image",
            self.gt_boxes, self.images, self.median_proposals
        )
    }
}

/// The non-difficult ground-truth boxes of every image of `set`, in image order (what recall is
/// measured against).
pub fn ground_truth_boxes(set: &DetectionSet) -> Vec<Vec<BoundingBox>> {
    set.images
        .iter()
        .map(|im| {
            im.objects
                .iter()
                .filter(|o| !o.difficult)
                .map(|o| o.bbox)
                .collect()
        })
        .collect()
}

/// For each ground-truth box, the rank (0-based) of the first proposal with IoU ≥ `threshold`
/// to it, or `usize::MAX` when none reaches it.
pub(crate) fn first_hits(
    gt: &[BoundingBox],
    proposals: &[BoundingBox],
    threshold: f32,
) -> Vec<usize> {
    gt.iter()
        .map(|g| {
            proposals
                .iter()
                .position(|p| iou(g, p) >= threshold)
                .unwrap_or(usize::MAX)
        })
        .collect()
}

/// Median of counts (mean of the middle two for an even number; 0 for none).
fn median(mut values: Vec<usize>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_unstable();
    let m = values.len() / 2;
    if values.len() % 2 == 1 {
        values[m] as f64
    } else {
        (values[m - 1] + values[m]) as f64 / 2.0
    }
}

/// Recall of `gt_boxes_per_image` (pass [`ground_truth_boxes`] to leave difficult objects out)
/// by the best-first `proposals_per_image`: for each threshold `t` and count `n`, the fraction of
/// ground-truth boxes with IoU ≥ `t` to at least one of their image's first `n` proposals.
/// Images are paired by position; an image missing from either list counts as having no
/// proposals or no boxes.
pub fn proposal_recall(
    gt_boxes_per_image: &[Vec<BoundingBox>],
    proposals_per_image: &[Vec<BoundingBox>],
    top_ns: &[usize],
    iou_thresholds: &[f32],
) -> RecallTable {
    let gt_boxes: usize = gt_boxes_per_image.iter().map(Vec::len).sum();
    let empty = Vec::new();
    let mut recall = Vec::with_capacity(iou_thresholds.len());
    for &t in iou_thresholds {
        let mut hits = vec![0usize; top_ns.len()];
        for (i, gt) in gt_boxes_per_image.iter().enumerate() {
            let proposals = proposals_per_image.get(i).unwrap_or(&empty);
            for first in first_hits(gt, proposals, t) {
                for (h, &n) in hits.iter_mut().zip(top_ns) {
                    if first < n {
                        *h += 1;
                    }
                }
            }
        }
        recall.push(
            hits.iter()
                .map(|&h| {
                    if gt_boxes == 0 {
                        0.0
                    } else {
                        h as f64 / gt_boxes as f64
                    }
                })
                .collect(),
        );
    }
    let counts: Vec<usize> = proposals_per_image.iter().map(Vec::len).collect();
    let mean_proposals = if counts.is_empty() {
        0.0
    } else {
        counts.iter().sum::<usize>() as f64 / counts.len() as f64
    };
    RecallTable {
        top_ns: top_ns.to_vec(),
        iou_thresholds: iou_thresholds.to_vec(),
        recall,
        gt_boxes,
        images: gt_boxes_per_image.len(),
        median_proposals: median(counts),
        mean_proposals,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x1: f32, y1: f32, x2: f32, y2: f32) -> BoundingBox {
        BoundingBox { x1, y1, x2, y2 }
    }

    #[test]
    fn recall_counts_boxes_covered_by_the_top_n() {
        let gt = vec![
            vec![b(0.0, 0.0, 10.0, 10.0), b(20.0, 20.0, 30.0, 30.0)],
            vec![b(0.0, 0.0, 4.0, 4.0)],
        ];
        let proposals = vec![
            // Image 0: a miss, then box 1 at IoU 0.64 (8x8 inside 10x10 = 64/100), then box 0.
            vec![
                b(50.0, 50.0, 60.0, 60.0),
                b(21.0, 21.0, 29.0, 29.0),
                b(0.0, 0.0, 10.0, 10.0),
            ],
            vec![],
        ];
        let t = proposal_recall(&gt, &proposals, &[1, 2, 3], &[0.5, 0.7]);
        assert_eq!(t.gt_boxes, 3);
        assert_eq!(t.recall[0], vec![0.0, 1.0 / 3.0, 2.0 / 3.0]);
        assert_eq!(t.recall[1], vec![0.0, 0.0, 1.0 / 3.0]);
        assert_eq!(t.get(3, 0.5), Some(2.0 / 3.0));
        assert_eq!(t.median_proposals, 1.5);
        assert!(t.to_string().contains("@3"));
    }
}
