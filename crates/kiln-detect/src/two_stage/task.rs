//! Fast R-CNN in kiln-train's loop: each step samples a minibatch of regions per image from its
//! proposals (plus its ground-truth boxes), pools them from the shared feature map and takes the
//! head's two losses; validation detects on the held-out images and scores VOC AP50.

use std::sync::atomic::{AtomicU64, Ordering};

use burn::tensor::Tensor;
use kiln_train::task::{Evaluation, StepOutput, Task};
use kiln_train::{Result as TrainResult, TrainError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::config::{BoxHeadConfig, DetectionRule, FastRcnnConfig};
use super::model::FastRcnn;
use super::roi_heads::{HeadLoss, detect_regions, head_loss};
use super::sampler::{RoiSampling, SampledRoi, sample_rois};
use super::scale::ScaleJitter;
use crate::batch::{DetectionBatch, DetectionBatcher, DetectionItem, ImageInfo};
use crate::data::{AnnotatedImage, BoundingBox, Category, Detection, DetectionSet, Object};
use crate::eval::{VocAp, evaluate_voc};
use crate::ops::BoxCoder;
use crate::ops::host::area;

/// Fast R-CNN training: [`DetectionBatcher`] batches whose items carry proposals.
#[derive(Debug)]
pub struct FastRcnnTask {
    /// Resizes items (and their boxes and proposals) to the network input.
    pub batcher: DetectionBatcher,
    /// The method's settings.
    pub config: FastRcnnConfig,
    /// Object classes.
    pub classes: usize,
    /// Seed of the region sampling.
    pub seed: u64,
    /// Training steps taken (each draws its own regions).
    steps: AtomicU64,
}

impl FastRcnnTask {
    /// The task of `config` for `classes` object classes.
    pub fn new(config: &FastRcnnConfig, classes: usize, seed: u64) -> Self {
        Self {
            batcher: DetectionBatcher::new(config.resize),
            config: config.clone(),
            classes,
            seed,
            steps: AtomicU64::new(0),
        }
    }

    /// The box coding of the head's deltas.
    pub fn coder(&self) -> BoxCoder {
        BoxCoder::new(self.config.head.box_weights)
    }

    /// The head's losses on regions sampled from each image's proposals with `rng`.
    fn losses(&self, model: &FastRcnn, batch: DetectionBatch, rng: &mut ChaCha8Rng) -> HeadLoss {
        let features = model.features(batch.images);
        let proposals: Vec<Vec<BoundingBox>> =
            batch.infos.iter().map(|i| i.proposals.clone()).collect();
        box_head_loss(
            model,
            features,
            &proposals,
            &batch.infos,
            &self.config.sampling,
            &self.config.head,
            rng,
        )
        .0
    }

    /// Detections of a batch in input pixels (see [`detect_regions`]), each image's best
    /// `test_proposals` proposals classified.
    pub fn detect(
        &self,
        model: &FastRcnn,
        batch: DetectionBatch,
    ) -> crate::Result<Vec<Vec<Detection>>> {
        let features = model.features(batch.images);
        let rois: Vec<Vec<BoundingBox>> = batch
            .infos
            .iter()
            .map(|info| {
                info.proposals
                    .iter()
                    .take(self.config.test_proposals)
                    .copied()
                    .collect()
            })
            .collect();
        detect_on(
            model,
            features,
            &rois,
            &batch.infos,
            &self.config.head,
            &self.config.detection,
        )
    }
}

/// The box head's losses on minibatches drawn (with `rng`) from each image's `proposals` plus
/// its ground-truth boxes, the regions pooled from `features`; and those regions per image.
pub(crate) fn box_head_loss(
    model: &FastRcnn,
    features: Tensor<4>,
    proposals: &[Vec<BoundingBox>],
    infos: &[ImageInfo],
    sampling: &RoiSampling,
    head: &BoxHeadConfig,
    rng: &mut ChaCha8Rng,
) -> (HeadLoss, Vec<Vec<SampledRoi>>) {
    let sampled: Vec<Vec<SampledRoi>> = infos
        .iter()
        .zip(proposals)
        .map(|(info, proposals)| sample_rois(proposals, &info.boxes, &info.labels, sampling, rng))
        .collect();
    let rois: Vec<Vec<BoundingBox>> = sampled
        .iter()
        .map(|s| s.iter().map(|r| r.region).collect())
        .collect();
    let pooler = head.roi.pooler(head.bins, model.stride());
    let (logits, deltas) = model.classify_regions(features, &rois, &pooler);
    let flat: Vec<SampledRoi> = sampled.iter().flatten().copied().collect();
    let loss = head_loss(
        logits,
        deltas,
        &flat,
        &BoxCoder::new(head.box_weights),
        head.smooth_l1_beta,
    );
    (loss, sampled)
}

/// Detections (in input pixels) of each image's `rois`, pooled from `features`.
pub(crate) fn detect_on(
    model: &FastRcnn,
    features: Tensor<4>,
    rois: &[Vec<BoundingBox>],
    infos: &[ImageInfo],
    head: &BoxHeadConfig,
    rule: &DetectionRule,
) -> crate::Result<Vec<Vec<Detection>>> {
    let rois: Vec<Vec<BoundingBox>> = rois
        .iter()
        .map(|r| r.iter().filter(|b| area(b) > 0.0).copied().collect())
        .collect();
    let pooler = head.roi.pooler(head.bins, model.stride());
    let (logits, deltas) = model.classify_regions(features, &rois, &pooler);
    let coder = BoxCoder::new(head.box_weights);
    let [_, k] = logits.dims();
    let [_, d] = deltas.dims();
    let mut out = Vec::with_capacity(rois.len());
    let mut start = 0;
    for (info, regions) in infos.iter().zip(&rois) {
        let rows = start..start + regions.len();
        start += regions.len();
        out.push(detect_regions(
            logits.clone().slice([rows.clone(), 0..k]),
            deltas.clone().slice([rows, 0..d]),
            regions,
            info,
            &coder,
            rule,
        )?);
    }
    Ok(out)
}

/// Validation shared by the detection tasks: the mean loss (`loss_of` a batch) and VOC AP50 of
/// the detections (`detect` of a batch, input pixels) over `batches`; the first error of either
/// ends it.
pub(crate) fn validate(
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
pub(crate) fn ground_truth(infos: &[ImageInfo], classes: usize) -> DetectionSet {
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

pub(crate) fn total(loss: HeadLoss) -> Tensor<1> {
    loss.classification + loss.regression
}

/// A training batch rescaled by `jitter` (when set) with `rng`, keeping `batcher`'s stride.
pub(crate) fn jittered(
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

/// The sampling generator of the next training step: each step draws its own regions, the
/// same ones for the same seed and step.
pub(crate) fn step_rng(seed: u64, steps: &AtomicU64) -> ChaCha8Rng {
    let step = steps.fetch_add(1, Ordering::Relaxed);
    ChaCha8Rng::seed_from_u64(seed ^ step.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

impl Task for FastRcnnTask {
    type Model = FastRcnn;
    type Item = DetectionItem;
    type Batch = DetectionBatch;
    type Batcher = DetectionBatcher;

    const SCORE: &'static str = "ap50";
    const LOSS_NAME: &'static str = "cross-entropy + smooth-L1";

    fn batcher(&self) -> DetectionBatcher {
        self.batcher.clone()
    }

    fn train_step(&self, model: &FastRcnn, batch: DetectionBatch) -> TrainResult<StepOutput> {
        let mut rng = step_rng(self.seed, &self.steps);
        let items = batch.infos.len();
        let batch = jittered(self.config.scale_jitter, batch, &mut rng, &self.batcher);
        let loss = self.losses(model, batch, &mut rng);
        Ok(StepOutput {
            loss: total(loss),
            items,
            sums: Vec::new(),
        })
    }

    fn evaluate(
        &self,
        model: &FastRcnn,
        batches: &mut dyn Iterator<Item = TrainResult<DetectionBatch>>,
    ) -> TrainResult<Evaluation> {
        // The same regions every epoch, so validation losses compare.
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        validate(
            self.classes,
            batches,
            |batch| Ok(total(self.losses(model, batch, &mut rng))),
            |batch| self.detect(model, batch),
        )
    }
}
