//! One pass over the training data: batches in a seeded order, a step each, running sums.

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::Dataset;
use burn::optim::GradientsParams;
use burn::tensor::Device;

use super::policy::GradientPolicy;
use crate::lookahead::Lookahead;
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
}

/// Sums of an epoch of training.
pub(crate) struct EpochTotals {
    pub loss: f64,
    pub items: usize,
    pub sums: BTreeMap<&'static str, f64>,
    pub last_lr: f64,
    pub seconds: f64,
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
    } = parts;
    let progress = Progress::new(items as u64, &format!("epoch {}", epoch + 1), "img");
    let mut totals = EpochTotals {
        loss: 0.0,
        items: 0,
        sums: BTreeMap::new(),
        last_lr: schedule.lr(*iteration),
        seconds: 0.0,
    };
    for batch in batches {
        let step = task.train_step(&model, batch?)?;
        let value = step.loss.clone().into_scalar::<f64>();
        if !value.is_finite() {
            return Err(TrainError::Invalid(format!(
                "loss became {value} in epoch {} (iteration {}); the last good checkpoint is {}; lower the learning rate",
                epoch + 1,
                *iteration,
                last_good.display()
            )));
        }
        for (name, sum) in step.sums {
            *totals.sums.entry(name).or_insert(0.0) += sum;
        }
        let lr = schedule.lr(*iteration);
        totals.last_lr = lr;
        let grads = GradientsParams::from_grads(step.loss.backward(), &model);
        let before = monitor.before(&model, *iteration);
        model = policy.step(lr, model, grads, epoch);
        monitor.after(&model, before);
        if let Some(la) = lookahead.as_deref_mut() {
            model = la.after_step(model, *iteration + 1, total_steps);
        }
        totals.loss += value * step.items as f64;
        totals.items += step.items;
        *iteration += 1;
        progress.inc(step.items as u64);
        progress.status(format!("loss {:.3}", totals.loss / totals.items as f64));
    }
    totals.seconds = progress.finish();
    Ok((model, totals))
}
