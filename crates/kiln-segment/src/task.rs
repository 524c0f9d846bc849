//! FCN training in kiln-train's loop: the weighted pixel cross-entropy as the loss, and an
//! evaluation that fills one confusion matrix (its mean IoU is the run's score) and, when
//! asked, draws `confusion.png` and `predictions.png` each time it runs.

use std::path::PathBuf;

use burn::tensor::{Tensor, TensorData};
use kiln_train::task::{Evaluation, StepOutput, Task};
use kiln_train::{Result as TrainResult, TrainError};

use crate::batch::{SegmentationBatch, SegmentationBatcher, SegmentationItem};
use crate::data::ClassList;
use crate::draw::{PredictionRow, save_confusion, save_predictions};
use crate::fcn::Fcn;
use crate::loss::pixel_cross_entropy;
use crate::metrics::ConfusionMatrix;

/// Segmentation as a kiln-train task.
#[derive(Clone, Debug)]
pub struct SegmentTask {
    /// Pads and stacks items.
    pub batcher: SegmentationBatcher,
    /// The classes and the ignored id.
    pub classes: ClassList,
    /// Class weights of the cross-entropy (`None`: all 1).
    pub weights: Option<Vec<f32>>,
    /// Where each evaluation draws `confusion.png` and `predictions.png` (`None`: nowhere).
    pub pictures: Option<PathBuf>,
    /// Validation images drawn in `predictions.png`.
    pub pictured: usize,
    /// Evaluations average the logits of each image and of its mirror image (mirrored back).
    pub mirror: bool,
}

/// The logits a trained FCN is scored and predicts with: `model`'s, averaged with those of the
/// mirror images (mirrored back) when `mirror` is set (test-time augmentation).
pub fn eval_logits(model: &Fcn, images: Tensor<4>, mirror: bool) -> Tensor<4> {
    if !mirror {
        return model.forward(images);
    }
    let mirrored = model.forward(images.clone().flip([3])).flip([3]);
    (model.forward(images) + mirrored).mul_scalar(0.5)
}

/// The predicted class of every pixel of each item of a batch, cropped to the item's size
/// (`mirror`: see [`eval_logits`]).
pub fn predict_batch(
    model: &Fcn,
    images: Tensor<4>,
    sizes: &[[usize; 2]],
    mirror: bool,
) -> TrainResult<Vec<Vec<u8>>> {
    classes_of(eval_logits(model, images, mirror), sizes)
}

/// Argmax over classes of `logits` `[batch, classes, h, w]`, each item cropped to its
/// `[width, height]`.
fn classes_of(logits: Tensor<4>, sizes: &[[usize; 2]]) -> TrainResult<Vec<Vec<u8>>> {
    let [_, _, h, w] = logits.dims();
    let best: Vec<i64> = logits
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .map_err(|e| TrainError::Invalid(format!("reading predictions: {e:?}")))?;
    Ok(sizes
        .iter()
        .enumerate()
        .map(|(n, &[width, height])| {
            let plane = &best[n * h * w..][..h * w];
            (0..height.min(h))
                .flat_map(|y| plane[y * w..][..width.min(w)].iter().map(|&c| c as u8))
                .collect()
        })
        .collect())
}

/// Images kept as candidates for each pictured one: the pictures are spread evenly over the
/// first `pictured × this` images (neighbouring video frames look alike).
const CANDIDATES_PER_PICTURE: usize = 16;

/// `n` of `items` at even steps from the first (all of them when there are no more than `n`).
fn evenly_spaced<T>(items: Vec<T>, n: usize) -> Vec<T> {
    let len = items.len();
    if len <= n {
        return items;
    }
    let wanted: Vec<usize> = (0..n).map(|i| i * len / n).collect();
    items
        .into_iter()
        .enumerate()
        .filter(|(i, _)| wanted.binary_search(i).is_ok())
        .map(|(_, item)| item)
        .collect()
}

/// Confusion matrix, loss and pictured rows of an evaluation.
pub struct Scored {
    /// Every scored pixel.
    pub confusion: ConfusionMatrix,
    /// Mean loss over batches.
    pub loss: f64,
    /// Images with their predictions, spread over the evaluated ones.
    pub rows: Vec<PredictionRow>,
    /// Images scored.
    pub images: usize,
}

impl SegmentTask {
    fn weights_on(&self, device: &burn::tensor::Device) -> Option<Tensor<1>> {
        self.weights
            .as_ref()
            .map(|w| Tensor::from_data(TensorData::new(w.clone(), [w.len()]), device))
    }

    /// Scores `model` over `batches`, keeping the first `pictured` images for pictures.
    pub fn score(
        &self,
        model: &Fcn,
        batches: &mut dyn Iterator<Item = TrainResult<SegmentationBatch>>,
    ) -> TrainResult<Scored> {
        let mut scored = Scored {
            confusion: ConfusionMatrix::new(self.classes.len()),
            loss: 0.0,
            rows: Vec::new(),
            images: 0,
        };
        let mut batches_seen = 0usize;
        for batch in batches {
            let batch = batch?;
            let device = batch.images.device();
            let logits = eval_logits(model, batch.images, self.mirror);
            let loss = pixel_cross_entropy(logits.clone(), batch.targets, self.weights_on(&device));
            scored.loss += f64::from(loss.into_scalar::<f32>());
            batches_seen += 1;
            let sizes: Vec<[usize; 2]> = batch.masks.iter().map(|m| [m.width, m.height]).collect();
            let predicted = classes_of(logits, &sizes)?;
            for ((mask, photo), predicted) in
                batch.masks.into_iter().zip(batch.photos).zip(predicted)
            {
                scored.confusion.add(&mask, &predicted);
                scored.images += 1;
                if scored.rows.len() < self.pictured * CANDIDATES_PER_PICTURE {
                    scored.rows.push(PredictionRow {
                        photo,
                        truth: mask,
                        predicted,
                    });
                }
            }
        }
        scored.loss /= batches_seen.max(1) as f64;
        scored.rows = evenly_spaced(std::mem::take(&mut scored.rows), self.pictured);
        Ok(scored)
    }

    /// Draws `confusion.png` and `predictions.png` of `scored` into `dir`.
    pub fn draw(&self, scored: &Scored, title: &str, dir: &std::path::Path) -> crate::Result<()> {
        save_confusion(
            &scored.confusion,
            &self.classes,
            title,
            &dir.join("confusion.png"),
        )?;
        if !scored.rows.is_empty() {
            save_predictions(&scored.rows, &self.classes, &dir.join("predictions.png"))?;
        }
        Ok(())
    }
}

impl Task for SegmentTask {
    type Model = Fcn;
    type Item = SegmentationItem;
    type Batch = SegmentationBatch;
    type Batcher = SegmentationBatcher;

    const SCORE: &'static str = "miou";
    const LOSS_NAME: &'static str = "pixel cross-entropy";

    fn batcher(&self) -> SegmentationBatcher {
        self.batcher.clone()
    }

    fn train_step(&self, model: &Fcn, batch: SegmentationBatch) -> TrainResult<StepOutput> {
        let items = batch.masks.len();
        let weights = self.weights_on(&batch.images.device());
        let logits = model.forward(batch.images);
        Ok(StepOutput {
            loss: pixel_cross_entropy(logits, batch.targets, weights),
            items,
            sums: Vec::new(),
        })
    }

    fn evaluate(
        &self,
        model: &Fcn,
        batches: &mut dyn Iterator<Item = TrainResult<SegmentationBatch>>,
    ) -> TrainResult<Evaluation> {
        let scored = self.score(model, batches)?;
        let metrics = scored.confusion.metrics();
        if let Some(dir) = &self.pictures {
            let title = format!(
                "validation confusion (mIoU {:.1} %)",
                100.0 * metrics.mean_iou
            );
            self.draw(&scored, &title, dir)
                .map_err(|e| TrainError::Invalid(e.to_string()))?;
        }
        Ok(Evaluation {
            loss: scored.loss,
            metrics: vec![
                ("miou", metrics.mean_iou),
                ("pixel_accuracy", metrics.pixel_accuracy),
                ("mean_class_accuracy", metrics.mean_class_accuracy),
                ("fw_iou", metrics.frequency_weighted_iou),
            ],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fcn::{FcnConfig, FcnVariant};
    use burn::module::Module;
    use burn::tensor::{Device, Distribution};
    use kiln_nets::Architecture;

    /// An FCN-8s on a random backbone with random (not zero) score layers.
    fn scoring_fcn(device: &Device) -> Fcn {
        let backbone = Architecture::parse("efficientnet-lite0")
            .unwrap()
            .init(3, device);
        let mut net = FcnConfig {
            variant: FcnVariant::Fcn8s,
            ..FcnConfig::default()
        }
        .init(backbone, 4, device)
        .unwrap();
        let random = |w: Tensor<4>| w.random_like(Distribution::Normal(0.0, 0.5));
        net.score32.weight = net.score32.weight.map(random);
        if let Some(s) = net.score8.as_mut() {
            s.weight = s.weight.clone().map(random);
        }
        net.valid()
    }

    #[test]
    fn mirror_evaluation_is_the_mean_of_both_views_and_mirror_symmetric() {
        let device = Device::flex();
        let net = scoring_fcn(&device);
        let images = Tensor::<4>::random([2, 3, 64, 96], Distribution::Normal(0.0, 1.0), &device);
        let plain = eval_logits(&net, images.clone(), false);
        let both = eval_logits(&net, images.clone(), true);
        let flipped = eval_logits(&net, images.clone().flip([3]), false).flip([3]);
        // The network alone is not mirror symmetric, so the two views differ …
        let gap = (plain.clone() - flipped.clone())
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(gap > 1e-3, "views differ by {gap}");
        // … and the evaluation is their mean, aligned pixel by pixel.
        (plain + flipped)
            .mul_scalar(0.5)
            .into_data()
            .assert_approx_eq::<f32>(&both.clone().into_data(), Default::default());
        // Evaluating the mirror image gives the mirrored logits.
        eval_logits(&net, images.flip([3]), true)
            .flip([3])
            .into_data()
            .assert_approx_eq::<f32>(&both.into_data(), Default::default());
        // Predictions are cropped to each item's size.
        let sizes = [[90, 60], [96, 64]];
        let images = Tensor::<4>::random([2, 3, 64, 96], Distribution::Normal(0.0, 1.0), &device);
        let predicted = predict_batch(&net, images, &sizes, true).unwrap();
        assert_eq!(predicted[0].len(), 90 * 60);
        assert_eq!(predicted[1].len(), 96 * 64);
        assert!(predicted.iter().flatten().all(|&c| c < 4));
    }

    #[test]
    fn pictures_are_spread_over_the_images() {
        assert_eq!(evenly_spaced((0..10).collect(), 3), vec![0, 3, 6]);
        assert_eq!(
            evenly_spaced((0..96).collect(), 6),
            vec![0, 16, 32, 48, 64, 80]
        );
        assert_eq!(evenly_spaced((0..2).collect(), 6), vec![0, 1]);
        assert!(evenly_spaced((0..5).collect::<Vec<i32>>(), 0).is_empty());
    }
}
