//! One pass over the training data: batches in a seeded order, a step each, running sums.
//!
//! Each step's loss and metric sums stay on the device until the next read, at most every
//! [`READ_INTERVAL`] (and at the epoch's end): a read waits for the device to finish, so
//! reading every step would keep a GPU from queueing the next step while the host prepares
//! it. A CPU step is usually longer than the interval, so there every step is read.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::Dataset;
use burn::tensor::{DType, Device, FloatDType, Tensor};

use super::policy::GradientPolicy;
use crate::lookahead::Lookahead;
use crate::mixed::{self, LossScaler};
use crate::monitor::UpdateMonitor;
use crate::optim::LrSchedule;
use crate::task::Task;
use crate::{Progress, Result, TrainError};

/// A data loader over `data` with the task's batcher; `shuffle` seeds the order.
pub(crate) fn loader<T: Task, D: Dataset<T::Item> + Clone + 'static>(
    task: &T,
    data: &D,
    batch: usize,
    shuffle: Option<u64>,
    workers: usize,
    device: &Device,
) -> Arc<dyn DataLoader<T::Batch>> {
    let mut builder = DataLoaderBuilder::new(task.batcher())
        .batch_size(batch)
        .num_workers(workers)
        .set_device(device.clone());
    if let Some(seed) = shuffle {
        builder = builder.shuffle(seed);
    }
    builder.build(data.clone())
}

/// The batches of `loader`, their read errors as [`TrainError`]s.
pub(crate) fn batches<B: Send + 'static>(
    loader: &Arc<dyn DataLoader<B>>,
) -> impl Iterator<Item = Result<B>> + '_ {
    loader
        .iter()
        .map(|b| b.map_err(|e| TrainError::Invalid(format!("reading a batch: {e}"))))
}

/// What the steps of an epoch share.
pub(crate) struct EpochParts<'a> {
    pub policy: &'a mut GradientPolicy,
    pub schedule: &'a LrSchedule,
    pub monitor: &'a mut UpdateMonitor,
    pub lookahead: Option<&'a mut Lookahead>,
    /// Steps of the whole run (lookahead's progress).
    pub total_steps: usize,
    /// Where the last good weights are, for the message on a non-finite loss.
    pub last_good: &'a std::path::Path,
    /// The half type of mixed-precision steps (their forward pass runs in an autocast scope).
    pub autocast: Option<FloatDType>,
    /// The loss scaler of f16 mixed-precision steps.
    pub scaler: Option<&'a mut LossScaler>,
}

/// Sums of an epoch of training.
pub(crate) struct EpochTotals {
    pub loss: f64,
    pub items: usize,
    pub sums: BTreeMap<&'static str, f64>,
    pub last_lr: f64,
    pub seconds: f64,
    /// Steps whose scaled gradients overflowed, so the optimizer skipped them.
    pub skipped_steps: usize,
}

/// The longest the loop goes without reading the steps' losses back from the device.
pub(crate) const READ_INTERVAL: Duration = Duration::from_millis(500);

/// Steps whose losses and sums are still on the device.
#[derive(Default)]
struct Unread {
    /// Each step's loss `[1]`, its items, its iteration.
    losses: Vec<(Tensor<1>, usize, usize)>,
    /// Each step's metric sums `[1]`.
    sums: Vec<(&'static str, Tensor<1>)>,
}

impl Unread {
    /// Reads every unread value (one transfer) into `totals`; a non-finite loss is an error
    /// naming its iteration and the last good checkpoint.
    fn read_into(
        &mut self,
        totals: &mut EpochTotals,
        epoch: usize,
        last_good: &std::path::Path,
    ) -> Result<()> {
        if self.losses.is_empty() {
            return Ok(());
        }
        let losses = std::mem::take(&mut self.losses);
        let sums = std::mem::take(&mut self.sums);
        let half = matches!(losses[0].0.dtype(), DType::F16 | DType::BF16);
        let tensors: Vec<Tensor<1>> = losses
            .iter()
            .map(|(loss, _, _)| loss.clone())
            .chain(sums.iter().map(|(_, sum)| sum.clone()))
            .collect();
        let values = Tensor::cat(tensors, 0)
            .into_data()
            .try_into_vec_as::<f64>()
            .map_err(|e| TrainError::Invalid(format!("reading the training loss: {e:?}")))?;
        let (loss_values, sum_values) = values.split_at(losses.len());
        for ((_, items, iteration), &value) in losses.iter().zip(loss_values) {
            if !value.is_finite() {
                let fix = if half {
                    "half precision's narrow range is the likely cause: train with f32 \
                     weights and loss scaling (--precision f16-mixed) or in f32, or lower the \
                     learning rate"
                } else {
                    "lower the learning rate"
                };
                return Err(TrainError::Invalid(format!(
                    "loss became {value} in epoch {} (iteration {iteration}); the last good checkpoint is {}; {fix}",
                    epoch + 1,
                    last_good.display()
                )));
            }
            totals.loss += value * *items as f64;
            totals.items += items;
        }
        for ((name, _), &value) in sums.iter().zip(sum_values) {
            *totals.sums.entry(name).or_insert(0.0) += value;
        }
        Ok(())
    }
}

/// Trains `model` for one epoch (0-based `epoch`) over `batches`, advancing `iteration`.
pub(crate) fn train_epoch<T: Task>(
    task: &T,
    mut model: T::Model,
    batches: impl Iterator<Item = Result<T::Batch>>,
    items: usize,
    epoch: usize,
    iteration: &mut usize,
    parts: EpochParts<'_>,
) -> Result<(T::Model, EpochTotals)> {
    let EpochParts {
        policy,
        schedule,
        monitor,
        mut lookahead,
        total_steps,
        last_good,
        autocast,
        mut scaler,
    } = parts;
    let progress = Progress::new(items as u64, &format!("epoch {}", epoch + 1), "img");
    let mut totals = EpochTotals {
        loss: 0.0,
        items: 0,
        sums: BTreeMap::new(),
        last_lr: schedule.lr(*iteration),
        seconds: 0.0,
        skipped_steps: 0,
    };
    let mut unread = Unread::default();
    let mut last_read = Instant::now();
    for batch in batches {
        let batch = batch?;
        let step = mixed::autocast(autocast, || task.train_step(&model, batch))?;
        unread
            .losses
            .push((step.loss.clone().detach(), step.items, *iteration));
        unread.sums.extend(step.sums);
        let lr = schedule.lr(*iteration);
        totals.last_lr = lr;
        if let Some(grads) = mixed::gradients(step.loss, &model, scaler.as_deref_mut()) {
            let before = monitor.before(&model, *iteration);
            model = policy.step(lr, model, grads, epoch);
            monitor.after(&model, before);
            if let Some(la) = lookahead.as_deref_mut() {
                model = la.after_step(model, *iteration + 1, total_steps);
            }
        } else {
            totals.skipped_steps += 1;
        }
        *iteration += 1;
        progress.inc(step.items as u64);
        if last_read.elapsed() >= READ_INTERVAL {
            unread.read_into(&mut totals, epoch, last_good)?;
            last_read = Instant::now();
            progress.status(format!(
                "loss {:.3}",
                totals.loss / totals.items.max(1) as f64
            ));
        }
    }
    unread.read_into(&mut totals, epoch, last_good)?;
    totals.seconds = progress.finish();
    Ok((model, totals))
}
