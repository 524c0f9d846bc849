//! What every end-to-end detector (Fast, Faster and Mask R-CNN, YOLO) gives kiln-train's loop,
//! and the one [`Task`] made from it.
//!
//! A detector says how a batch's loss and its detections are computed ([`Detector`]); the
//! rest is the same for all of them and lives here once ([`DetectorTask`]):
//! - a training step draws from its own seeded generator, rescales the batch by
//!   the method's scale jitter when it has one, and takes the loss;
//! - validation takes the mean loss (regions drawn from a generator seeded the same way every
//!   epoch, so epochs compare) and the VOC AP50 of the detections.

use std::sync::atomic::{AtomicU64, Ordering};

use burn::module::Module;
use burn::tensor::Tensor;
use kiln_train::task::{Evaluation, StepOutput, Task};
use kiln_train::{Result as TrainResult, TrainError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::batch::{DetectionBatch, DetectionBatcher, DetectionItem, ImageInfo};
use crate::data::{AnnotatedImage, Category, Detection, DetectionSet, Object};
use crate::eval::{VocAp, evaluate_voc};
use crate::ops::host::area;
use crate::two_stage::ScaleJitter;

/// An end-to-end detection method as the training loop sees it.
pub trait Detector {
    /// The network.
    type Model: Module + Clone + Send + 'static;
    /// What the loss is, for the plot's axis.
    const LOSS_NAME: &'static str;

    /// Sizes items for the network.
    fn batcher(&self) -> &DetectionBatcher;
    /// Object classes (background not counted).
    fn classes(&self) -> usize;
    /// Seed of what the steps draw (regions, anchors, scale jitter).
    fn seed(&self) -> u64;
    /// Training steps taken; each step draws from a generator seeded by it and the seed.
    fn steps(&self) -> &AtomicU64;
    /// The random rescaling of training batches, when the method has one.
    fn scale_jitter(&self) -> Option<ScaleJitter>;
    /// The loss `[1]` of a batch; `rng` draws what the method samples (regions, anchors).
    fn batch_loss(
        &self,
        model: &Self::Model,
        batch: DetectionBatch,
        rng: &mut ChaCha8Rng,
    ) -> TrainResult<Tensor<1>>;
    /// Detections of each image of a batch, in input pixels.
    fn batch_detections(
        &self,
        model: &Self::Model,
        batch: DetectionBatch,
    ) -> crate::Result<Vec<Vec<Detection>>>;
}

/// A [`Detector`] as kiln-train's [`Task`], scored by validation AP50.
#[derive(Debug)]
pub struct DetectorTask<'a, D>(pub &'a D);

impl<D: Detector> Task for DetectorTask<'_, D> {
    type Model = D::Model;
    type Item = DetectionItem;
    type Batch = DetectionBatch;
    type Batcher = DetectionBatcher;

    const SCORE: &'static str = "ap50";
    const LOSS_NAME: &'static str = D::LOSS_NAME;

    fn batcher(&self) -> DetectionBatcher {
        self.0.batcher().clone()
    }

    fn train_step(&self, model: &D::Model, batch: DetectionBatch) -> TrainResult<StepOutput> {
        let detector = self.0;
        let mut rng = step_rng(detector.seed(), detector.steps());
        let items = batch.infos.len();
        let batch = jittered(detector.scale_jitter(), batch, &mut rng, detector.batcher());
        Ok(StepOutput {
            loss: detector.batch_loss(model, batch, &mut rng)?,
            items,
            sums: Vec::new(),
        })
    }

    fn evaluate(
        &self,
        model: &D::Model,
        batches: &mut dyn Iterator<Item = TrainResult<DetectionBatch>>,
    ) -> TrainResult<Evaluation> {
        let detector = self.0;
        let mut rng = ChaCha8Rng::seed_from_u64(detector.seed());
        validate(
            detector.classes(),
            batches,
            |batch| detector.batch_loss(model, batch, &mut rng),
            |batch| detector.batch_detections(model, batch),
        )
    }
}

/// The mean loss (`loss_of` a batch) and VOC AP50 of the detections (`detect` of a batch, in
/// input pixels) over `batches`; the first error of either ends it.
fn validate(
    classes: usize,
    batches: &mut dyn Iterator<Item = TrainResult<DetectionBatch>>,
    mut loss_of: impl FnMut(DetectionBatch) -> TrainResult<Tensor<1>>,
    mut detect: impl FnMut(DetectionBatch) -> crate::Result<Vec<Vec<Detection>>>,
) -> TrainResult<Evaluation> {
    let (mut loss, mut n) = (0.0, 0usize);
    let (mut infos, mut found) = (Vec::new(), Vec::new());
    for batch in batches {
        let batch = batch?;
        let count = batch.infos.len();
        loss += loss_of(batch.clone())?.into_scalar::<f64>() * count as f64;
        n += count;
        infos.extend(batch.infos.clone());
        let detections = detect(batch).map_err(|e| TrainError::Invalid(e.to_string()))?;
        found.extend(detections.into_iter().flatten());
    }
    let ap50 = evaluate_voc(&ground_truth(&infos, classes), &found, 0.5, VocAp::AllPoint).map;
    Ok(Evaluation {
        loss: loss / n.max(1) as f64,
        metrics: vec![("ap50", ap50.max(0.0))],
    })
}

/// A detection set of the batches' targets, in input pixels (what validation scores against).
fn ground_truth(infos: &[ImageInfo], classes: usize) -> DetectionSet {
    DetectionSet {
        categories: (0..classes)
            .map(|c| Category {
                id: c as u64 + 1,
                name: format!("class {c}"),
            })
            .collect(),
        images: infos
            .iter()
            .map(|info| AnnotatedImage {
                id: info.image_id,
                path: Default::default(),
                width: info.input_size[0] as u32,
                height: info.input_size[1] as u32,
                objects: info
                    .boxes
                    .iter()
                    .zip(&info.labels)
                    .map(|(b, &class)| Object {
                        bbox: *b,
                        class,
                        area: area(b),
                        difficult: false,
                        crowd: false,
                        mask: None,
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// A training batch rescaled by `jitter` (when set) with `rng`, keeping `batcher`'s stride.
fn jittered(
    jitter: Option<ScaleJitter>,
    batch: DetectionBatch,
    rng: &mut ChaCha8Rng,
    batcher: &DetectionBatcher,
) -> DetectionBatch {
    match jitter {
        Some(jitter) => jitter.apply(batch, rng, batcher.size_divisor),
        None => batch,
    }
}

/// The generator of the next training step: each step draws its own regions and jitter, the
/// same ones for the same seed and step.
fn step_rng(seed: u64, steps: &AtomicU64) -> ChaCha8Rng {
    let step = steps.fetch_add(1, Ordering::Relaxed);
    ChaCha8Rng::seed_from_u64(seed ^ step.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}
