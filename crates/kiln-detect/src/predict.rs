//! Running a trained run's detector on photos and drawing the results.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use kiln_train::RunDir;

use crate::batch::DetectionItem;
use crate::config::{DetectConfig, Method};
use crate::data::{Category, Detection};
use crate::draw::{draw_detections, save_png, tint_masks};
use crate::proposals::selective_search;
use crate::run::CATEGORIES_FILE;
use crate::train::{detect_with_localizer, localizer_shape};
use crate::two_stage::faster::{detect_faster_rcnn, faster_rcnn_shape};
use crate::two_stage::pipeline::{detect_fast_rcnn, fast_rcnn_shape};
use crate::yolo::{detect_yolo, yolo_shape};
use crate::{DetectError, Result};

/// The config and categories a run was trained with.
pub fn run_config(run: &RunDir) -> Result<(DetectConfig, Vec<Category>)> {
    let config_path = run.file("config.toml");
    let text =
        std::fs::read_to_string(&config_path).map_err(|e| DetectError::io(&config_path, e))?;
    let config: DetectConfig = toml::from_str(&text)
        .map_err(|e| DetectError::format(&config_path, format!("not a kiln-detect config: {e}")))?;
    let cat_path = run.file(CATEGORIES_FILE);
    let bytes = std::fs::read(&cat_path).map_err(|e| {
        DetectError::io(
            &cat_path,
            std::io::Error::new(
                e.kind(),
                format!("{e}; is this a finished kiln-detect train run?"),
            ),
        )
    })?;
    let categories: Vec<Category> = serde_json::from_slice(&bytes)
        .map_err(|e| DetectError::format(&cat_path, format!("not a category list: {e}")))?;
    Ok((config, categories))
}

/// Detections (original-image pixels) of the trained detector of `run` (trained with `config`
/// on `classes` classes) on `items`, with the images per second. Fast R-CNN items without
/// proposals get selective search's.
pub fn detect_with_run(
    run: &RunDir,
    config: &DetectConfig,
    classes: usize,
    items: &[DetectionItem],
    device: &Device,
) -> Result<(Vec<Detection>, f64)> {
    match config.method {
        Method::Localize | Method::Overfeat => {
            let model = localizer_shape(config, classes, device)?;
            let model = kiln_train::load_module(model, &run.best_checkpoint()?)?.valid();
            detect_with_localizer(config, &model, items, device)
        }
        Method::Rcnn => {
            let start = std::time::Instant::now();
            let found = crate::rcnn::predict_items(run, config, classes, items, device)?;
            let seconds = start.elapsed().as_secs_f64().max(1e-9);
            Ok((found, items.len() as f64 / seconds))
        }
        Method::FastRcnn => {
            let model = fast_rcnn_shape(config, classes, device)?;
            let model = kiln_train::load_module(model, &run.best_checkpoint()?)?;
            let keep = config.fast_rcnn.test_proposals;
            let items: Vec<DetectionItem> = items
                .iter()
                .map(|item| DetectionItem {
                    proposals: if item.proposals.is_empty() {
                        selective_search(&item.image, &config.fast_rcnn.proposals)
                            .into_iter()
                            .take(keep)
                            .collect()
                    } else {
                        item.proposals.clone()
                    },
                    ..item.clone()
                })
                .collect();
            detect_fast_rcnn(config, &model, classes, &items, device)
        }
        Method::FasterRcnn => {
            let model = faster_rcnn_shape(config, classes, device)?;
            let model = kiln_train::load_module(model, &run.best_checkpoint()?)?;
            detect_faster_rcnn(config, &model, classes, items, device)
        }
        Method::Yolo => {
            let model = yolo_shape(config, classes, device)?;
            let model = kiln_train::load_module(model, &run.best_checkpoint()?)?;
            detect_yolo(config, &model, classes, items, None, device)
        }
        Method::MaskRcnn => {
            let (found, rate) = detect_masks_with_run(run, config, classes, items, device)?;
            Ok((found.into_iter().map(|d| d.detection).collect(), rate))
        }
    }
}

/// Detections with masks (original-image pixels) of the Mask R-CNN run `run` on `items`,
/// with the images per second.
pub fn detect_masks_with_run(
    run: &RunDir,
    config: &DetectConfig,
    classes: usize,
    items: &[DetectionItem],
    device: &Device,
) -> Result<(Vec<crate::data::MaskDetection>, f64)> {
    use crate::two_stage::mask_rcnn::{detect_mask_rcnn, mask_rcnn_shape};
    let model = mask_rcnn_shape(config, classes, device)?;
    let model = kiln_train::load_module(model, &run.best_checkpoint()?)?;
    detect_mask_rcnn(config, &model, classes, items, device)
}

/// Detects objects in `images` with the detector of the run at `run_dir` and writes each photo
/// with its detections (score ≥ `min_score`; Mask R-CNN's masks as translucent class colours)
/// as `<out>/<stem>.png`; returns the written paths.
pub fn predict_files(
    run_dir: &Path,
    images: &[PathBuf],
    out: &Path,
    min_score: f32,
    device: &Device,
) -> Result<Vec<PathBuf>> {
    let run = RunDir::open(run_dir)?;
    let (config, categories) = run_config(&run)?;
    let names: Vec<String> = categories.iter().map(|c| c.name.clone()).collect();
    let items: Vec<DetectionItem> = images
        .iter()
        .enumerate()
        .map(|(k, path)| {
            let image = kiln_data::image_folder::decode_image(path, None)?.to_rgb();
            let size = [image.width as u32, image.height as u32];
            Ok(DetectionItem {
                image,
                boxes: vec![],
                labels: vec![],
                image_id: k as u64 + 1,
                original_size: size,
                proposals: vec![],
                masks: Vec::new(),
            })
        })
        .collect::<Result<_>>()?;
    let classes = categories.len();
    let masks = if config.method == Method::MaskRcnn {
        detect_masks_with_run(&run, &config, classes, &items, device)?.0
    } else {
        Vec::new()
    };
    let detections = if masks.is_empty() {
        detect_with_run(&run, &config, classes, &items, device)?.0
    } else {
        masks.iter().map(|d| d.detection).collect()
    };
    std::fs::create_dir_all(out).map_err(|e| DetectError::io(out, e))?;
    let mut written = Vec::new();
    for (item, path) in items.iter().zip(images) {
        let mine: Vec<_> = detections
            .iter()
            .filter(|d| d.image_id == item.image_id)
            .copied()
            .collect();
        let my_masks: Vec<_> = masks
            .iter()
            .filter(|d| d.detection.image_id == item.image_id)
            .collect();
        let tinted = tint_masks(&item.image, &my_masks, item.original_size, min_score, 0.45);
        let drawn = draw_detections(&tinted, &mine, &[], &names, min_score);
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
        let target = out.join(format!("{stem}.png"));
        save_png(&drawn, &target)?;
        written.push(target);
    }
    Ok(written)
}
