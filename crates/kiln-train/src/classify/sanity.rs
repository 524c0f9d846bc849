//! The course's sanity checks of a fresh classifier, before any long training: its initial
//! loss is near ln(C) (scores near-uniform), and it can overfit a few training images to
//! 100 % with full-batch Adam and no regularisation.

use burn::data::dataloader::DataLoaderBuilder;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::Device;
use kiln_data::{AugmentedImages, ClassificationBatch, ClassificationBatcher, ImageSet};
use kiln_nets::ImageClassifier;
use serde_json::json;

use crate::optim::{OptimizerConfig, OptimizerName};
use crate::plot::{LinePlot, Series};
use crate::{Result, RunDir, TrainError};

/// What the checks found.
#[derive(Clone, Debug, PartialEq)]
pub struct SanityReport {
    /// Mean cross-entropy of the fresh network on up to 500 training images.
    pub initial_loss: f64,
    /// ln(classes): the loss of uniform scores.
    pub expected_loss: f64,
    /// Images in the overfitting subset.
    pub overfit_images: usize,
    /// The step at which the subset was fitted to 100 %, if it was.
    pub overfit_step: Option<usize>,
}

impl SanityReport {
    /// Whether the initial loss is within 25 % of ln(C).
    pub fn initial_loss_ok(&self) -> bool {
        (self.initial_loss - self.expected_loss).abs() <= 0.25 * self.expected_loss
    }

    /// Whether both checks passed.
    pub fn passed(&self) -> bool {
        self.initial_loss_ok() && self.overfit_step.is_some()
    }
}

/// The whole of `set` as one batch on `device`.
fn one_batch(
    set: &ImageSet,
    batcher: &ClassificationBatcher,
    device: &Device,
) -> Result<ClassificationBatch> {
    let loader = DataLoaderBuilder::new(batcher.clone())
        .batch_size(set.len().max(1))
        .set_device(device.clone())
        .build(AugmentedImages::plain(set));
    loader
        .iter()
        .next()
        .ok_or_else(|| TrainError::Invalid("the sanity check needs images".into()))?
        .map_err(|e| TrainError::Invalid(format!("reading a batch: {e}")))
}

/// Runs both checks on `model` (fresh, on the autodiff `device`): the initial loss on up to
/// 500 images of `train`, then at most `steps` full-batch Adam steps (learning rate 1e-3) on
/// `subset`. Each step is logged to `run`'s `metrics.jsonl`, the accuracy curve drawn as
/// `overfit.png`.
pub fn sanity_check<M: ImageClassifier>(
    model: M,
    train: &ImageSet,
    subset: &ImageSet,
    batcher: &ClassificationBatcher,
    steps: usize,
    run: &RunDir,
    device: &Device,
) -> Result<SanityReport> {
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    // Initial loss on up to 500 training images, in training mode (batch statistics).
    let first: Vec<usize> = (0..train.len().min(500)).collect();
    let probe = one_batch(&train.subset(&first), batcher, device)?;
    let initial_loss: f64 = loss_fn
        .forward(model.scores(probe.images), probe.targets)
        .into_scalar();
    let expected_loss = (train.classes.len() as f64).ln();
    let batch = one_batch(subset, batcher, device)?;
    let mut optim = OptimizerConfig {
        name: OptimizerName::Adam,
        ..Default::default()
    }
    .build()?;
    let mut model = model;
    let mut curve = Vec::new();
    let mut overfit_step = None;
    for step in 1..=steps {
        let scores = model.scores(batch.images.clone());
        let hits: i64 = scores
            .clone()
            .argmax(1)
            .squeeze_dim::<1>(1)
            .equal(batch.targets.clone())
            .int()
            .sum()
            .into_scalar();
        let loss = loss_fn.forward(scores, batch.targets.clone());
        let value: f64 = loss.clone().into_scalar();
        let accuracy = hits as f64 / subset.len() as f64;
        curve.push((step as f64, accuracy));
        run.metrics()
            .append(&json!({"overfit_step": step, "loss": value, "train_accuracy": accuracy}))?;
        if accuracy == 1.0 {
            overfit_step = Some(step);
            break;
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-3, model, grads);
    }
    LinePlot {
        title: format!("overfitting {} images", subset.len()),
        x_label: "step".into(),
        y_label: "training accuracy".into(),
        series: vec![Series::new("train", curve)],
    }
    .save_png(&run.file("overfit.png"))?;
    Ok(SanityReport {
        initial_loss,
        expected_loss,
        overfit_images: subset.len(),
        overfit_step,
    })
}
