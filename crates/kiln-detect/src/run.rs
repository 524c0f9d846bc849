//! A detection run from start to end: train the config's method, detect on the test split,
//! write the detections as COCO results, score them (COCO and VOC), and draw a few test images.

use std::path::Path;
use std::time::Instant;

use burn::tensor::Device;
use kiln_train::RunDir;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::Result;
use crate::batch::DetectionItem;
use crate::config::{DetectConfig, Method};
use crate::data::load::LoadedSplits;
use crate::data::results::{write_coco_mask_results, write_coco_results};
use crate::data::{Detection, DetectionSet, MaskDetection};
use crate::dataset::decode_items;
use crate::draw::{draw_detections, save_grid, tint_masks};
use crate::eval::{
    CocoEvaluation, CocoStats, VocAp, VocEvaluation, evaluate_coco, evaluate_coco_masks,
    evaluate_voc, mean_matched_mask_iou, save_pr_curves, write_metrics_json,
};
use crate::ops::host::iou;
use crate::train::{detect_with_localizer, hold_out, train_localizer};
use crate::two_stage::faster::{detect_faster_rcnn, train_faster_rcnn};
use crate::two_stage::mask_rcnn::{detect_mask_rcnn, train_mask_rcnn};
use crate::two_stage::pipeline::{detect_fast_rcnn, items_with_proposals, train_fast_rcnn};
use crate::yolo::{detect_yolo, train_yolo};

/// The run file naming the categories a detector was trained on, in class-index order.
pub const CATEGORIES_FILE: &str = "categories.json";

/// COCO and VOC (all-point, IoU 0.5) scores of a set of detections.
#[derive(Clone, Debug)]
pub struct Scores {
    /// pycocotools-equal COCO evaluation.
    pub coco: CocoEvaluation,
    /// VOC2010+ all-point AP at IoU 0.5.
    pub voc: VocEvaluation,
}

/// Scores `detections` against `gt` and writes `metrics.json` and `pr_curve.png` into `dir`.
pub fn score_detections(gt: &DetectionSet, detections: &[Detection], dir: &Path) -> Result<Scores> {
    let coco = evaluate_coco(gt, detections);
    let voc = evaluate_voc(gt, detections, 0.5, VocAp::AllPoint);
    write_metrics_json(&dir.join("metrics.json"), &coco, &voc)?;
    if gt.images.iter().any(|im| !im.objects.is_empty()) {
        save_pr_curves(&dir.join("pr_curve.png"), &coco)?;
    }
    Ok(Scores { coco, voc })
}

/// How well one-box-per-image localization did: the mean over test images of the best IoU of
/// the image's top detection with any of its objects, and the share of images where it is at
/// least 0.5.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Localization {
    /// Mean IoU of the top detection with its best-matching object.
    pub mean_iou: f64,
    /// Share of images whose top detection has IoU ≥ 0.5 with an object.
    pub localized: f64,
}

/// [`Localization`] of `detections` (the top-scoring one per image) on the images of `gt`
/// that hold objects.
pub fn localization(gt: &DetectionSet, detections: &[Detection]) -> Localization {
    let (mut sum, mut hits, mut n) = (0.0, 0usize, 0usize);
    for image in gt.images.iter().filter(|im| !im.objects.is_empty()) {
        let top = detections
            .iter()
            .filter(|d| d.image_id == image.id)
            .max_by(|a, b| a.score.total_cmp(&b.score));
        let best = top.map_or(0.0, |d| {
            image
                .objects
                .iter()
                .map(|o| iou(&d.bbox, &o.bbox))
                .fold(0.0, f32::max)
        });
        sum += best as f64;
        hits += usize::from(best >= 0.5);
        n += 1;
    }
    let n = n.max(1) as f64;
    Localization {
        mean_iou: sum / n,
        localized: hits as f64 / n,
    }
}

/// Draws the first `count` test images with their detections (score ≥ `min_score`) and ground
/// truth into one PNG grid.
pub fn draw_test_grid(
    items: &[DetectionItem],
    detections: &[Detection],
    masks: &[MaskDetection],
    set: &DetectionSet,
    path: &Path,
    count: usize,
    min_score: f32,
) -> Result<()> {
    let names: Vec<String> = set.categories.iter().map(|c| c.name.clone()).collect();
    let drawn: Vec<_> = items
        .iter()
        .take(count)
        .map(|item| {
            let mine: Vec<Detection> = detections
                .iter()
                .filter(|d| d.image_id == item.image_id)
                .copied()
                .collect();
            // Items may be downscaled from the original: draw in the item's pixels.
            let (sx, sy) = (
                item.image.width as f32 / item.original_size[0].max(1) as f32,
                item.image.height as f32 / item.original_size[1].max(1) as f32,
            );
            let scaled: Vec<Detection> = mine
                .iter()
                .map(|d| Detection {
                    bbox: scale_box(&d.bbox, sx, sy),
                    ..*d
                })
                .collect();
            let mine: Vec<&MaskDetection> = masks
                .iter()
                .filter(|d| d.detection.image_id == item.image_id)
                .collect();
            let tinted = tint_masks(&item.image, &mine, item.original_size, min_score, 0.45);
            draw_detections(&tinted, &scaled, &item.boxes, &names, min_score)
        })
        .collect();
    save_grid(&drawn, 4, 320, path)
}

fn scale_box(b: &crate::data::BoundingBox, sx: f32, sy: f32) -> crate::data::BoundingBox {
    crate::data::BoundingBox {
        x1: b.x1 * sx,
        y1: b.y1 * sy,
        x2: b.x2 * sx,
        y2: b.y2 * sy,
    }
}

/// What a finished run measured on the test split.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TestReport {
    /// Method trained.
    pub method: Method,
    /// The detector ([`DetectConfig::detector_name`]; empty in runs from before it existed).
    #[serde(default)]
    pub detector: String,
    /// COCO's 12 numbers.
    pub coco: crate::eval::CocoStats,
    /// VOC all-point AP50 (mean over classes).
    pub voc_ap50: f64,
    /// Localization quality of the top detection per image.
    pub localization: Localization,
    /// Test images per second of detection (after decoding).
    pub images_per_sec: f64,
    /// Seconds spent training (this process; 0 when a finished run was tested again).
    pub train_seconds: f64,
    /// Test images.
    pub test_images: usize,
    /// Mask scores, for instance segmentation (Mask R-CNN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masks: Option<MaskReport>,
}

/// Trains `config`'s method on `data.train` (holding out `[data] val_fraction`), detects on
/// `data.test`, and writes `detections.json`, `metrics.json`, `pr_curve.png` and
/// `predictions.png` into `run`. `None` when training was paused (`pause_after`).
pub fn train_and_test(
    config: &DetectConfig,
    data: &LoadedSplits,
    run: &RunDir,
    device: &Device,
    resume: bool,
) -> Result<Option<(TestReport, Scores)>> {
    let started = Instant::now();
    let categories = serde_json::to_vec_pretty(&data.train.categories)
        .map_err(|e| crate::DetectError::invalid("categories", e.to_string()))?;
    run.write(CATEGORIES_FILE, &categories)?;
    let test_items = decode_items(&data.test, Some(config.data.max_side))?;
    let mut masks: Option<Vec<MaskDetection>> = None;
    let (detections, images_per_sec) = match config.method {
        Method::Localize | Method::Overfeat => {
            let (train, val) = hold_out(&data.train, config.data.val_fraction, config.seed);
            let trained = train_localizer(config, &train, &val, run, device, resume)?;
            if trained.paused {
                return Ok(None);
            }
            detect_with_localizer(config, &trained.model, &test_items, device)?
        }
        Method::FastRcnn => {
            let (train, val) = hold_out(&data.train, config.data.val_fraction, config.seed);
            let trained = train_fast_rcnn(config, &train, &val, run, device, resume)?;
            if trained.paused {
                return Ok(None);
            }
            let classes = data.train.categories.len();
            let keep = config.fast_rcnn.test_proposals;
            let (items, _) = items_with_proposals(config, &data.test, keep, "test")?;
            detect_fast_rcnn(config, &trained.model, classes, &items, device)?
        }
        Method::FasterRcnn => {
            let (train, val) = hold_out(&data.train, config.data.val_fraction, config.seed);
            let trained = train_faster_rcnn(config, &train, &val, run, device, resume)?;
            if trained.paused {
                return Ok(None);
            }
            let classes = data.train.categories.len();
            detect_faster_rcnn(config, &trained.model, classes, &test_items, device)?
        }
        Method::Yolo => {
            let (train, val) = hold_out(&data.train, config.data.val_fraction, config.seed);
            let trained = train_yolo(config, &train, &val, run, device, resume)?;
            if trained.paused {
                return Ok(None);
            }
            let classes = data.train.categories.len();
            detect_yolo(config, &trained.model, classes, &test_items, None, device)?
        }
        Method::Rcnn => {
            let (train, val) = hold_out(&data.train, config.data.val_fraction, config.seed);
            let outcome =
                crate::rcnn::train_and_detect(config, &train, &val, &data.test, run, device)?;
            eprint!("{}", outcome.report.summary());
            run.metrics().append(&json!({ "rcnn": &outcome.report }))?;
            (outcome.detections, outcome.images_per_sec)
        }
        Method::MaskRcnn => {
            let (train, val) = hold_out(&data.train, config.data.val_fraction, config.seed);
            let trained = train_mask_rcnn(config, &train, &val, run, device, resume)?;
            if trained.paused {
                return Ok(None);
            }
            let classes = data.train.categories.len();
            let (found, rate) =
                detect_mask_rcnn(config, &trained.model, classes, &test_items, device)?;
            masks = Some(found);
            let boxes = masks.iter().flatten().map(|d| d.detection).collect();
            (boxes, rate)
        }
    };
    let timing = Timing {
        images_per_sec,
        train_seconds: started.elapsed().as_secs_f64(),
    };
    let (report, scores) = write_test_results(
        config,
        &data.test,
        &test_items,
        (&detections, masks.as_deref()),
        timing,
        run.path(),
    )?;
    run.metrics().append(&json!({ "test": &report }))?;
    Ok(Some((report, scores)))
}

/// Mask scores of instance segmentation on the test split.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MaskReport {
    /// COCO's 12 numbers with mask IoU (`iouType='segm'`).
    pub coco: CocoStats,
    /// Mean mask IoU of the detections matched (mask IoU ≥ 0.5) to objects.
    pub mean_mask_iou: f64,
    /// How many matched.
    pub matched: usize,
}

/// Writes mask detections as COCO `segm` results (`mask_detections.json`) and their scores
/// (`mask_metrics.json`) into `dir`.
pub fn write_mask_results(
    test: &DetectionSet,
    found: &[MaskDetection],
    dir: &Path,
) -> Result<MaskReport> {
    write_coco_mask_results(found, test, &dir.join("mask_detections.json"))?;
    score_masks(test, found, dir)
}

/// Scores mask detections against `gt` (COCO segm AP, mean mask IoU of matched instances)
/// and writes them as `mask_metrics.json` into `dir`.
pub fn score_masks(gt: &DetectionSet, found: &[MaskDetection], dir: &Path) -> Result<MaskReport> {
    let coco = evaluate_coco_masks(gt, found)?;
    let (mean_mask_iou, matched) = mean_matched_mask_iou(gt, found);
    let report = MaskReport {
        coco: coco.stats,
        mean_mask_iou,
        matched,
    };
    let json = serde_json::to_vec_pretty(
        &json!({ "segm": &coco, "mean_mask_iou": mean_mask_iou, "matched": matched }),
    )
    .map_err(|e| crate::DetectError::invalid("mask metrics", e.to_string()))?;
    kiln_train::write_atomic(&dir.join("mask_metrics.json"), &json)?;
    Ok(report)
}

/// How fast a run detected, and how long it trained.
#[derive(Clone, Copy, Debug)]
struct Timing {
    images_per_sec: f64,
    train_seconds: f64,
}

/// Writes `detections` on the `test` split (`items`: its decoded images) into `dir` as
/// `detections.json`, `metrics.json`, `pr_curve.png` and `predictions.png` — and, with
/// `masks`, `mask_detections.json` and `mask_metrics.json` — and returns the report and
/// scores.
fn write_test_results(
    config: &DetectConfig,
    test: &DetectionSet,
    items: &[DetectionItem],
    (detections, masks): (&[Detection], Option<&[MaskDetection]>),
    timing: Timing,
    dir: &Path,
) -> Result<(TestReport, Scores)> {
    write_coco_results(detections, test, &dir.join("detections.json"))?;
    let scores = score_detections(test, detections, dir)?;
    draw_test_grid(
        items,
        detections,
        masks.unwrap_or_default(),
        test,
        &dir.join("predictions.png"),
        8,
        0.3,
    )?;
    let report = TestReport {
        method: config.method,
        detector: config.detector_name(),
        coco: scores.coco.stats,
        voc_ap50: scores.voc.map,
        localization: localization(test, detections),
        images_per_sec: timing.images_per_sec,
        train_seconds: timing.train_seconds,
        test_images: test.images.len(),
        masks: masks
            .map(|found| write_mask_results(test, found, dir))
            .transpose()?,
    };
    Ok((report, scores))
}

/// Tests the detector of the finished run at `run` again on `data.test` (with `batch` images a
/// step when given), writing `metrics.json`, `detections.json`, `pr_curve.png` and
/// `predictions.png` into `out`.
pub fn test_run(
    run: &RunDir,
    data: &LoadedSplits,
    batch: Option<usize>,
    out: &Path,
    device: &Device,
) -> Result<(TestReport, Scores)> {
    let (mut config, categories) = crate::predict::run_config(run)?;
    if let Some(batch) = batch {
        config.set_eval_batch(batch);
    }
    std::fs::create_dir_all(out).map_err(|e| crate::DetectError::io(out, e))?;
    let test_items = decode_items(&data.test, Some(config.data.max_side))?;
    let items = if config.method == Method::FastRcnn {
        let keep = config.fast_rcnn.test_proposals;
        items_with_proposals(&config, &data.test, keep, "test")?.0
    } else {
        test_items.clone()
    };
    let classes = categories.len();
    let (detections, masks, images_per_sec) = if config.method == Method::MaskRcnn {
        let (found, rate) =
            crate::predict::detect_masks_with_run(run, &config, classes, &items, device)?;
        let boxes = found.iter().map(|d| d.detection).collect();
        (boxes, Some(found), rate)
    } else {
        let (found, rate) = crate::predict::detect_with_run(run, &config, classes, &items, device)?;
        (found, None, rate)
    };
    let timing = Timing {
        images_per_sec,
        train_seconds: 0.0,
    };
    let (report, scores) = write_test_results(
        &config,
        &data.test,
        &test_items,
        (&detections, masks.as_deref()),
        timing,
        out,
    )?;
    let json = serde_json::to_vec_pretty(&report)
        .map_err(|e| crate::DetectError::invalid("test report", e.to_string()))?;
    let path = out.join(TEST_REPORT_FILE);
    std::fs::write(&path, json).map_err(|e| crate::DetectError::io(&path, e))?;
    Ok((report, scores))
}

/// The file [`test_run`] writes its [`TestReport`] to.
pub const TEST_REPORT_FILE: &str = "test_report.json";

/// The test report of `dir`: a [`test_run`] output's `test_report.json`, or a training run's
/// last test record ([`read_test_report`]).
pub fn find_test_report(dir: &Path) -> Result<TestReport> {
    let path = dir.join(TEST_REPORT_FILE);
    if path.exists() {
        let bytes = std::fs::read(&path).map_err(|e| crate::DetectError::io(&path, e))?;
        return serde_json::from_slice(&bytes)
            .map_err(|e| crate::DetectError::format(&path, format!("not a test report: {e}")));
    }
    read_test_report(dir)
}

/// The last test report in the `metrics.jsonl` of the run at `run` (what `train` measured).
pub fn read_test_report(run: &Path) -> Result<TestReport> {
    let path = run.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| crate::DetectError::io(&path, e))?;
    text.lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find_map(|mut value| value.get_mut("test").map(serde_json::Value::take))
        .ok_or_else(|| {
            crate::DetectError::format(
                &path,
                "no test record: did the run finish (`kiln-detect train` writes one at the end)?",
            )
        })
        .and_then(|value| {
            serde_json::from_value(value)
                .map_err(|e| crate::DetectError::format(&path, format!("bad test record: {e}")))
        })
}
