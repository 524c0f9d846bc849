//! Training detectors through kiln-train's loop (the generic [`fit_detector`], the backbone a
//! config names) and the localization and OverFeat detectors' own training and testing.

use std::sync::Arc;
use std::time::Instant;

use burn::data::dataloader::batcher::Batcher;
use burn::module::Module;
use burn::tensor::Device;
use kiln_data::order::aspect_ratio_groups;
use kiln_nets::zoo::Network;
use kiln_train::task::Task;
use kiln_train::trainer::{EpochRecord, FitData, fit};
use kiln_train::{Progress, RunDir};
use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::batch::{DetectionBatch, DetectionBatcher, DetectionItem, ResizeRule};
use crate::config::{DetectConfig, Method};
use crate::data::{Detection, DetectionSet};
use crate::dataset::decode_items;
use crate::localize::{LocalizeTask, Localizer, LocalizerConfig, localize_image, sliding_windows};
use crate::{DetectError, Result};

/// Splits `fraction` of `set`'s images off (seeded shuffle) for validation: `(train, val)`.
pub fn hold_out(set: &DetectionSet, fraction: f32, seed: u64) -> (DetectionSet, DetectionSet) {
    let mut order: Vec<usize> = (0..set.images.len()).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(
        seed ^ 0x0005_EED0_F7A1,
    ));
    let n_val = ((set.images.len() as f32 * fraction).round() as usize)
        .min(set.images.len().saturating_sub(1));
    let mut val_ids: Vec<usize> = order[..n_val].to_vec();
    val_ids.sort_unstable();
    let pick = |keep: &dyn Fn(usize) -> bool| DetectionSet {
        categories: set.categories.clone(),
        images: (0..set.images.len())
            .filter(|&i| keep(i))
            .map(|i| set.images[i].clone())
            .collect(),
    };
    let is_val = |i: usize| val_ids.binary_search(&i).is_ok();
    (pick(&|i| !is_val(i)), pick(&is_val))
}

/// The backbone a config asks for: published or local weights, or a random initialisation.
pub fn backbone(config: &DetectConfig, device: &Device) -> Result<Network> {
    config
        .backbone
        .load(device)
        .map_err(|e| DetectError::invalid("[backbone]", e.to_string()))
}

/// The head sizes of a config.
fn head(config: &DetectConfig, classes: usize) -> LocalizerConfig {
    let l = &config.localize;
    LocalizerConfig {
        classes,
        cells: l.input_size / 32,
        reduced: l.reduced,
        hidden: l.hidden,
        dropout: l.dropout,
    }
}

/// The localization network of a config, with `classes` object classes, from its backbone.
pub fn localizer(config: &DetectConfig, classes: usize, device: &Device) -> Result<Localizer> {
    Ok(head(config, classes).init(backbone(config, device)?, device))
}

/// The config's backbone architecture with untrained weights (to load a checkpoint into).
pub fn backbone_shape(config: &DetectConfig, device: &Device) -> Result<Network> {
    config
        .backbone
        .shape(device)
        .map_err(|e| DetectError::invalid("[backbone]", e.to_string()))
}

/// The same network shape with untrained weights (to load a checkpoint into).
pub fn localizer_shape(
    config: &DetectConfig,
    classes: usize,
    device: &Device,
) -> Result<Localizer> {
    Ok(head(config, classes).init(backbone_shape(config, device)?, device))
}

/// The training task of a config.
pub fn localize_task(config: &DetectConfig) -> LocalizeTask {
    let l = &config.localize;
    LocalizeTask {
        batcher: DetectionBatcher::new(ResizeRule::Square { size: l.input_size }),
        box_loss: l.box_loss,
        box_weight: l.box_weight,
        min_object_fraction: l.min_object_fraction,
    }
}

/// What training a detector in kiln-train's loop produced.
pub struct Trained<M> {
    /// The final model (the best checkpoint when there was validation data).
    pub model: M,
    /// Per-epoch records.
    pub history: Vec<EpochRecord>,
    /// Whether training stopped early on request (`pause_after`).
    pub paused: bool,
}

/// What training a localizer produced.
pub type TrainedLocalizer = Trained<Localizer>;

/// The grid of augmented training items a run writes before training.
pub const TRAINING_SAMPLES_FILE: &str = "train_samples.png";

/// Trains `model` on `task` in kiln-train's loop with `train_items` (augmented by the config's
/// `[[augment]]` steps) and `val_items`, writing [`TRAINING_SAMPLES_FILE`], metrics, plots and
/// checkpoints into `run`, and
/// returns the checkpoint that validated best (as torchvision's references report).
#[allow(clippy::too_many_arguments)]
pub fn fit_detector<T>(
    task: &T,
    model: T::Model,
    train_items: Vec<DetectionItem>,
    val_items: Vec<DetectionItem>,
    config: &DetectConfig,
    run: &RunDir,
    device: &Device,
    resume: bool,
) -> Result<Trained<T::Model>>
where
    T: Task<Item = DetectionItem, Batch = DetectionBatch, Batcher = DetectionBatcher>,
{
    let has_val = !val_items.is_empty();
    let sizes: Vec<[usize; 2]> = train_items
        .iter()
        .map(|item| [item.image.width, item.image.height])
        .collect();
    let mut data = FitData::augmented(
        Arc::new(train_items),
        Arc::new(val_items),
        &config.augment,
        config.seed,
    )?;
    if config.data.aspect_ratio_groups > 0 {
        data = data.with_batch_groups(aspect_ratio_groups(&sizes, config.data.aspect_ratio_groups));
    }
    if !resume {
        let samples = run.file(TRAINING_SAMPLES_FILE);
        crate::draw::save_training_samples(&data.train, 16, &samples)?;
    }
    let (model, history) = fit(
        task,
        model,
        data,
        &config.train,
        config.seed,
        run,
        device,
        resume,
    )?;
    let paused = config.train.stopped_early(&history);
    let model = if has_val { run.best_or(model)? } else { model };
    Ok(Trained {
        model,
        history,
        paused,
    })
}

/// [`fit_detector`] on the images of `train` and `val`, decoded with their long side at most
/// `[data] max_side`.
#[allow(clippy::too_many_arguments)]
pub fn fit_on_sets<T>(
    task: &T,
    model: T::Model,
    train: &DetectionSet,
    val: &DetectionSet,
    config: &DetectConfig,
    run: &RunDir,
    device: &Device,
    resume: bool,
) -> Result<Trained<T::Model>>
where
    T: Task<Item = DetectionItem, Batch = DetectionBatch, Batcher = DetectionBatcher>,
{
    let max_side = Some(config.data.max_side);
    fit_detector(
        task,
        model,
        decode_items(train, max_side)?,
        decode_items(val, max_side)?,
        config,
        run,
        device,
        resume,
    )
}

/// Trains the localization network of `config` on `train` (validating on `val`), writing
/// metrics, plots and checkpoints into `run`.
pub fn train_localizer(
    config: &DetectConfig,
    train: &DetectionSet,
    val: &DetectionSet,
    run: &RunDir,
    device: &Device,
    resume: bool,
) -> Result<TrainedLocalizer> {
    let model = localizer(config, train.categories.len(), device)?;
    fit_on_sets(
        &localize_task(config),
        model,
        train,
        val,
        config,
        run,
        device,
        resume,
    )
}

/// Detections on `items` by the config's method (localization or OverFeat), with the
/// images per second it ran at.
pub fn detect_with_localizer(
    config: &DetectConfig,
    model: &Localizer,
    items: &[DetectionItem],
    device: &Device,
) -> Result<(Vec<Detection>, f64)> {
    let model = model.valid();
    let progress = Progress::new(items.len() as u64, "detect", "img");
    let start = Instant::now();
    let mut found = Vec::new();
    match config.method {
        Method::Overfeat => {
            for item in items {
                found.extend(sliding_windows(&model, item, &config.overfeat, device)?);
                progress.inc(1);
            }
        }
        _ => {
            let batcher = localize_task(config).batcher;
            for chunk in items.chunks(config.localize.eval_batch.max(1)) {
                let batch = batcher.batch(chunk.to_vec(), device);
                found.extend(localize_image(&model, batch)?);
                progress.inc(chunk.len() as u64);
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    progress.finish();
    Ok((found, items.len() as f64 / seconds.max(1e-9)))
}
