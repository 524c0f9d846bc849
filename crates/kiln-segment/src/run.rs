//! A segmentation run from start to end: read and check the data, weigh the classes, build or
//! grow the FCN, train it in kiln-train's loop, and score the checkpoint the config reports
//! (the last epoch's, or the best on validation) on the validation split (`metrics.json`,
//! `confusion.png`, `predictions.png`). Also scoring and loading a finished run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::data::dataloader::batcher::Batcher;
use burn::module::Module;
use burn::tensor::Device;
use kiln_train::trainer::{FitData, fit};
use kiln_train::{Progress, RunDir};
use serde::Serialize;
use serde_json::json;

use crate::balance::ClassPixels;
use crate::batch::{SegmentationBatcher, SegmentationItem};
use crate::config::{Balance, Checkpoint, SegmentConfig};
use crate::data::{find_root, read_split};
use crate::dataset::decode_split;
use crate::fcn::Fcn;
use crate::metrics::SegmentationMetrics;
use crate::task::{Scored, SegmentTask};
use crate::{Result, SegmentError};

/// The decoded training and validation splits of a config.
pub struct SegmentationData {
    /// The folder holding the splits.
    pub root: PathBuf,
    /// Training items.
    pub train: Vec<SegmentationItem>,
    /// Validation items.
    pub val: Vec<SegmentationItem>,
}

/// Finds, reads and checks both splits of `config` under `path` (a `.tar.gz` is extracted
/// into `cache` once).
pub fn load_data(config: &SegmentConfig, path: &Path, cache: &Path) -> Result<SegmentationData> {
    let data = &config.data;
    let root = find_root(path, &data.train_split, cache)?;
    let classes = &data.classes;
    let train = decode_split(&read_split(&root, &data.train_split)?, classes)?;
    let val = decode_split(&read_split(&root, &data.val_split)?, classes)?;
    Ok(SegmentationData { root, train, val })
}

/// The loss's class weights for `config` from the training labels (`None`: unweighted).
pub fn class_weights(config: &SegmentConfig, train: &[SegmentationItem]) -> Option<Vec<f32>> {
    match config.balance {
        Balance::None => None,
        Balance::MedianFrequency => {
            let mut counts = ClassPixels::new(config.data.classes.len());
            for item in train {
                counts.add(&item.mask);
            }
            Some(
                counts
                    .median_frequency_weights()
                    .into_iter()
                    .map(|w| w as f32)
                    .collect(),
            )
        }
    }
}

/// The config a run was trained with (its `config.toml`).
pub fn run_config(run: &RunDir) -> Result<SegmentConfig> {
    let path = run.file("config.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| SegmentError::io(&path, e))?;
    toml::from_str(&text).map_err(|e| {
        SegmentError::invalid(
            path.display().to_string(),
            format!("not a kiln-segment config: {e}"),
        )
    })
}

/// The trained FCN of the run at `dir` (the checkpoint its config reports) and the run's config.
pub fn load_run(dir: &Path, device: &Device) -> Result<(SegmentConfig, Fcn)> {
    let run = RunDir::open(dir)?;
    let config = run_config(&run)?;
    let shape = config.fcn.init(
        config.backbone.shape(device)?,
        config.data.classes.len(),
        device,
    )?;
    let checkpoint = match config.checkpoint {
        Checkpoint::Last => run.last_checkpoint()?,
        Checkpoint::Best => run.best_checkpoint()?,
    };
    let model = kiln_train::load_module(shape, &checkpoint)?;
    Ok((config, model))
}

/// The network a run starts from: grown from the `init` run's trained FCN, or the config's
/// backbone with new heads.
pub fn initial_model(config: &SegmentConfig, device: &Device) -> Result<Fcn> {
    let classes = config.data.classes.len();
    match &config.init {
        None => config
            .fcn
            .init(config.backbone.load(device)?, classes, device),
        Some(dir) => {
            let (from, model) = load_run(dir, device)?;
            if from.data.classes != config.data.classes {
                return Err(SegmentError::invalid(
                    "init",
                    format!(
                        "{} was trained on other classes ({} of them); start from a run with this config's classes",
                        dir.display(),
                        from.data.classes.len()
                    ),
                ));
            }
            eprintln!(
                "{} from the trained {} of {}",
                config.fcn.variant.name(),
                model.variant().name(),
                dir.display()
            );
            model.grown(&config.fcn, device)
        }
    }
}

/// What a finished run measured on the validation split.
#[derive(Clone, Debug, Serialize)]
pub struct ValReport {
    /// FCN-32s, 16s or 8s.
    pub model: String,
    /// The metrics.
    pub metrics: SegmentationMetrics,
    /// Per-class IoU with the class names.
    pub class_iou: Vec<(String, Option<f64>)>,
    /// Validation images per second (forward pass and scoring, after decoding).
    pub images_per_sec: f64,
    /// Seconds spent training (this process).
    pub train_seconds: f64,
    /// Validation images.
    pub images: usize,
}

impl ValReport {
    /// A plain-text table of the report.
    pub fn summary(&self) -> String {
        let m = &self.metrics;
        let mut text = format!(
            "{} on {} images: mIoU {:.2} %, pixel accuracy {:.2} %, mean class accuracy {:.2} %, frequency-weighted IoU {:.2} % ({:.2} images/s)\n",
            self.model,
            self.images,
            100.0 * m.mean_iou,
            100.0 * m.pixel_accuracy,
            100.0 * m.mean_class_accuracy,
            100.0 * m.frequency_weighted_iou,
            self.images_per_sec
        );
        for (name, iou) in &self.class_iou {
            let value = iou.map_or("–".to_string(), |v| format!("{:.2} %", 100.0 * v));
            text.push_str(&format!("  {name:<12} {value}\n"));
        }
        text
    }
}

/// Scores `model` on `items` `eval_batch` at a time: confusion matrix, loss, pictures' rows, and
/// the images per second.
pub fn score_items(
    task: &SegmentTask,
    model: &Fcn,
    items: &[SegmentationItem],
    eval_batch: usize,
    device: &Device,
) -> Result<(Scored, f64)> {
    let model = model.valid();
    let progress = Progress::new(items.len() as u64, "score", "img");
    let started = Instant::now();
    let batcher = task.batcher.clone();
    let mut batches = items.chunks(eval_batch.max(1)).map(|chunk| {
        progress.inc(chunk.len() as u64);
        Ok(batcher.batch(chunk.to_vec(), device))
    });
    let scored = task.score(&model, &mut batches)?;
    progress.finish();
    let rate = items.len() as f64 / started.elapsed().as_secs_f64().max(1e-9);
    Ok((scored, rate))
}

/// Writes `metrics.json`, `confusion.png` and `predictions.png` of `scored` into `dir` and
/// returns the report.
pub fn report(
    task: &SegmentTask,
    scored: &Scored,
    model: &Fcn,
    images_per_sec: f64,
    train_seconds: f64,
    dir: &Path,
) -> Result<ValReport> {
    let metrics = scored.confusion.metrics();
    let class_iou = task
        .classes
        .classes
        .iter()
        .zip(&metrics.class_iou)
        .map(|(c, iou)| (c.name.clone(), *iou))
        .collect();
    let report = ValReport {
        model: model.variant().name(),
        metrics,
        class_iou,
        images_per_sec,
        train_seconds,
        images: scored.images,
    };
    let title = format!(
        "{} confusion (mIoU {:.1} %)",
        report.model,
        100.0 * report.metrics.mean_iou
    );
    task.draw(scored, &title, dir)?;
    let text = serde_json::to_vec_pretty(&report)
        .map_err(|e| SegmentError::invalid("metrics.json", e.to_string()))?;
    kiln_train::write_atomic(&dir.join("metrics.json"), &text)?;
    Ok(report)
}

/// The task of `config` with `weights`, drawing into `pictures`.
pub fn task(
    config: &SegmentConfig,
    weights: Option<Vec<f32>>,
    pictures: Option<PathBuf>,
) -> SegmentTask {
    SegmentTask {
        batcher: SegmentationBatcher::default(),
        classes: config.data.classes.clone(),
        weights,
        pictures,
        pictured: config.pictured,
        mirror: config.mirror_tta(),
    }
}

/// Trains `config` on `data.train`, scores the checkpoint it reports (the final weights, or
/// the epoch of highest validation mIoU) on `data.val` and writes the run's pictures and
/// `metrics.json`. `None` when training was paused (`pause_after`).
pub fn train_and_evaluate(
    config: &SegmentConfig,
    data: SegmentationData,
    run: &RunDir,
    device: &Device,
    resume: bool,
) -> Result<Option<ValReport>> {
    let started = Instant::now();
    let weights = class_weights(config, &data.train);
    if let Some(w) = &weights {
        let shown: Vec<String> = config
            .data
            .classes
            .classes
            .iter()
            .zip(w)
            .map(|(c, w)| format!("{} {w:.3}", c.name))
            .collect();
        eprintln!("median-frequency class weights: {}", shown.join(", "));
    }
    write_weights(run, weights.as_deref())?;
    let task = task(config, weights, Some(run.path().to_path_buf()));
    let model = initial_model(config, device)?;
    let val = Arc::new(data.val);
    let fit_data = FitData::augmented(
        Arc::new(data.train),
        val.clone(),
        &config.augment,
        config.seed,
    )?;
    let (model, history) = fit(
        &task,
        model,
        fit_data,
        &config.train,
        config.seed,
        run,
        device,
        resume,
    )?;
    if config.train.stopped_early(&history) {
        return Ok(None);
    }
    let train_seconds = started.elapsed().as_secs_f64();
    let model = match config.checkpoint {
        Checkpoint::Last => model,
        Checkpoint::Best => run.best_or(model)?,
    };
    let (scored, rate) = score_items(&task, &model, &val, config.eval_batch, device)?;
    let report = report(&task, &scored, &model, rate, train_seconds, run.path())?;
    run.metrics().append(&json!({ "val": &report }))?;
    Ok(Some(report))
}

/// Scores the trained run at `dir` on `split` of the data at `path`, writing `metrics.json`,
/// `confusion.png` and `predictions.png` into `out`.
pub fn evaluate_run(
    dir: &Path,
    path: &Path,
    split: &str,
    cache: &Path,
    out: &Path,
    device: &Device,
) -> Result<ValReport> {
    let (config, model) = load_run(dir, device)?;
    let root = find_root(path, split, cache)?;
    let items = decode_split(&read_split(&root, split)?, &config.data.classes)?;
    std::fs::create_dir_all(out).map_err(|e| SegmentError::io(out, e))?;
    // The loss is reported with the weights the run trained with.
    let weights = read_weights(&RunDir::open(dir)?)?;
    let task = task(&config, weights, None);
    let (scored, rate) = score_items(&task, &model, &items, config.eval_batch, device)?;
    report(&task, &scored, &model, rate, 0.0, out)
}

/// The run file holding the loss's class weights (`null`: unweighted).
pub const WEIGHTS_FILE: &str = "class_weights.json";

fn write_weights(run: &RunDir, weights: Option<&[f32]>) -> Result<()> {
    let text = serde_json::to_vec(&weights)
        .map_err(|e| SegmentError::invalid(WEIGHTS_FILE, e.to_string()))?;
    run.write(WEIGHTS_FILE, &text)?;
    Ok(())
}

/// The class weights a run trained with (`None` when it was unweighted or predates the file).
pub fn read_weights(run: &RunDir) -> Result<Option<Vec<f32>>> {
    let path = run.file(WEIGHTS_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let bytes = std::fs::read(&path).map_err(|e| SegmentError::io(&path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        SegmentError::invalid(
            path.display().to_string(),
            format!("not a list of weights: {e}"),
        )
    })
}
