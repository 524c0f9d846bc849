//! The one training loop of kiln, generic over the [`Task`]: per-epoch training and validation
//! loss and task metrics, images/s, learning-rate schedule, `metrics.jsonl`, curve plots,
//! checkpoints every epoch (last and best), exact resume, and a clean stop on a non-finite
//! loss.
//!
//! [`fit`] reads as its parts, one file each: the run's gradient policy (`policy.rs`:
//! optimizer, learning-rate groups, freeze rules), what is saved after each epoch and read
//! back (`resume.rs`), one pass over the training data (`epoch.rs`), the epoch records and
//! their plots (`record.rs`), and the task's own evaluation.
//!
//! # More than one device
//!
//! A step is `task.train_step` → `loss.backward()` → [`GradientsParams`] → the optimizer.
//! Data-parallel training slots in at that seam with Burn's own machinery: burn-train's DDP
//! strategy runs the same step on a model replica per device, all-reduces the gradients with
//! burn-collective, and hands the optimizer a `MultiGradientsParams`
//! (`ModuleOptimizer::step_multi`, which the optimizer built here already supports). The loop
//! would take a list of devices and split each batch across them; the task, the policy, the
//! checkpoints and the records stay as they are. kiln does not wire this up yet: this
//! machine's CPU backends expose one device, so it could not be tested here.
//!
//! [`GradientsParams`]: burn::optim::GradientsParams

mod epoch;
mod policy;
mod record;
mod resume;
mod settings;

use std::collections::BTreeMap;

use burn::data::dataset::Dataset;
use burn::module::Module;
use burn::tensor::{Device, FloatDType};
use std::sync::Arc;

use kiln_data::augment::TransformConfig;
use kiln_data::order::{Reordered, grouped_order};
use kiln_data::{Augmentable, AugmentedItems, EpochCounter};

pub use record::EpochRecord;
pub(crate) use record::plot_history;
pub use settings::{FreezeRule, LrGroup, TrainSettings};

use crate::filters::save_filters;
use crate::lookahead::Lookahead;
use crate::mixed::MixedPrecision;
use crate::monitor::{UpdateMonitor, flagged};
use crate::params::freeze_batch_norm_statistics;
use crate::task::{Evaluation, Task};
use crate::{Result, RunDir, TrainError};
use epoch::{EpochParts, batches, loader, train_epoch};
use policy::GradientPolicy;
use resume::{Checkpoints, ResumeState};

/// Data for [`fit`]: training items (augmented on access) and validation items.
pub struct FitData<D, V> {
    /// Training dataset.
    pub train: D,
    /// Sets the augmentation epoch of `train` (a default counter when it has none).
    pub epoch: EpochCounter,
    /// Validation dataset (not augmented).
    pub val: V,
    /// A group per training item (e.g. [`kiln_data::order::aspect_ratio_groups`]): each
    /// epoch's batches are then drawn one group at a time ([`kiln_data::order::grouped_order`])
    /// instead of from one shuffle of all items.
    pub batch_groups: Option<Vec<usize>>,
}

impl<T: Augmentable> FitData<AugmentedItems<T>, AugmentedItems<T>> {
    /// In-memory `train` items augmented by the `[[augment]]` `steps` with `seed`, and `val`
    /// items as they are.
    pub fn augmented(
        train: Arc<Vec<T>>,
        val: Arc<Vec<T>>,
        steps: &[TransformConfig],
        seed: u64,
    ) -> Result<Self> {
        let train = AugmentedItems::new(train, steps, seed)?;
        Ok(Self {
            epoch: train.epoch_counter(),
            train,
            val: AugmentedItems::plain(val),
            batch_groups: None,
        })
    }
}

impl<D, V> FitData<D, V> {
    /// Batches drawn one group of `groups` (one per training item) at a time.
    pub fn with_batch_groups(self, groups: Vec<usize>) -> Self {
        Self {
            batch_groups: Some(groups),
            ..self
        }
    }
}

/// Evaluates `model` (switched to evaluation mode) on `data` with `task`, `batch` items at a
/// time, on `device` (the inner device, without autodiff).
pub fn evaluate<T: Task, V: Dataset<T::Item> + Clone + 'static>(
    task: &T,
    model: &T::Model,
    data: &V,
    batch: usize,
    device: &Device,
) -> Result<Evaluation> {
    let model = model.valid();
    let loader = loader(task, data, batch.max(1), None, 1, device);
    task.evaluate(&model, &mut batches(&loader))
}

/// Trains `model` on `task` for `settings.epochs`, writing metrics, plots and checkpoints into
/// `run`. With `resume`, continues from the run's last checkpoint: same data order and
/// augmentation as an uninterrupted run with the same seed. Returns the final model and the
/// history.
#[allow(clippy::too_many_arguments)]
pub fn fit<T, D, V>(
    task: &T,
    model: T::Model,
    data: FitData<D, V>,
    settings: &TrainSettings,
    seed: u64,
    run: &RunDir,
    device: &Device,
    resume: bool,
) -> Result<(T::Model, Vec<EpochRecord>)>
where
    T: Task,
    D: Dataset<T::Item> + Clone + 'static,
    V: Dataset<T::Item> + Clone + 'static,
{
    settings.validate()?;
    if settings.batch_size == 0 || settings.epochs == 0 || data.train.is_empty() {
        return Err(TrainError::Invalid(
            "training needs data, epochs > 0 and batch_size > 0".into(),
        ));
    }
    if let Some(groups) = &data.batch_groups
        && groups.len() != data.train.len()
    {
        return Err(TrainError::Invalid(format!(
            "{} batch groups for {} training items: give each item one group",
            groups.len(),
            data.train.len()
        )));
    }
    let per_epoch = data.train.len().div_ceil(settings.batch_size);
    let total_steps = per_epoch * settings.epochs;
    let mut schedule = settings.lr_schedule(per_epoch)?;
    let checkpoints = Checkpoints::of(run)?;
    let mut state = ResumeState::fresh();
    let mut model = model;
    let mut resumed_set = None;
    if resume {
        state = checkpoints.read_state()?;
        check_float_type(&state, device, &checkpoints.state)?;
        checkpoints.clean(&state)?;
        record::restore_log(run, &state.history)?;
        let files = checkpoints.set_of(&state)?;
        model = crate::load_module(model, &files.model)?;
        // Replay the plateau schedule's view of the finished epochs.
        for record in &state.history {
            schedule.observe_validation(record.val_loss);
        }
        eprintln!("resuming after epoch {}", state.epoch);
        resumed_set = Some(files);
    }
    state.float_dtype = Some(device.settings().float_dtype);
    let autocast = mixed_precision::<T>(settings, device)?;
    let mut scaler = match (&state.loss_scaler, settings.mixed_precision) {
        (Some(saved), Some(MixedPrecision::F16)) => Some(saved.clone()),
        (_, mixed) => mixed.and_then(MixedPrecision::scaler),
    };
    let mut model = model.train();
    if settings.freeze_batch_norm {
        model = freeze_batch_norm_statistics(model);
    }
    let mut policy = GradientPolicy::new(&model, settings)?;
    let mut lookahead = match &settings.lookahead {
        Some(la) => Some(Lookahead::new(la.clone(), &model)?),
        None => None,
    };
    if let Some(files) = &resumed_set {
        policy = policy.load(&files.optimizer)?;
        if let Some(la) = &settings.lookahead {
            lookahead = Some(Lookahead::load(la.clone(), &model, &files.lookahead)?);
        }
    }
    let mut monitor = UpdateMonitor::new(&model, settings.monitor_every);
    let train_device = device.clone().autodiff();
    for epoch in state.epoch..settings.epochs {
        data.epoch.set(epoch as u64);
        let shuffle = seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64);
        let train_loader = match &data.batch_groups {
            Some(groups) => {
                let order = grouped_order(groups, settings.batch_size, shuffle);
                let grouped = Reordered::new(data.train.clone(), order)?;
                let (batch, workers) = (settings.batch_size, settings.workers);
                loader(task, &grouped, batch, None, workers, &train_device)
            }
            None => loader(
                task,
                &data.train,
                settings.batch_size,
                Some(shuffle),
                settings.workers,
                &train_device,
            ),
        };
        let parts = EpochParts {
            policy: &mut policy,
            schedule: &schedule,
            monitor: &mut monitor,
            lookahead: lookahead.as_mut(),
            total_steps,
            last_good: &checkpoints.model,
            autocast,
            scaler: scaler.as_mut(),
        };
        let (trained, totals) = train_epoch(
            task,
            model,
            batches(&train_loader),
            data.train.len(),
            epoch,
            &mut state.iteration,
            parts,
        )?;
        model = trained;
        if epoch + 1 == settings.epochs
            && let Some(la) = lookahead.as_mut()
        {
            model = la.finish(model);
        }
        let evaluation = evaluate(task, &model, &data.val, settings.batch_size, device)?;
        schedule.observe_validation(evaluation.loss);
        let mut record = epoch_record(epoch, &totals, &evaluation, monitor.take_epoch());
        record.loss_scale = scaler.as_ref().map(|s| s.scale);
        state.loss_scaler = scaler.clone();
        warn_about_update_ratios(&record);
        eprintln!("{}", record.summary());
        run.metrics().append(&record)?;
        let score = evaluation.metric(T::SCORE).unwrap_or(f64::NEG_INFINITY);
        let is_best = score > state.best_score;
        if is_best {
            state.best_score = score;
        }
        state.history.push(record);
        state.epoch = epoch + 1;
        checkpoints.save(&model, &mut state, is_best, |files| {
            if let Some(la) = &lookahead {
                la.save(&model, &files.lookahead)?;
            }
            policy.save(&files.optimizer)
        })?;
        record::plot_history(run, &state.history, T::LOSS_NAME)?;
        if let Some(weights) = task.first_conv(&model) {
            save_filters(weights, &run.file("filters.png"))?;
        }
        if settings.pause_after == Some(state.epoch) && state.epoch < settings.epochs {
            eprintln!("paused after epoch {}", state.epoch);
            break;
        }
    }
    Ok((model, state.history))
}

fn epoch_record(
    epoch: usize,
    totals: &epoch::EpochTotals,
    evaluation: &Evaluation,
    update_ratios: BTreeMap<String, f64>,
) -> EpochRecord {
    let items = totals.items.max(1) as f64;
    let mut metrics: BTreeMap<String, f64> = totals
        .sums
        .iter()
        .map(|(name, sum)| (format!("train_{name}"), sum / items))
        .collect();
    for (name, value) in &evaluation.metrics {
        metrics.insert(format!("val_{name}"), *value);
    }
    EpochRecord {
        epoch: epoch + 1,
        train_loss: totals.loss / items,
        val_loss: evaluation.loss,
        metrics,
        learning_rate: totals.last_lr,
        images_per_sec: totals.items as f64 / totals.seconds.max(1e-9),
        update_ratios,
        loss_scale: None,
        skipped_steps: totals.skipped_steps,
    }
}

fn warn_about_update_ratios(record: &EpochRecord) {
    let odd = flagged(&record.update_ratios);
    if odd.is_empty() {
        return;
    }
    let list: Vec<String> = odd.iter().map(|(n, r)| format!("{n} {r:.1e}")).collect();
    let direction = if odd.iter().any(|(_, r)| *r > 1e-2) {
        "high"
    } else {
        "low"
    };
    eprintln!(
        "update/weight ratios far from 1e-3 (learning rate too {direction}?): {}",
        list.join(", ")
    );
}

/// The half type of a mixed-precision run's steps, after checking that `T` can train so and
/// that `device` keeps f32 weights.
fn mixed_precision<T: Task>(
    settings: &TrainSettings,
    device: &Device,
) -> Result<Option<FloatDType>> {
    let Some(mixed) = settings.mixed_precision else {
        return Ok(None);
    };
    if !T::MIXED_PRECISION {
        return Err(TrainError::Invalid(format!(
            "mixed_precision = \"{}\": this task does not train in mixed precision yet; \
             remove it (and --precision *-mixed), or use --precision f16 (every tensor half)",
            format!("{mixed:?}").to_lowercase()
        )));
    }
    let device_float = device.settings().float_dtype;
    if device_float != FloatDType::F32 {
        return Err(TrainError::Invalid(format!(
            "mixed_precision keeps f32 weights, but the device computes in {device_float:?}; \
             use --precision f16-mixed or bf16-mixed instead of a half device"
        )));
    }
    Ok(Some(mixed.dtype()))
}

/// A run resumes in the float type it trained in: its optimizer state and weights are of
/// that type, and mixing types fails in the first step.
fn check_float_type(state: &ResumeState, device: &Device, path: &std::path::Path) -> Result<()> {
    let trained = state.float_dtype.unwrap_or(FloatDType::F32);
    let now = device.settings().float_dtype;
    if trained == now {
        return Ok(());
    }
    let name = |dtype: FloatDType| format!("{dtype:?}").to_lowercase();
    Err(TrainError::Format {
        path: path.to_path_buf(),
        reason: format!(
            "the run trained in {}, but the device computes in {}; resume it in {} \
             (--precision {})",
            name(trained),
            name(now),
            name(trained),
            name(trained)
        ),
    })
}
