//! Image classification as a [`Task`]: cross-entropy (with label smoothing) on class scores,
//! accuracy as the score, and test-time augmentation for the final test number.

use std::marker::PhantomData;

use burn::data::dataset::Dataset;
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::tensor::ops::PadMode;
use burn::tensor::{Device, Int, Tensor};
use kiln_data::augment::Sample;
use kiln_data::{ClassificationBatch, ClassificationBatcher};
use kiln_nets::ImageClassifier;
use serde::{Deserialize, Serialize};

use crate::task::{Evaluation, StepOutput, Task};
use crate::trainer::{TrainSettings, evaluate as evaluate_task};
use crate::{Result, TrainError};

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

/// Training an [`ImageClassifier`] `M` on labelled images.
pub struct Classification<M> {
    batcher: ClassificationBatcher,
    label_smoothing: f64,
    tta: Tta,
    model: PhantomData<fn() -> M>,
}

impl<M> Clone for Classification<M> {
    fn clone(&self) -> Self {
        Self {
            batcher: self.batcher.clone(),
            label_smoothing: self.label_smoothing,
            tta: self.tta,
            model: PhantomData,
        }
    }
}

impl<M: ImageClassifier> Classification<M> {
    /// Classification with `batcher` (which normalises as the training split was fitted),
    /// plain cross-entropy and no test-time augmentation.
    pub fn new(batcher: ClassificationBatcher) -> Self {
        Self {
            batcher,
            label_smoothing: 0.0,
            tta: Tta::None,
            model: PhantomData,
        }
    }

    /// With the label smoothing of `settings`. Per-epoch validation stays without test-time
    /// augmentation; `settings.tta` is for the final test score ([`evaluate`]).
    pub fn with_settings(batcher: ClassificationBatcher, settings: &TrainSettings) -> Self {
        Self {
            label_smoothing: settings.label_smoothing,
            ..Self::new(batcher)
        }
    }

    /// The same task evaluating with `tta` (training is unaffected).
    pub fn with_tta(self, tta: Tta) -> Self {
        Self { tta, ..self }
    }

    /// The batcher.
    pub fn batcher_ref(&self) -> &ClassificationBatcher {
        &self.batcher
    }

    fn loss(&self, device: &Device) -> CrossEntropyLoss {
        CrossEntropyLossConfig::new()
            .with_smoothing((self.label_smoothing > 0.0).then_some(self.label_smoothing as f32))
            .init(device)
    }
}

impl<M: ImageClassifier> Task for Classification<M> {
    type Model = M;
    type Item = Sample;
    type Batch = ClassificationBatch;
    type Batcher = ClassificationBatcher;

    const SCORE: &'static str = "accuracy";
    const LOSS_NAME: &'static str = "cross-entropy";
    const MIXED_PRECISION: bool = true;

    fn batcher(&self) -> ClassificationBatcher {
        self.batcher.clone()
    }

    fn train_step(&self, model: &M, batch: ClassificationBatch) -> Result<StepOutput> {
        let items = batch.targets.dims()[0];
        // Half logits of a mixed-precision step go back to f32 before the softmax.
        let scores = kiln_nets::autocast::to_device_float(model.scores(batch.images));
        let hits = correct_count(&scores, &batch.targets);
        let loss = self.loss(&scores.device()).forward(scores, batch.targets);
        Ok(StepOutput {
            loss,
            items,
            sums: vec![("accuracy", hits)],
        })
    }

    /// Mean plain cross-entropy (no smoothing) and accuracy, with the task's test-time
    /// augmentation.
    fn evaluate(
        &self,
        model: &M,
        batches: &mut dyn Iterator<Item = Result<ClassificationBatch>>,
    ) -> Result<Evaluation> {
        let (mut loss, mut hits, mut n) = (0.0, 0usize, 0usize);
        let mut loss_fn = None;
        for batch in batches {
            let batch = batch?;
            let count = batch.targets.dims()[0];
            let scores = tta_scores(model, batch.images, self.tta);
            hits += correct(&scores, &batch.targets)?;
            let loss_fn =
                loss_fn.get_or_insert_with(|| CrossEntropyLossConfig::new().init(&scores.device()));
            loss += loss_fn.forward(scores, batch.targets).into_scalar::<f64>() * count as f64;
            n += count;
        }
        let n = n.max(1) as f64;
        Ok(Evaluation {
            loss: loss / n,
            metrics: vec![("accuracy", hits as f64 / n)],
        })
    }

    fn first_conv(&self, model: &M) -> Option<Tensor<4>> {
        model.first_conv()
    }
}

/// Predictions of `scores` equal to `targets`.
fn correct(scores: &Tensor<2>, targets: &Tensor<1, Int>) -> Result<usize> {
    let hits = correct_count(scores, targets)
        .into_data()
        .try_to_vec_as::<i64>()
        .map_err(|e| TrainError::Invalid(format!("reading accuracy: {e:?}")))?;
    Ok(hits[0] as usize)
}

/// How many of `scores`' top classes are `targets`, as a float `[1]` left on the device (and
/// out of the autodiff graph).
fn correct_count(scores: &Tensor<2>, targets: &Tensor<1, Int>) -> Tensor<1> {
    scores
        .clone()
        .argmax(1)
        .squeeze_dim::<1>(1)
        .equal(targets.clone())
        .int()
        .sum()
        .float()
        .detach()
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

/// Loss and accuracy of `model` (in evaluation mode) over `data`, with test-time augmentation
/// `tta`: the number a finished run reports on its test set.
pub fn evaluate<M: ImageClassifier, V: Dataset<Sample> + Clone + 'static>(
    model: &M,
    data: &V,
    batcher: &ClassificationBatcher,
    batch: usize,
    device: &Device,
    tta: Tta,
) -> Result<(f64, f64)> {
    let task = Classification::<M>::new(batcher.clone()).with_tta(tta);
    let evaluation = evaluate_task(&task, model, data, batch, device)?;
    Ok((
        evaluation.loss,
        evaluation.metric("accuracy").unwrap_or(0.0),
    ))
}
