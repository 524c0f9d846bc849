//! What `kiln-detect eval` prints and writes: pycocotools-style summary lines, a per-class
//! table, and `metrics.json`.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::coco::{CocoEvaluation, CocoStats};
use super::voc::VocEvaluation;
use crate::Result;

/// The 12 summary lines, formatted as pycocotools' `COCOeval.summarize()` prints them.
pub fn summary_lines(stats: &CocoStats) -> String {
    // (AP?, IoU, area, maxDets) for each entry of `stats`, in order.
    const ROWS: [(bool, &str, &str, usize); 12] = [
        (true, "0.50:0.95", "all", 100),
        (true, "0.50", "all", 100),
        (true, "0.75", "all", 100),
        (true, "0.50:0.95", "small", 100),
        (true, "0.50:0.95", "medium", 100),
        (true, "0.50:0.95", "large", 100),
        (false, "0.50:0.95", "all", 1),
        (false, "0.50:0.95", "all", 10),
        (false, "0.50:0.95", "all", 100),
        (false, "0.50:0.95", "small", 100),
        (false, "0.50:0.95", "medium", 100),
        (false, "0.50:0.95", "large", 100),
    ];
    let mut out = String::new();
    for ((ap, iou, area, max_dets), value) in ROWS.iter().zip(stats.to_array()) {
        let (title, kind) = if *ap {
            ("Average Precision", "(AP)")
        } else {
            ("Average Recall", "(AR)")
        };
        let _ = writeln!(
            out,
            " {title:<18} {kind} @[ IoU={iou:<9} | area={area:>6} | maxDets={max_dets:>3} ] = {value:0.3}"
        );
    }
    out
}

/// A metric for the table: three decimals, `-` where it is -1 (no ground truth).
fn cell(v: f64) -> String {
    if v > -1.0 {
        format!("{v:.3}")
    } else {
        "-".into()
    }
}

/// The per-class table: ground truths, detections, VOC all-point AP50 (from `voc`, matched by
/// class index), COCO AP50, AP75 and AP@[.50:.95], and a mean row.
pub fn class_table(coco: &CocoEvaluation, voc: &VocEvaluation) -> String {
    let name_width = coco
        .classes
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(5);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<name_width$} {:>7} {:>7} {:>9} {:>7} {:>7} {:>7}",
        "class", "gt", "dets", "VOC AP50", "AP50", "AP75", "AP"
    );
    let voc_ap = |k: usize| voc.classes.get(k).map_or(-1.0, |c| c.ap);
    for c in &coco.classes {
        let _ = writeln!(
            out,
            "{:<name_width$} {:>7} {:>7} {:>9} {:>7} {:>7} {:>7}",
            c.name,
            c.num_gt,
            c.num_detections,
            cell(voc_ap(c.class)),
            cell(c.ap50),
            cell(c.ap75),
            cell(c.ap)
        );
    }
    let _ = writeln!(
        out,
        "{:<name_width$} {:>7} {:>7} {:>9} {:>7} {:>7} {:>7}",
        "mean",
        coco.classes.iter().map(|c| c.num_gt).sum::<usize>(),
        coco.classes.iter().map(|c| c.num_detections).sum::<usize>(),
        cell(voc.map),
        cell(coco.stats.ap50),
        cell(coco.stats.ap75),
        cell(coco.stats.ap)
    );
    out
}

/// The whole report: [`summary_lines`], a blank line, then [`class_table`].
pub fn format_report(coco: &CocoEvaluation, voc: &VocEvaluation) -> String {
    format!("{}\n{}", summary_lines(&coco.stats), class_table(coco, voc))
}

/// What `metrics.json` holds.
#[derive(Serialize)]
struct Metrics<'a> {
    coco: &'a CocoEvaluation,
    voc: &'a VocEvaluation,
}

/// Writes `{"coco": {"stats", "classes"}, "voc": {"iou_threshold", "method", "map",
/// "classes"}}` as pretty JSON to `path`, atomically (a temporary file in the same folder,
/// then renamed). Absent metrics are -1, as in pycocotools.
pub fn write_metrics_json(path: &Path, coco: &CocoEvaluation, voc: &VocEvaluation) -> Result<()> {
    let mut json = serde_json::to_vec_pretty(&Metrics { coco, voc })
        .map_err(|e| crate::DetectError::invalid("metrics", e.to_string()))?;
    json.push(b'\n');
    kiln_train::write_atomic(path, &json)?;
    Ok(())
}
