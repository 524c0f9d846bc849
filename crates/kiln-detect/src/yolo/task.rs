//! YOLO in kiln-train's loop: either head as one module, its loss per training step (with
//! multi-scale jitter for the anchor head), validation by VOC AP50, and detection in batches.

use std::sync::atomic::AtomicU64;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use kiln_train::{Result as TrainResult, RunDir, TrainError};
use rand_chacha::ChaCha8Rng;

use super::anchor::AnchorYolo;
use super::anchor::loss::{anchor_candidates, anchor_loss};
use super::config::{YoloConfig, YoloHead};
use super::v1::{YoloV1, v1_candidates, v1_loss};
use crate::Result;
use crate::batch::{DetectionBatch, DetectionBatcher, DetectionItem};
use crate::config::DetectConfig;
use crate::data::{Detection, DetectionSet};
use crate::detector::{Detector, DetectorTask};
use crate::train::{Trained, backbone, backbone_shape, fit_on_sets};
use crate::two_stage::ScaleJitter;
use crate::two_stage::pipeline::detect_in_batches;

/// Either YOLO, as one module (what checkpoints hold).
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Yolo {
    /// YOLOv1.
    V1(YoloV1),
    /// The anchor-box head.
    Anchor(AnchorYolo),
}

impl Yolo {
    /// The network of `config`'s head on `backbone`, for `classes` object classes.
    pub fn new(
        config: &YoloConfig,
        backbone: kiln_nets::zoo::Network,
        classes: usize,
        device: &Device,
    ) -> Result<Self> {
        Ok(match config.head {
            YoloHead::V1 => Self::V1(YoloV1::new(&config.v1, backbone, classes, device)),
            YoloHead::Anchor => Self::Anchor(AnchorYolo::new(
                &config.anchor,
                backbone,
                classes,
                config.input_size,
                device,
            )?),
        })
    }
}

/// YOLO training and detection.
#[derive(Debug)]
pub struct YoloTask {
    /// Sizes items for the network (square warp for v1, letterbox for the anchor head).
    pub batcher: DetectionBatcher,
    /// The `[yolo]` settings.
    pub config: YoloConfig,
    /// Object classes.
    pub classes: usize,
    /// Seed of the scale jitter.
    pub seed: u64,
    steps: AtomicU64,
}

impl YoloTask {
    /// The task of `config` for `classes` object classes.
    pub fn new(config: &YoloConfig, classes: usize, seed: u64) -> Self {
        Self {
            batcher: DetectionBatcher::new(config.resize()),
            config: config.clone(),
            classes,
            seed,
            steps: AtomicU64::new(0),
        }
    }

    /// The loss of a batch.
    pub fn loss(&self, model: &Yolo, batch: DetectionBatch) -> Result<Tensor<1>> {
        match model {
            Yolo::V1(net) => v1_loss(
                net.forward(batch.images),
                &batch.infos,
                &self.config.v1,
                self.classes,
            ),
            Yolo::Anchor(net) => Ok(anchor_loss(
                net.forward(batch.images),
                &batch.infos,
                &self.config.anchor,
                self.classes,
                self.config.input_size,
            )?
            .total()),
        }
    }

    /// Detections of a batch, in input pixels.
    pub fn detect(&self, model: &Yolo, batch: DetectionBatch) -> Result<Vec<Vec<Detection>>> {
        let candidates = match model {
            Yolo::V1(net) => v1_candidates(net.forward(batch.images), &batch.infos, net.boxes)?,
            Yolo::Anchor(net) => anchor_candidates(
                net.forward(batch.images),
                &batch.infos,
                &self.config.anchor,
                self.classes,
            )?,
        };
        Ok(candidates
            .iter()
            .zip(&batch.infos)
            .map(|(found, info)| self.config.detection.select(found, info))
            .collect())
    }
}

impl Detector for YoloTask {
    type Model = Yolo;
    const LOSS_NAME: &'static str = "YOLO loss";

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

    /// The loss draws nothing: `rng` is unused.
    fn batch_loss(
        &self,
        model: &Yolo,
        batch: DetectionBatch,
        _rng: &mut ChaCha8Rng,
    ) -> TrainResult<Tensor<1>> {
        self.loss(model, batch)
            .map_err(|e| TrainError::Invalid(e.to_string()))
    }

    fn batch_detections(&self, model: &Yolo, batch: DetectionBatch) -> Result<Vec<Vec<Detection>>> {
        self.detect(model, batch)
    }
}

/// YOLO on the config's pretrained backbone, for `classes` object classes.
pub fn yolo(config: &DetectConfig, classes: usize, device: &Device) -> Result<Yolo> {
    Yolo::new(&config.yolo, backbone(config, device)?, classes, device)
}

/// The same network with untrained weights (to load a checkpoint into).
pub fn yolo_shape(config: &DetectConfig, classes: usize, device: &Device) -> Result<Yolo> {
    Yolo::new(
        &config.yolo,
        backbone_shape(config, device)?,
        classes,
        device,
    )
}

/// Trains YOLO on `train` (validating on `val`), writing the run into `run`.
pub fn train_yolo(
    config: &DetectConfig,
    train: &DetectionSet,
    val: &DetectionSet,
    run: &RunDir,
    device: &Device,
    resume: bool,
) -> Result<Trained<Yolo>> {
    let classes = train.categories.len();
    let task = YoloTask::new(&config.yolo, classes, config.seed);
    let model = yolo(config, classes, device)?;
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

/// Detections of `model` on `items` in original-image pixels, with the images per second, in
/// batches of `batch_size` (the config's `eval_batch` when `None`).
pub fn detect_yolo(
    config: &DetectConfig,
    model: &Yolo,
    classes: usize,
    items: &[DetectionItem],
    batch_size: Option<usize>,
    device: &Device,
) -> Result<(Vec<Detection>, f64)> {
    let model = model.valid();
    let task = YoloTask::new(&config.yolo, classes, config.seed);
    detect_in_batches(
        items,
        &task.batcher,
        batch_size.unwrap_or(config.yolo.eval_batch),
        device,
        |batch| task.detect(&model, batch),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::ResizeRule;
    use crate::data::BoundingBox;
    use burn::data::dataloader::batcher::Batcher;
    use kiln_data::Image;
    use kiln_nets::EfficientNetLiteConfig;
    use kiln_nets::zoo::Network;

    fn item(id: u64) -> DetectionItem {
        DetectionItem {
            image: Image::filled(96, 64, 3, 100 + id as u8),
            boxes: vec![BoundingBox {
                x1: 10.0,
                y1: 8.0,
                x2: 60.0,
                y2: 50.0,
            }],
            labels: vec![(id % 2) as usize],
            image_id: id,
            original_size: [96, 64],
            proposals: vec![],
            masks: Vec::new(),
        }
    }

    /// A few SGD steps on two images lower both heads' losses (the gradients reach the
    /// outputs the losses are built from).
    #[test]
    fn a_few_steps_lower_the_loss_of_both_heads() {
        use burn::optim::{GradientsParams, SgdConfig};
        let device = Device::flex().autodiff();
        for head in [YoloHead::V1, YoloHead::Anchor] {
            let mut config = YoloConfig {
                head,
                input_size: if head == YoloHead::V1 { 128 } else { 96 },
                ..Default::default()
            };
            config.v1.grid = 2;
            config.v1.channels = 16;
            config.v1.hidden = 32;
            config.v1.dropout = 0.0;
            config.anchor.neck_channels = 16;
            config.validate().unwrap();
            let task = YoloTask::new(&config, 2, 0);
            // No stochastic depth, so the same batch gives the same loss until the weights move.
            device.seed(7);
            let mut lite0 = EfficientNetLiteConfig::lite0(1);
            lite0.drop_connect = 0.0;
            let backbone = Network::EfficientNet(lite0.init(&device));
            let mut model = Yolo::new(&config, backbone, 2, &device).unwrap();
            let mut optimizer = SgdConfig::new().init();
            let batch = || task.batcher.batch(vec![item(1), item(2)], &device);
            let first = task.loss(&model, batch()).unwrap().into_scalar::<f32>();
            for _ in 0..5 {
                let loss = task.loss(&model, batch()).unwrap();
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optimizer.step(0.01, model, grads);
            }
            let last = task.loss(&model, batch()).unwrap().into_scalar::<f32>();
            assert!(last < first, "{head:?}: {first} → {last}");
            // Detection runs and keeps to the rule's maximum.
            let found = task.detect(
                &model.valid(),
                task.batcher.batch(vec![item(3)], &device.clone().inner()),
            );
            assert!(found.unwrap()[0].len() <= config.detection.max_detections);
        }
        assert_eq!(
            YoloConfig::default().resize(),
            ResizeRule::ShortSide {
                short_side: 416,
                max_long_side: 416
            }
        );
    }
}
