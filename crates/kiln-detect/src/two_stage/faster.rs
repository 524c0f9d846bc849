//! Faster R-CNN (Ren et al. 2015): Fast R-CNN whose regions come from its own region proposal
//! network on the same feature map, both trained together (approximate joint training: the
//! proposals are constants for the box head, as in torchvision).

use std::sync::atomic::AtomicU64;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use kiln_train::{Result as TrainResult, RunDir, TrainError};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::config::{BoxHeadConfig, DetectionRule};
use super::model::FastRcnn;
use super::pipeline::detect_in_batches;
use super::rpn::{RpnConfig, RpnHead, propose, rpn_loss};
use super::sampler::RoiSampling;
use super::scale::ScaleJitter;
use super::task::{box_head_loss, detect_on, total};
use crate::batch::{DetectionBatch, DetectionBatcher, DetectionItem, ResizeRule};
use crate::config::DetectConfig;
use crate::data::{Detection, DetectionSet};
use crate::detector::{Detector, DetectorTask};
use crate::train::{Trained, backbone, backbone_shape, fit_on_sets};
use crate::{DetectError, Result};

/// Faster R-CNN's settings (`[faster_rcnn]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FasterRcnnConfig {
    /// How images are sized for the network.
    pub resize: ResizeRule,
    /// Training batches rescaled by a random factor around the resize rule's size (off when
    /// absent; e.g. `scale_jitter = { range = [0.8, 1.25] }`).
    pub scale_jitter: Option<ScaleJitter>,
    /// The region proposal network (`[faster_rcnn.rpn]`).
    pub rpn: RpnConfig,
    /// The box head's minibatch of regions per image (`[faster_rcnn.sampling]`; torchvision:
    /// 512 regions, a quarter foreground at IoU ≥ 0.5, background below 0.5).
    pub sampling: RoiSampling,
    /// The box head (`[faster_rcnn.head]`).
    pub head: BoxHeadConfig,
    /// Test-time rule (`[faster_rcnn.detection]`).
    pub detection: DetectionRule,
    /// Images per evaluation step.
    pub eval_batch: usize,
}

impl Default for FasterRcnnConfig {
    fn default() -> Self {
        Self {
            resize: ResizeRule::ShortSide {
                short_side: 416,
                max_long_side: 640,
            },
            scale_jitter: None,
            rpn: RpnConfig::default(),
            sampling: RoiSampling {
                per_image: 512,
                background_iou: [0.0, 0.5],
                ..RoiSampling::default()
            },
            head: BoxHeadConfig::default(),
            detection: DetectionRule::default(),
            eval_batch: 4,
        }
    }
}

impl FasterRcnnConfig {
    /// Checks every setting, naming the first one out of range.
    pub fn validate(&self) -> Result<()> {
        self.resize.validate()?;
        if let Some(jitter) = &self.scale_jitter {
            jitter.validate("[faster_rcnn] scale_jitter")?;
        }
        self.rpn.validate("[faster_rcnn.rpn]")?;
        self.sampling.validate("[faster_rcnn.sampling]")?;
        self.head.validate("[faster_rcnn.head]")?;
        self.detection.validate("[faster_rcnn.detection]")?;
        if self.eval_batch == 0 {
            return Err(DetectError::invalid(
                "[faster_rcnn] eval_batch",
                "must be positive",
            ));
        }
        Ok(())
    }
}

/// Fast R-CNN's network plus the RPN on its neck's map.
#[derive(Module, Debug)]
pub struct FasterRcnn {
    /// Backbone, neck and box head.
    pub detector: FastRcnn,
    /// The region proposal network.
    pub rpn: RpnHead,
}

impl FasterRcnn {
    /// The network on `backbone` for `classes` object classes.
    pub fn new(
        config: &FasterRcnnConfig,
        backbone: kiln_nets::zoo::Network,
        classes: usize,
        device: &Device,
    ) -> Self {
        Self {
            detector: FastRcnn::new(&config.head, backbone, classes, device),
            rpn: RpnHead::new(
                config.head.neck_channels,
                config.rpn.anchors.per_cell(),
                device,
            ),
        }
    }
}

/// A training batch's Faster R-CNN losses and what they were computed on.
pub(crate) struct FasterLoss {
    /// RPN and box-head losses, summed.
    pub loss: Tensor<1>,
    /// The feature map regions are pooled from.
    pub features: Tensor<4>,
    /// The regions the box head trained on, per image.
    pub sampled: Vec<Vec<super::sampler::SampledRoi>>,
}

/// Faster R-CNN training in kiln-train's loop: RPN and box-head losses summed.
#[derive(Debug)]
pub struct FasterRcnnTask {
    /// Resizes items to the network input.
    pub batcher: DetectionBatcher,
    /// The method's settings.
    pub config: FasterRcnnConfig,
    /// Object classes.
    pub classes: usize,
    /// Seed of the anchor and region sampling.
    pub seed: u64,
    steps: AtomicU64,
}

impl FasterRcnnTask {
    /// The task of `config` for `classes` object classes.
    pub fn new(config: &FasterRcnnConfig, classes: usize, seed: u64) -> Self {
        Self {
            batcher: DetectionBatcher::new(config.resize),
            config: config.clone(),
            classes,
            seed,
            steps: AtomicU64::new(0),
        }
    }

    /// The summed losses of a batch with what a further head (Mask R-CNN's) trains on: the
    /// feature map and the regions the box head sampled per image.
    pub(crate) fn loss_parts(
        &self,
        model: &FasterRcnn,
        batch: DetectionBatch,
        rng: &mut ChaCha8Rng,
    ) -> TrainResult<FasterLoss> {
        let features = model.detector.features(batch.images);
        let stride = model.detector.stride();
        let output = model
            .rpn
            .forward(features.clone(), &self.config.rpn.anchors, stride);
        let rpn = rpn_loss(&output, &batch.infos, &self.config.rpn, rng);
        let proposals = propose(&output, &batch.infos, &self.config.rpn, true)
            .map_err(|e| TrainError::Invalid(e.to_string()))?;
        let (head, sampled) = box_head_loss(
            &model.detector,
            features.clone(),
            &proposals,
            &batch.infos,
            &self.config.sampling,
            &self.config.head,
            rng,
        );
        Ok(FasterLoss {
            loss: rpn.objectness + rpn.regression + total(head),
            features,
            sampled,
        })
    }

    /// Detections of a batch in input pixels: the RPN's test proposals through the box head.
    pub fn detect(&self, model: &FasterRcnn, batch: DetectionBatch) -> Result<Vec<Vec<Detection>>> {
        let features = model.detector.features(batch.images);
        self.detect_on_features(model, features, &batch.infos)
    }

    /// [`Self::detect`] on the batch's feature map.
    pub fn detect_on_features(
        &self,
        model: &FasterRcnn,
        features: Tensor<4>,
        infos: &[crate::batch::ImageInfo],
    ) -> Result<Vec<Vec<Detection>>> {
        let output = model.rpn.forward(
            features.clone(),
            &self.config.rpn.anchors,
            model.detector.stride(),
        );
        let proposals = propose(&output, infos, &self.config.rpn, false)?;
        detect_on(
            &model.detector,
            features,
            &proposals,
            infos,
            &self.config.head,
            &self.config.detection,
        )
    }
}

impl Detector for FasterRcnnTask {
    type Model = FasterRcnn;
    const LOSS_NAME: &'static str = "RPN + box head losses";

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

    /// The four losses of a batch, summed (RPN objectness and boxes, head classes and boxes).
    fn batch_loss(
        &self,
        model: &FasterRcnn,
        batch: DetectionBatch,
        rng: &mut ChaCha8Rng,
    ) -> TrainResult<Tensor<1>> {
        Ok(self.loss_parts(model, batch, rng)?.loss)
    }

    fn batch_detections(
        &self,
        model: &FasterRcnn,
        batch: DetectionBatch,
    ) -> Result<Vec<Vec<Detection>>> {
        self.detect(model, batch)
    }
}

/// Faster R-CNN on the config's pretrained backbone, for `classes` object classes.
pub fn faster_rcnn(config: &DetectConfig, classes: usize, device: &Device) -> Result<FasterRcnn> {
    Ok(FasterRcnn::new(
        &config.faster_rcnn,
        backbone(config, device)?,
        classes,
        device,
    ))
}

/// The same network with untrained weights (to load a checkpoint into).
pub fn faster_rcnn_shape(
    config: &DetectConfig,
    classes: usize,
    device: &Device,
) -> Result<FasterRcnn> {
    Ok(FasterRcnn::new(
        &config.faster_rcnn,
        backbone_shape(config, device)?,
        classes,
        device,
    ))
}

/// Trains Faster R-CNN on `train` (validating on `val`), writing the run into `run`.
pub fn train_faster_rcnn(
    config: &DetectConfig,
    train: &DetectionSet,
    val: &DetectionSet,
    run: &RunDir,
    device: &Device,
    resume: bool,
) -> Result<Trained<FasterRcnn>> {
    let classes = train.categories.len();
    let task = FasterRcnnTask::new(&config.faster_rcnn, classes, config.seed);
    let model = faster_rcnn(config, classes, device)?;
    fit_on_sets(
        &DetectorTask(&task),
        model,
        train,
        val,
        config,
        run,
        device,
        resume,
    )
}

/// Detections of `model` on `items` in original-image pixels, with the images per second.
pub fn detect_faster_rcnn(
    config: &DetectConfig,
    model: &FasterRcnn,
    classes: usize,
    items: &[DetectionItem],
    device: &Device,
) -> Result<(Vec<Detection>, f64)> {
    let model = model.valid();
    let task = FasterRcnnTask::new(&config.faster_rcnn, classes, config.seed);
    detect_in_batches(
        items,
        &task.batcher,
        config.faster_rcnn.eval_batch,
        device,
        |batch| task.detect(&model, batch),
    )
}
