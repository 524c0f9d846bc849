//! Training a classifier, then scoring it on the test set: the end every classification
//! command shares.

use burn::tensor::Device;
use kiln_data::{AugmentedImages, ClassificationBatcher, ImageSet};
use kiln_nets::ImageClassifier;
use serde_json::json;

use super::task::{Classification, Tta, evaluate};
use crate::trainer::{EpochRecord, FitData, TrainSettings, fit};
use crate::{Result, RunDir};

/// A classifier's scores on the test set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TestScores {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Accuracy without test-time augmentation.
    pub accuracy: f64,
    /// Accuracy with the run's test-time augmentation, when it has one.
    pub accuracy_tta: Option<f64>,
}

/// What [`train_and_test`] produced.
pub struct Trained<M> {
    /// The final network.
    pub model: M,
    /// Every epoch's record (of the whole run when resumed).
    pub history: Vec<EpochRecord>,
    /// Test scores; `None` without a test set or when the run paused before its last epoch.
    pub test: Option<TestScores>,
}

impl<M> Trained<M> {
    /// The last epoch's record.
    pub fn last(&self) -> Option<&EpochRecord> {
        self.history.last()
    }

    /// The highest validation accuracy of any epoch.
    pub fn best_val_accuracy(&self) -> f64 {
        self.history
            .iter()
            .filter_map(|r| r.metric("val_accuracy"))
            .fold(0.0, f64::max)
    }

    /// The last epoch's validation accuracy (0 when no epoch ran).
    pub fn val_accuracy(&self) -> f64 {
        self.last()
            .and_then(|r| r.metric("val_accuracy"))
            .unwrap_or(0.0)
    }
}

/// Where a classifier trains and is tested.
pub struct ClassifierData<'a> {
    /// Training items (augmented on access).
    pub train: AugmentedImages,
    /// Validation images.
    pub val: &'a ImageSet,
    /// Test images, scored once training has finished.
    pub test: Option<&'a ImageSet>,
    /// Batcher with the training normalisation.
    pub batcher: ClassificationBatcher,
    /// Images per evaluation batch.
    pub eval_batch: usize,
}

/// Trains `model` with `settings` (see [`fit`]) and, unless the run paused, scores the final
/// network on the test set with and without the settings' test-time augmentation, appending
/// `test_loss`, `test_accuracy` and `test_accuracy_tta` to the run's `metrics.jsonl`.
pub fn train_and_test<M: ImageClassifier>(
    model: M,
    data: ClassifierData<'_>,
    settings: &TrainSettings,
    seed: u64,
    run: &RunDir,
    device: &Device,
    resume: bool,
) -> Result<Trained<M>> {
    let task = Classification::with_settings(data.batcher.clone(), settings);
    let fit_data = FitData {
        epoch: data.train.epoch_counter(),
        train: data.train,
        val: AugmentedImages::plain(data.val),
        batch_groups: None,
    };
    let (model, history) = fit(&task, model, fit_data, settings, seed, run, device, resume)?;
    let paused = settings.stopped_early(&history);
    let Some(test) = data.test.filter(|_| !paused) else {
        return Ok(Trained {
            model,
            history,
            test: None,
        });
    };
    let test_set = AugmentedImages::plain(test);
    let eval = |tta| {
        evaluate(
            &model,
            &test_set,
            &data.batcher,
            data.eval_batch,
            device,
            tta,
        )
    };
    let (loss, accuracy) = eval(Tta::None)?;
    let accuracy_tta = match settings.tta {
        Tta::None => None,
        tta => Some(eval(tta)?.1),
    };
    run.metrics().append(&json!({
        "test_loss": loss,
        "test_accuracy": accuracy,
        "test_accuracy_tta": accuracy_tta,
    }))?;
    Ok(Trained {
        model,
        history,
        test: Some(TestScores {
            loss,
            accuracy,
            accuracy_tta,
        }),
    })
}
