//! The `[train]` table: how long, how fast, and which parameters learn at which rate.

use burn::module::ParamId;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::classify::Tta;
use crate::lookahead::LookaheadSettings;
use crate::mixed::MixedPrecision;
use crate::optim::{LrSchedule, OptimizerConfig, ScheduleConfig};
use crate::params::{NamedParam, matching};
use crate::{Result, TrainError};

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
    /// Multiplies the learning rate of batch-norm shifts, keeping their weight decay per step
    /// (airbench's bias scaler; see [`LrGroup`]).
    pub norm_bias_lr_scale: f64,
    /// Batch norms normalise with their running statistics and keep them (scale and shift still
    /// train): for fine-tuning pretrained networks on little data.
    pub freeze_batch_norm: bool,
    /// Learning-rate multipliers for groups of parameters (e.g. a pretrained backbone at a
    /// tenth of the head's rate), for every optimizer.
    pub lr_groups: Vec<LrGroup>,
    /// Parameters to stop training after some epochs.
    pub freeze: Vec<FreezeRule>,
    /// Weight-averaging lookahead (off when absent).
    pub lookahead: Option<LookaheadSettings>,
    /// Test-time augmentation: of a classifier's final test score
    /// ([`crate::classify::evaluate`]); of every evaluation of a segmentation run (mirror only).
    pub tta: Tta,
    /// Steps between update-to-weight ratio measurements (0 disables them).
    pub monitor_every: usize,
    /// Forward and backward passes in this half type, with f32 weights, optimizer and loss
    /// (see [`crate::mixed`]); absent: everything in the device's float type.
    pub mixed_precision: Option<MixedPrecision>,
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
/// for every parameter) except those under any of `except`, applied through Burn's parameter
/// groups ([`ParamGroup`](burn::module::ParamGroup)), so it works with every optimizer.
///
/// The group's weight decay is divided by the same factor, so that the decay each step takes
/// stays `learning rate × weight_decay` whatever the scale (airbench's bias scaler; with SGD the
/// update equals scaling the group's gradients). Scales of groups that overlap multiply.
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
    pub fn ids(&self, params: &[NamedParam]) -> Vec<ParamId> {
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

impl TrainSettings {
    /// Checks what [`fit`](super::fit) cannot check later.
    pub fn validate(&self) -> Result<()> {
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err(TrainError::Invalid(format!(
                "[train] learning_rate {} must be a positive number (the learning rate)",
                self.learning_rate
            )));
        }
        if self.epochs == 0 || self.batch_size == 0 {
            return Err(TrainError::Invalid(format!(
                "[train] epochs ({}) and batch_size ({}) must be positive",
                self.epochs, self.batch_size
            )));
        }
        self.optimizer.validate()?;
        if !(self.norm_bias_lr_scale > 0.0 && self.norm_bias_lr_scale.is_finite()) {
            return Err(TrainError::Invalid(
                "[train] norm_bias_lr_scale must be positive".into(),
            ));
        }
        for group in &self.lr_groups {
            if !(group.lr_scale > 0.0 && group.lr_scale.is_finite()) {
                return Err(TrainError::Invalid(format!(
                    "[[train.lr_groups]] '{}': lr_scale must be positive",
                    group.param
                )));
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
    /// Whether a run that produced `history` stopped before its last epoch (`pause_after`).
    pub fn stopped_early(&self, history: &[super::EpochRecord]) -> bool {
        history.last().is_some_and(|r| r.epoch < self.epochs)
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
            mixed_precision: None,
            pause_after: None,
        }
    }
}
