//! Recall against the number of proposals, as a PNG chart (kiln's line plots).

use std::path::Path;

use kiln_train::plot::{LinePlot, Series};

use super::recall::first_hits;
use crate::Result;
use crate::data::BoundingBox;

/// One recall-vs-proposals curve: recall at IoU `iou` for each number of proposals.
#[derive(Clone, Debug, PartialEq)]
pub struct RecallCurve {
    /// Legend text (e.g. `"kiln, IoU 0.5"`).
    pub name: String,
    /// The IoU threshold.
    pub iou: f32,
    /// `(proposals per image, recall)` points, by increasing count.
    pub points: Vec<(usize, f64)>,
}

/// Recall at IoU ≥ `iou` of `gt_boxes_per_image` by the first `n` proposals of each image, for
/// every `n` in `ns` (see [`proposal_recall`](super::proposal_recall)).
pub fn recall_curve(
    name: impl Into<String>,
    gt_boxes_per_image: &[Vec<BoundingBox>],
    proposals_per_image: &[Vec<BoundingBox>],
    iou: f32,
    ns: &[usize],
) -> RecallCurve {
    let empty = Vec::new();
    let mut firsts: Vec<usize> = gt_boxes_per_image
        .iter()
        .enumerate()
        .flat_map(|(i, gt)| first_hits(gt, proposals_per_image.get(i).unwrap_or(&empty), iou))
        .collect();
    firsts.sort_unstable();
    let total = firsts.len().max(1) as f64;
    let points = ns
        .iter()
        .map(|&n| {
            let covered = firsts.partition_point(|&f| f < n);
            (n, covered as f64 / total)
        })
        .collect();
    RecallCurve {
        name: name.into(),
        iou,
        points,
    }
}

/// Draws `curves` as one 800×500 PNG at `path` (written atomically): recall against the number
/// of proposals per image.
pub fn save_recall_plot(path: &Path, title: &str, curves: &[RecallCurve]) -> Result<()> {
    let plot = LinePlot {
        title: title.to_string(),
        x_label: "proposals per image".into(),
        y_label: "recall".into(),
        series: curves
            .iter()
            .map(|c| {
                Series::new(
                    c.name.clone(),
                    c.points.iter().map(|&(n, r)| (n as f64, r)).collect(),
                )
            })
            .collect(),
    };
    plot.save_png(path)?;
    Ok(())
}
