//! A supervised training loop for image classifiers: per-epoch training and validation loss
//! and accuracy, images/s, learning-rate schedule, `metrics.jsonl`, curve plots, checkpoints
//! every epoch (last and best), exact resume, and a clean stop on a non-finite loss.

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::Dataset;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::ops::PadMode;
use burn::tensor::{Device, Tensor};
use kiln_data::augment::Sample;
use kiln_data::{ClassificationBatch, ClassificationBatcher, EpochCounter};
use serde::{Deserialize, Serialize};

use crate::filters::save_filters;
use crate::lookahead::{Lookahead, LookaheadSettings};
use crate::monitor::{UpdateMonitor, flagged};
use crate::optim::{LrSchedule, OptimizerConfig, ScheduleConfig};
use crate::params::{
    drop_gradients, freeze_batch_norm_statistics, matching, named_params, norm_biases,
    scale_gradients,
};
use crate::plot::{LinePlot, Series};
use crate::{
    Progress, Result, RunDir, TrainError, load_module, save_module, write_atomic, write_via_temp,
};

/// A model the trainer can fit: class scores `[batch, classes]` from images `[batch, c, h, w]`.
pub trait ImageClassifier: Module + Clone + Send + 'static {
    /// Class scores.
    fn scores(&self, images: Tensor<4>) -> Tensor<2>;

    /// Weights `[filters, channels, k, k]` of the first convolution, drawn as `filters.png`
    /// after training; `None` for networks without one.
    fn first_conv(&self) -> Option<Tensor<4>> {
        None
    }
}

/// How to train.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSettings {
    /// Passes over the training set.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Base learning rate.
    pub learning_rate: f64,
    /// Label smoothing ε (0 disables it).
    pub label_smoothing: f64,
    /// Data-loader worker threads. 0 or 1 keep the batch order deterministic (so a resumed
    /// run repeats an uninterrupted one); more threads deliver batches in completion order.
    pub workers: usize,
    /// Update rule.
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule.
    pub schedule: ScheduleConfig,
    /// Multiplies the learning rate (not the weight decay) of batch-norm shifts; SGD only.
    pub norm_bias_lr_scale: f64,
    /// Batch norms normalise with their running statistics and keep them (scale and shift still
    /// train): for fine-tuning pretrained networks on little data.
    pub freeze_batch_norm: bool,
    /// Learning-rate multipliers for groups of parameters (e.g. a pretrained backbone at a
    /// tenth of the head's rate); SGD only.
    pub lr_groups: Vec<LrGroup>,
    /// Parameters to stop training after some epochs.
    pub freeze: Vec<FreezeRule>,
    /// Weight-averaging lookahead (off when absent).
    pub lookahead: Option<LookaheadSettings>,
    /// Test-time augmentation for [`evaluate_with`] at the end of a run.
    pub tta: Tta,
    /// Steps between update-to-weight ratio measurements (0 disables them).
    pub monitor_every: usize,
    /// Stop after this epoch, checkpointed, as if the run were killed there (continue it with
    /// `resume`); set from the command line, never from a config file.
    #[serde(skip)]
    pub pause_after: Option<usize>,
}

/// Stop training the parameters under `param` (a dotted path or its prefix, e.g.
/// `whiten.bias`) once `after_epochs` epochs are done.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeRule {
    /// Dotted parameter path or prefix.
    pub param: String,
    /// Epochs of training before freezing.
    pub after_epochs: usize,
}

/// A learning-rate multiplier for the parameters under `param` (a dotted path prefix; empty
/// for every parameter) except those under any of `except`. It scales their gradients, which
/// with SGD scales their learning rate and leaves their weight decay alone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LrGroup {
    /// Dotted parameter path or prefix; `""` matches every parameter.
    #[serde(default)]
    pub param: String,
    /// Prefixes left out of the group (e.g. the classifier head).
    #[serde(default)]
    pub except: Vec<String>,
    /// Multiplier of the base learning rate.
    pub lr_scale: f64,
}

impl LrGroup {
    /// Ids of the trainable parameters in the group.
    pub fn ids(&self, params: &[crate::params::NamedParam]) -> Vec<burn::module::ParamId> {
        let excluded: Vec<_> = self
            .except
            .iter()
            .flat_map(|prefix| matching(params, prefix))
            .collect();
        let members = if self.param.is_empty() {
            params
                .iter()
                .filter(|p| p.trainable)
                .map(|p| p.id)
                .collect()
        } else {
            matching(params, &self.param)
        };
        members
            .into_iter()
            .filter(|id| !excluded.contains(id))
            .collect()
    }
}

/// Test-time augmentation: average the logits over transformed copies of each image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tta {
    /// The image alone.
    #[default]
    None,
    /// The image and its mirror image.
    Mirror,
    /// airbench's six views: half the weight on the image and its mirror, a quarter each on
    /// both of them shifted one pixel up-left and down-right (reflect padding).
    MirrorTranslate,
}

impl TrainSettings {
    /// Checks what [`fit`] cannot check later.
    pub fn validate(&self) -> Result<()> {
        self.optimizer.validate()?;
        if !(self.norm_bias_lr_scale > 0.0 && self.norm_bias_lr_scale.is_finite()) {
            return Err(TrainError::Invalid(
                "[train] norm_bias_lr_scale must be positive".into(),
            ));
        }
        if self.norm_bias_lr_scale != 1.0 && self.optimizer.name != crate::optim::OptimizerName::Sgd
        {
            return Err(TrainError::Invalid(
                "[train] norm_bias_lr_scale scales gradients, which equals a learning-rate scale only for sgd".into(),
            ));
        }
        for group in &self.lr_groups {
            if !(group.lr_scale > 0.0 && group.lr_scale.is_finite()) {
                return Err(TrainError::Invalid(format!(
                    "[[train.lr_groups]] '{}': lr_scale must be positive",
                    group.param
                )));
            }
            if group.lr_scale != 1.0 && self.optimizer.name != crate::optim::OptimizerName::Sgd {
                return Err(TrainError::Invalid(
                    "[[train.lr_groups]] scale gradients, which equals a learning-rate scale only for sgd".into(),
                ));
            }
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(TrainError::Invalid(
                "[train] label_smoothing must be in [0, 1)".into(),
            ));
        }
        Ok(())
    }
}

impl TrainSettings {
    /// The learning-rate schedule of a run with `per_epoch` steps an epoch.
    pub fn lr_schedule(&self, per_epoch: usize) -> Result<LrSchedule> {
        LrSchedule::new(
            self.schedule.clone(),
            self.learning_rate,
            per_epoch * self.epochs,
            per_epoch,
        )
    }

    /// Cross-entropy with the configured label smoothing.
    pub fn loss(&self, device: &Device) -> burn::nn::loss::CrossEntropyLoss {
        CrossEntropyLossConfig::new()
            .with_smoothing((self.label_smoothing > 0.0).then_some(self.label_smoothing as f32))
            .init(device)
    }
}

impl Default for TrainSettings {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 128,
            learning_rate: 0.01,
            label_smoothing: 0.0,
            workers: 1,
            optimizer: OptimizerConfig::default(),
            schedule: ScheduleConfig::default(),
            norm_bias_lr_scale: 1.0,
            freeze_batch_norm: false,
            lr_groups: Vec::new(),
            freeze: Vec::new(),
            lookahead: None,
            tta: Tta::None,
            monitor_every: 50,
            pause_after: None,
        }
    }
}

/// One epoch's numbers, as written to `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Training accuracy (on augmented batches, in training mode).
    pub train_accuracy: f64,
    /// Validation loss.
    pub val_loss: f64,
    /// Validation accuracy.
    pub val_accuracy: f64,
    /// Learning rate at the end of the epoch.
    pub learning_rate: f64,
    /// Training images per second.
    pub images_per_sec: f64,
    /// Geometric-mean update-to-weight ratio of each weight tensor over the epoch.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub update_ratios: BTreeMap<String, f64>,
}

/// What a resumable run stores next to its checkpoints.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ResumeState {
    epoch: usize,
    iteration: usize,
    best_val_accuracy: f64,
    history: Vec<EpochRecord>,
}

/// Data for [`fit`]: augmented training items, validation items and the shared batcher.
pub struct FitData<D, V> {
    /// Training dataset (augmented on access).
    pub train: D,
    /// Sets the augmentation epoch of `train`.
    pub epoch: EpochCounter,
    /// Validation dataset (not augmented).
    pub val: V,
    /// Batcher with the training split's normalisation.
    pub batcher: ClassificationBatcher,
}

fn loader<D: Dataset<Sample> + Clone + 'static>(
    data: &D,
    batcher: &ClassificationBatcher,
    batch: usize,
    shuffle: Option<u64>,
    workers: usize,
    device: &Device,
) -> Arc<dyn DataLoader<ClassificationBatch>> {
    let mut b = DataLoaderBuilder::new(batcher.clone())
        .batch_size(batch)
        .num_workers(workers)
        .set_device(device.clone());
    if let Some(seed) = shuffle {
        b = b.shuffle(seed);
    }
    b.build(data.clone())
}

fn correct(scores: &Tensor<2>, targets: &Tensor<1, burn::tensor::Int>) -> Result<usize> {
    let hits = scores
        .clone()
        .argmax(1)
        .squeeze_dim::<1>(1)
        .equal(targets.clone())
        .int()
        .sum()
        .into_data()
        .try_to_vec_as::<i64>()
        .map_err(|e| TrainError::Invalid(format!("reading accuracy: {e:?}")))?;
    Ok(hits[0] as usize)
}

/// Class scores of `images` averaged over the views of `tta`.
pub fn tta_scores<M: ImageClassifier>(model: &M, images: Tensor<4>, tta: Tta) -> Tensor<2> {
    let mirrored = |x: Tensor<4>| {
        let flipped = x.clone().flip([3]);
        (model.scores(x) + model.scores(flipped)).mul_scalar(0.5)
    };
    match tta {
        Tta::None => model.scores(images),
        Tta::Mirror => mirrored(images),
        Tta::MirrorTranslate => {
            let [b, c, h, w] = images.dims();
            let padded = images.clone().pad((1, 1, 1, 1), PadMode::Reflect);
            let up_left = padded.clone().slice([0..b, 0..c, 0..h, 0..w]);
            let down_right = padded.slice([0..b, 0..c, 2..h + 2, 2..w + 2]);
            let shifted = mirrored(up_left) + mirrored(down_right);
            mirrored(images).mul_scalar(0.5) + shifted.mul_scalar(0.25)
        }
    }
}

/// Loss and accuracy of `model` (in evaluation mode) over `data`.
pub fn evaluate<M: ImageClassifier, V: Dataset<Sample> + Clone + 'static>(
    model: &M,
    data: &V,
    batcher: &ClassificationBatcher,
    batch: usize,
    device: &Device,
) -> Result<(f64, f64)> {
    evaluate_with(model, data, batcher, batch, device, Tta::None)
}

/// [`evaluate`] with test-time augmentation.
pub fn evaluate_with<M: ImageClassifier, V: Dataset<Sample> + Clone + 'static>(
    model: &M,
    data: &V,
    batcher: &ClassificationBatcher,
    batch: usize,
    device: &Device,
    tta: Tta,
) -> Result<(f64, f64)> {
    let model = model.valid();
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let (mut loss, mut hits, mut n) = (0.0, 0usize, 0usize);
    for b in loader(data, batcher, batch, None, 1, device).iter() {
        let b = b.map_err(|e| TrainError::Invalid(format!("reading a batch: {e}")))?;
        let count = b.targets.dims()[0];
        let scores = tta_scores(&model, b.images, tta);
        hits += correct(&scores, &b.targets)?;
        loss += loss_fn.forward(scores, b.targets).into_scalar::<f64>() * count as f64;
        n += count;
    }
    Ok((loss / n.max(1) as f64, hits as f64 / n.max(1) as f64))
}

/// Trains `model` for `settings.epochs`, writing metrics, plots and checkpoints into `run`.
/// With `resume`, continues from the run's last checkpoint: same data order and augmentation
/// as an uninterrupted run with the same seed. Returns the final model and the history.
pub fn fit<M, D, V>(
    mut model: M,
    data: FitData<D, V>,
    settings: &TrainSettings,
    seed: u64,
    run: &RunDir,
    device: &Device,
    resume: bool,
) -> Result<(M, Vec<EpochRecord>)>
where
    M: ImageClassifier,
    D: Dataset<Sample> + Clone + 'static,
    V: Dataset<Sample> + Clone + 'static,
{
    settings.validate()?;
    let train_device = device.clone().autodiff();
    let per_epoch = data.train.len().div_ceil(settings.batch_size.max(1));
    if settings.batch_size == 0 || settings.epochs == 0 || data.train.is_empty() {
        return Err(TrainError::Invalid(
            "training needs data, epochs > 0 and batch_size > 0".into(),
        ));
    }
    let mut schedule = settings.lr_schedule(per_epoch)?;
    let mut optim = settings.optimizer.build()?;
    let checkpoints = run.checkpoints()?;
    let (model_path, optim_path, state_path) = (
        checkpoints.join("last.bpk"),
        checkpoints.join("last-optimizer.bin"),
        checkpoints.join("state.json"),
    );
    let mut state = ResumeState {
        epoch: 0,
        iteration: 0,
        best_val_accuracy: f64::NEG_INFINITY,
        history: Vec::new(),
    };
    if resume {
        let text =
            std::fs::read_to_string(&state_path).map_err(|e| TrainError::io(&state_path, e))?;
        state = serde_json::from_str(&text).map_err(|e| TrainError::Format {
            path: state_path.clone(),
            reason: e.to_string(),
        })?;
        model = load_module(model, &model_path)?;
        optim = optim.load(&optim_path).map_err(|e| TrainError::Format {
            path: optim_path.clone(),
            reason: format!("cannot load optimizer state: {e:?}"),
        })?;
        // Replay the plateau schedule's view of the finished epochs.
        for record in &state.history {
            schedule.observe_validation(record.val_loss);
        }
        eprintln!("resuming after epoch {}", state.epoch);
    }
    let mut model = model.train();
    if settings.freeze_batch_norm {
        model = freeze_batch_norm_statistics(model);
    }
    let params = named_params(&model);
    let scaled = if settings.norm_bias_lr_scale != 1.0 {
        norm_biases(&params)
    } else {
        Vec::new()
    };
    let mut lr_groups = Vec::new();
    for group in &settings.lr_groups {
        let ids = group.ids(&params);
        if ids.is_empty() {
            return Err(TrainError::Invalid(format!(
                "[[train.lr_groups]] param '{}' (except {:?}) names no trainable parameter",
                group.param, group.except
            )));
        }
        lr_groups.push((group.lr_scale, ids));
    }
    let mut freezes = Vec::new();
    for rule in &settings.freeze {
        let ids = matching(&params, &rule.param);
        if ids.is_empty() {
            let names: Vec<&str> = params
                .iter()
                .filter(|p| p.trainable)
                .map(|p| p.path.as_str())
                .collect();
            return Err(TrainError::Invalid(format!(
                "[[train.freeze]] param '{}' names no trainable parameter; they are: {}",
                rule.param,
                names.join(", ")
            )));
        }
        freezes.push((rule.after_epochs, ids));
    }
    let total_steps = per_epoch * settings.epochs;
    let lookahead_path = checkpoints.join("last-lookahead.bpk");
    let mut lookahead = match &settings.lookahead {
        Some(la) if resume => Some(Lookahead::load(la.clone(), &model, &lookahead_path)?),
        Some(la) => Some(Lookahead::new(la.clone(), &model)?),
        None => None,
    };
    let mut monitor = UpdateMonitor::new(&model, settings.monitor_every);
    let loss_fn = settings.loss(&train_device);
    for epoch in state.epoch..settings.epochs {
        data.epoch.set(epoch as u64);
        let shuffle = seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64);
        let batches = loader(
            &data.train,
            &data.batcher,
            settings.batch_size,
            Some(shuffle),
            settings.workers,
            &train_device,
        );
        let progress = Progress::new(
            data.train.len() as u64,
            &format!("epoch {}", epoch + 1),
            "img",
        );
        let (mut loss_sum, mut hits, mut seen) = (0.0, 0usize, 0usize);
        let mut lr = settings.learning_rate;
        for batch in batches.iter() {
            let b = batch.map_err(|e| TrainError::Invalid(format!("reading a batch: {e}")))?;
            let count = b.targets.dims()[0];
            let scores = model.scores(b.images);
            hits += correct(&scores, &b.targets)?;
            let loss = loss_fn.forward(scores, b.targets);
            let value = loss.clone().into_scalar::<f64>();
            if !value.is_finite() {
                return Err(TrainError::Invalid(format!(
                    "loss became {value} in epoch {} (iteration {}); the last good checkpoint is {}; lower the learning rate",
                    epoch + 1,
                    state.iteration,
                    model_path.display()
                )));
            }
            lr = schedule.lr(state.iteration);
            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            scale_gradients(&mut grads, &params, &scaled, settings.norm_bias_lr_scale);
            for (scale, ids) in &lr_groups {
                scale_gradients(&mut grads, &params, ids, *scale);
            }
            for (after, ids) in &freezes {
                if epoch >= *after {
                    drop_gradients(&mut grads, &params, ids);
                }
            }
            let before = monitor.before(&model, state.iteration);
            model = optim.step(lr, model, grads);
            monitor.after(&model, before);
            if let Some(la) = lookahead.as_mut() {
                model = la.after_step(model, state.iteration + 1, total_steps);
            }
            loss_sum += value * count as f64;
            seen += count;
            state.iteration += 1;
            progress.inc(count as u64);
            progress.status(format!("loss {:.3}", loss_sum / seen as f64));
        }
        let secs = progress.finish();
        if epoch + 1 == settings.epochs
            && let Some(la) = lookahead.as_mut()
        {
            model = la.finish(model);
        }
        let (val_loss, val_accuracy) = evaluate(
            &model,
            &data.val,
            &data.batcher,
            settings.batch_size,
            device,
        )?;
        schedule.observe_validation(val_loss);
        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: hits as f64 / seen.max(1) as f64,
            val_loss,
            val_accuracy,
            learning_rate: lr,
            images_per_sec: seen as f64 / secs.max(1e-9),
            update_ratios: monitor.take_epoch(),
        };
        let odd = flagged(&record.update_ratios);
        if !odd.is_empty() {
            let list: Vec<String> = odd.iter().map(|(n, r)| format!("{n} {r:.1e}")).collect();
            eprintln!(
                "update/weight ratios far from 1e-3 (learning rate too {}?): {}",
                if odd.iter().any(|(_, r)| *r > 1e-2) {
                    "high"
                } else {
                    "low"
                },
                list.join(", ")
            );
        }
        eprintln!(
            "epoch {:>3}: train loss {:.4} acc {:.2} %  val loss {:.4} acc {:.2} %  lr {:.2e}  {:.0} img/s",
            record.epoch,
            record.train_loss,
            100.0 * record.train_accuracy,
            record.val_loss,
            100.0 * record.val_accuracy,
            record.learning_rate,
            record.images_per_sec
        );
        run.metrics().append(&record)?;
        state.history.push(record.clone());
        state.epoch = epoch + 1;
        save_module(&model, &model_path)?;
        if val_accuracy > state.best_val_accuracy {
            state.best_val_accuracy = val_accuracy;
            save_module(&model, &checkpoints.join("best.bpk"))?;
        }
        if let Some(la) = &lookahead {
            la.save(&model, &lookahead_path)?;
        }
        write_via_temp(&optim_path, "", |tmp| {
            optim.save(tmp).map_err(|e| TrainError::Format {
                path: tmp.to_path_buf(),
                reason: format!("cannot save optimizer state: {e:?}"),
            })
        })?;
        write_atomic(
            &state_path,
            serde_json::to_string_pretty(&state)
                .expect("json")
                .as_bytes(),
        )?;
        plot_history(run, &state.history)?;
        if let Some(weights) = model.first_conv() {
            save_filters(weights, &run.file("filters.png"))?;
        }
        if settings.pause_after == Some(state.epoch) && state.epoch < settings.epochs {
            eprintln!("paused after epoch {}", state.epoch);
            break;
        }
    }
    Ok((model, state.history))
}

pub(crate) fn plot_history(run: &RunDir, history: &[EpochRecord]) -> Result<()> {
    let series = |name: &str, f: fn(&EpochRecord) -> f64| {
        Series::new(
            name,
            history.iter().map(|r| (r.epoch as f64, f(r))).collect(),
        )
    };
    LinePlot {
        title: "loss".into(),
        x_label: "epoch".into(),
        y_label: "cross-entropy".into(),
        series: vec![
            series("train", |r| r.train_loss),
            series("validation", |r| r.val_loss),
        ],
    }
    .save_png(&run.file("loss.png"))?;
    LinePlot {
        title: "accuracy".into(),
        x_label: "epoch".into(),
        y_label: "accuracy".into(),
        series: vec![
            series("train", |r| r.train_accuracy),
            series("validation", |r| r.val_accuracy),
        ],
    }
    .save_png(&run.file("accuracy.png"))?;
    let mut names: Vec<&String> = history
        .iter()
        .flat_map(|r| r.update_ratios.keys())
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Ok(());
    }
    let mut series: Vec<Series> = names
        .iter()
        .map(|&name| {
            Series::new(
                name.as_str(),
                history
                    .iter()
                    .filter_map(|r| {
                        r.update_ratios
                            .get(name)
                            .map(|v| (r.epoch as f64, v.log10()))
                    })
                    .collect(),
            )
        })
        .collect();
    series.push(Series::new(
        "healthy (1e-3)",
        history.iter().map(|r| (r.epoch as f64, -3.0)).collect(),
    ));
    LinePlot {
        title: "update / weight ratio".into(),
        x_label: "epoch".into(),
        y_label: "log10 ‖Δw‖ / ‖w‖".into(),
        series,
    }
    .save_png(&run.file("update_ratios.png"))
}
