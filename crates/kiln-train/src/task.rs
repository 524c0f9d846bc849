//! What a training task tells the loop: how items become batches, what a batch's loss is, and
//! how good a model is on held-out data. Classification ([`crate::classify`]) is one task;
//! detection and segmentation implement the same trait, and [`crate::trainer::fit`] trains
//! any of them with the same checkpoints, resume, schedules and plots.

use std::fmt::Debug;

use burn::data::dataloader::batcher::Batcher;
use burn::module::Module;
use burn::tensor::Tensor;

use crate::Result;

/// What one training step computed.
#[derive(Debug)]
pub struct StepOutput {
    /// The scalar loss `[1]` to differentiate (on the autodiff device).
    pub loss: Tensor<1>,
    /// Items (images) in the batch; the loss is taken as their mean.
    pub items: usize,
    /// Per-metric sums `[1]` over the batch (e.g. `("accuracy", correct predictions)`), left
    /// on the device (the loop reads them with the loss); the epoch's `train_<name>` is the
    /// sum over its batches divided by its items.
    pub sums: Vec<(&'static str, Tensor<1>)>,
}

/// How a model did on held-out data.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evaluation {
    /// Mean loss.
    pub loss: f64,
    /// Named metrics, higher is better (e.g. `("accuracy", 0.91)`); written as `val_<name>`.
    pub metrics: Vec<(&'static str, f64)>,
}

impl Evaluation {
    /// The value of metric `name`, if the task reports it.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }
}

/// A supervised task the training loop can fit.
pub trait Task {
    /// The network being trained.
    type Model: Module + Clone + Send + 'static;
    /// One dataset item.
    type Item: Clone + Send + Sync + Debug + 'static;
    /// A batch of items as tensors.
    type Batch: Clone + Send + Debug + 'static;
    /// Turns items into batches on a device.
    type Batcher: Batcher<Self::Item, Self::Batch> + Clone + 'static;

    /// The metric of [`Evaluation::metrics`] whose best value picks the `best.bpk` checkpoint.
    const SCORE: &'static str;
    /// What the loss is, for the plot's axis (e.g. `cross-entropy`).
    const LOSS_NAME: &'static str = "loss";
    /// Whether [`Task::train_step`] can run inside [`kiln_nets::autocast::scope`] (mixed
    /// precision, [`crate::mixed`]): its network is built from kiln's layers and it casts the
    /// network's output to the device's float type before the loss
    /// ([`kiln_nets::autocast::to_device_float`]).
    const MIXED_PRECISION: bool = false;

    /// The batcher for training and validation data.
    fn batcher(&self) -> Self::Batcher;

    /// The loss of a training batch (the model is in training mode on the autodiff device).
    fn train_step(&self, model: &Self::Model, batch: Self::Batch) -> Result<StepOutput>;

    /// Evaluates `model` (in evaluation mode, on the inner device) over `batches`.
    fn evaluate(
        &self,
        model: &Self::Model,
        batches: &mut dyn Iterator<Item = Result<Self::Batch>>,
    ) -> Result<Evaluation>;

    /// Weights `[filters, channels, k, k]` of the model's first convolution, drawn as
    /// `filters.png` after each epoch; `None` to draw nothing.
    fn first_conv(&self, _model: &Self::Model) -> Option<Tensor<4>> {
        None
    }
}
