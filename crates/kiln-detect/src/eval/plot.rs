//! `pr_curve.png`: COCO's interpolated precision against recall per class, at IoU 0.50 and
//! 0.75, side by side. Each panel is drawn by kiln's own chart code
//! ([`kiln_train::plot::LinePlot`], which embeds its font) and the two are joined into one PNG.

use std::path::{Path, PathBuf};

use image::RgbImage;
use kiln_train::plot::{LinePlot, Series};

use super::ap::recall_thresholds;
use super::coco::CocoEvaluation;
use crate::{DetectError, Result};

/// Classes beyond this many are drawn without a legend entry.
const MAX_LEGEND: usize = 20;

/// One panel: a mean curve, then one curve per class with ground truth.
fn panel(coco: &CocoEvaluation, iou: &str, pick: impl Fn(usize) -> (f64, Vec<f64>)) -> LinePlot {
    let rec = recall_thresholds();
    let with_gt: Vec<(String, f64, Vec<f64>)> = coco
        .classes
        .iter()
        .filter_map(|c| {
            let (ap, p) = pick(c.class);
            (ap > -1.0).then(|| (c.name.clone(), ap, p))
        })
        .collect();
    let mut series = Vec::with_capacity(with_gt.len() + 1);
    if !with_gt.is_empty() {
        let mean: Vec<(f64, f64)> = (0..rec.len())
            .map(|r| {
                let p = with_gt.iter().map(|c| c.2[r]).sum::<f64>() / with_gt.len() as f64;
                (rec[r], p)
            })
            .collect();
        let map = with_gt.iter().map(|c| c.1).sum::<f64>() / with_gt.len() as f64;
        series.push(Series::new(format!("mean (AP {map:.3})"), mean));
    }
    let legend = with_gt.len() <= MAX_LEGEND;
    for (name, ap, p) in &with_gt {
        let label = if legend {
            format!("{name} ({ap:.3})")
        } else {
            String::new()
        };
        series.push(Series::new(
            label,
            rec.iter().copied().zip(p.iter().copied()).collect(),
        ));
    }
    LinePlot {
        title: format!("precision/recall at IoU {iou}"),
        x_label: "recall".into(),
        y_label: "precision".into(),
        series,
    }
}

fn draw_error(path: &Path, e: impl std::fmt::Display) -> DetectError {
    DetectError::invalid("PR curve", format!("{}: {e}", path.display()))
}

/// Draws the per-class precision/recall curves of `coco` (all areas, 100 detections per image)
/// at IoU 0.50 (left) and 0.75 (right), with each class's AP in the legend, as one 1600×500
/// PNG at `path`, written atomically. It is an error when no class has ground truth.
pub fn save_pr_curves(path: &Path, coco: &CocoEvaluation) -> Result<()> {
    if coco.classes.iter().all(|c| c.ap50 <= -1.0) {
        return Err(DetectError::invalid(
            "PR curve",
            format!("{}: no class has ground truth", path.display()),
        ));
    }
    let name = path
        .file_name()
        .ok_or_else(|| {
            DetectError::invalid("PR curve", format!("{} is not a file", path.display()))
        })?
        .to_string_lossy()
        .into_owned();
    let panels = [
        panel(coco, "0.50", |k| {
            let c = &coco.classes[k];
            (c.ap50, c.precision_50.clone())
        }),
        panel(coco, "0.75", |k| {
            let c = &coco.classes[k];
            (c.ap75, c.precision_75.clone())
        }),
    ];
    let tmp: Vec<PathBuf> = (0..2)
        .map(|i| path.with_file_name(format!(".{name}.panel{i}.png")))
        .collect();
    let result = (|| {
        let mut images = Vec::with_capacity(2);
        for (plot, p) in panels.iter().zip(&tmp) {
            plot.save_png(p)?;
            images.push(image::open(p).map_err(|e| draw_error(p, e))?.to_rgb8());
        }
        let (w, h) = (images[0].width(), images[0].height());
        let mut joined = RgbImage::new(w + images[1].width(), h.max(images[1].height()));
        image::imageops::replace(&mut joined, &images[0], 0, 0);
        image::imageops::replace(&mut joined, &images[1], i64::from(w), 0);
        kiln_train::write_via_temp(path, ".png", |t| {
            joined
                .save_with_format(t, image::ImageFormat::Png)
                .map_err(|e| kiln_train::TrainError::Invalid(format!("{}: {e}", t.display())))
        })?;
        Ok(())
    })();
    for p in &tmp {
        let _ = std::fs::remove_file(p);
    }
    result
}

/// One detector on the speed/accuracy chart.
#[derive(Clone, Debug, PartialEq)]
pub struct SpeedAccuracy {
    /// Legend entry (e.g. the method).
    pub label: String,
    /// Test AP50.
    pub ap50: f64,
    /// Test images per second.
    pub images_per_sec: f64,
}

/// Draws test AP50 against test images per second (log scale) for `points`, one marker and
/// legend entry each, slowest first (e.g. R-CNN → Fast → Faster → YOLO), as an 800×500 PNG at
/// `path`.
pub fn save_speed_accuracy(path: &Path, title: &str, points: &[SpeedAccuracy]) -> Result<()> {
    let mut by_speed: Vec<&SpeedAccuracy> = points.iter().collect();
    by_speed.sort_by(|a, b| a.images_per_sec.total_cmp(&b.images_per_sec));
    let series = by_speed
        .into_iter()
        .filter(|p| p.images_per_sec > 0.0)
        .map(|p| {
            Series::new(
                format!(
                    "{} (AP50 {:.3}, {:.2} img/s)",
                    p.label, p.ap50, p.images_per_sec
                ),
                vec![(p.images_per_sec.log10(), p.ap50)],
            )
        })
        .collect();
    LinePlot {
        title: title.into(),
        x_label: "test images per second, log10".into(),
        y_label: "test AP50".into(),
        series,
    }
    .save_png(path)
    .map_err(|e| DetectError::invalid("speed/accuracy plot", e.to_string()))
}
