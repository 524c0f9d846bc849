//! Fast R-CNN in kiln-train's loop: each step samples a minibatch of regions per image from its
//! proposals (plus its ground-truth boxes), pools them from the shared feature map and takes the
//! head's two losses; validation detects on the held-out images and scores VOC AP50.

use std::sync::atomic::AtomicU64;

use burn::tensor::Tensor;
use kiln_train::Result as TrainResult;
use rand_chacha::ChaCha8Rng;

use super::config::{BoxHeadConfig, DetectionRule, FastRcnnConfig};
use super::model::FastRcnn;
use super::roi_heads::{HeadLoss, detect_regions, head_loss};
use super::sampler::{RoiSampling, SampledRoi, sample_rois};
use super::scale::ScaleJitter;
use crate::batch::{DetectionBatch, DetectionBatcher, ImageInfo};
use crate::data::{BoundingBox, Detection};
use crate::detector::Detector;
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

/// The box head's two losses, summed.
pub(crate) fn total(loss: HeadLoss) -> Tensor<1> {
    loss.classification + loss.regression
}

impl Detector for FastRcnnTask {
    type Model = FastRcnn;
    const LOSS_NAME: &'static str = "cross-entropy + smooth-L1";

    fn batcher(&self) -> &DetectionBatcher {
        &self.batcher
    }

    fn classes(&self) -> usize {
        self.classes
    }

    fn seed(&self) -> u64 {
        self.seed
    }

    fn steps(&self) -> &AtomicU64 {
        &self.steps
    }

    fn scale_jitter(&self) -> Option<ScaleJitter> {
        self.config.scale_jitter
    }

    fn batch_loss(
        &self,
        model: &FastRcnn,
        batch: DetectionBatch,
        rng: &mut ChaCha8Rng,
    ) -> TrainResult<Tensor<1>> {
        Ok(total(self.losses(model, batch, rng)))
    }

    fn batch_detections(
        &self,
        model: &FastRcnn,
        batch: DetectionBatch,
    ) -> crate::Result<Vec<Vec<Detection>>> {
        self.detect(model, batch)
    }
}
