//! Running a trained run's detector on photos and drawing the results.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use kiln_train::RunDir;

use crate::batch::DetectionItem;
use crate::config::{DetectConfig, Method};
use crate::data::Category;
use crate::draw::{draw_detections, save_png};
use crate::proposals::selective_search;
use crate::run::CATEGORIES_FILE;
use crate::train::{detect_with_localizer, localizer_shape};
use crate::two_stage::faster::{detect_faster_rcnn, faster_rcnn_shape};
use crate::two_stage::pipeline::{detect_fast_rcnn, fast_rcnn_shape};
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

/// Detects objects in `images` with the detector of the run at `run_dir` and writes each photo
/// with its detections (score ≥ `min_score`) as `<out>/<stem>.png`; returns the written paths.
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
            })
        })
        .collect::<Result<_>>()?;
    let detections = match config.method {
        Method::Localize | Method::Overfeat => {
            let model = localizer_shape(&config, categories.len(), device)?;
            let model = kiln_train::load_module(model, &run.best_checkpoint()?)?.valid();
            detect_with_localizer(&config, &model, &items, device)?.0
        }
        Method::Rcnn => {
            crate::rcnn::predict_items(&run, &config, categories.len(), &items, device)?
        }
        Method::FastRcnn => {
            let classes = categories.len();
            let model = fast_rcnn_shape(&config, classes, device)?;
            let model = kiln_train::load_module(model, &run.best_checkpoint()?)?;
            let keep = config.fast_rcnn.test_proposals;
            let items: Vec<DetectionItem> = items
                .iter()
                .map(|item| DetectionItem {
                    proposals: selective_search(&item.image, &config.fast_rcnn.proposals)
                        .into_iter()
                        .take(keep)
                        .collect(),
                    ..item.clone()
                })
                .collect();
            detect_fast_rcnn(&config, &model, classes, &items, device)?.0
        }
        Method::FasterRcnn => {
            let classes = categories.len();
            let model = faster_rcnn_shape(&config, classes, device)?;
            let model = kiln_train::load_module(model, &run.best_checkpoint()?)?;
            detect_faster_rcnn(&config, &model, classes, &items, device)?.0
        }
    };
    std::fs::create_dir_all(out).map_err(|e| DetectError::io(out, e))?;
    let mut written = Vec::new();
    for (item, path) in items.iter().zip(images) {
        let mine: Vec<_> = detections
            .iter()
            .filter(|d| d.image_id == item.image_id)
            .copied()
            .collect();
        let drawn = draw_detections(&item.image, &mine, &[], &names, min_score);
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
        let target = out.join(format!("{stem}.png"));
        save_png(&drawn, &target)?;
        written.push(target);
    }
    Ok(written)
}
