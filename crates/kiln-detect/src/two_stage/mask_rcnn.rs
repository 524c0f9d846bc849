//! Mask R-CNN (He et al. 2017): Faster R-CNN plus the mask branch ([`super::mask_head`]) on
//! the same feature map, trained jointly — RPN, box head and mask losses summed, the mask loss
//! on the box head's positive regions — and at test time a mask per kept detection, pasted
//! into its box and thresholded.

use std::sync::atomic::AtomicU64;

use burn::module::Module;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};
use kiln_train::{Result as TrainResult, RunDir, TrainError};
use rand_chacha::ChaCha8Rng;

use super::faster::{FasterRcnn, FasterRcnnTask};
use super::mask_head::{MaskHead, MaskHeadConfig, MaskTargetRegion, mask_loss};
use super::pipeline::run_in_batches;
use super::scale::ScaleJitter;
use crate::batch::{DetectionBatch, DetectionBatcher, DetectionItem, ImageInfo};
use crate::config::DetectConfig;
use crate::data::{BoundingBox, Detection, DetectionSet, MaskDetection};
use crate::detector::{Detector, DetectorTask};
use crate::ops::masks::paste_mask;
use crate::ops::roi_align;
use crate::train::{Trained, backbone, backbone_shape, fit_on_sets};
use crate::{DetectError, Result};

/// Faster R-CNN and the mask branch.
#[derive(Module, Debug)]
pub struct MaskRcnn {
    /// Backbone, RPN and box head.
    pub faster: FasterRcnn,
    /// The mask branch.
    pub mask: MaskHead,
}

impl MaskRcnn {
    /// The network on `backbone` for `classes` object classes.
    pub fn new(
        config: &DetectConfig,
        backbone: kiln_nets::zoo::Network,
        classes: usize,
        device: &Device,
    ) -> Self {
        let channels = config.faster_rcnn.head.neck_channels;
        Self {
            faster: FasterRcnn::new(&config.faster_rcnn, backbone, classes, device),
            mask: MaskHead::new(&config.mask_rcnn, channels, classes, device),
        }
    }

    /// Mask probabilities `[R, size, size]` of each image's `boxes` (input pixels), for the
    /// class of each box (`classes`, flattened in image order).
    fn mask_probabilities(
        &self,
        features: Tensor<4>,
        boxes: &[Vec<BoundingBox>],
        classes: &[usize],
        config: &MaskHeadConfig,
    ) -> Tensor<3> {
        let pooled = roi_align(
            features,
            boxes,
            &config.pooler(self.faster.detector.stride()),
        );
        let logits = self.mask.forward(pooled);
        sigmoid(self.mask.select(logits, classes))
    }
}

/// Mask R-CNN training in kiln-train's loop.
#[derive(Debug)]
pub struct MaskRcnnTask {
    /// Faster R-CNN's part of the task.
    pub faster: FasterRcnnTask,
    /// The mask branch's settings.
    pub mask: MaskHeadConfig,
}

/// Decoded masks of one image's objects, `(pixels, [width, height])`.
type Bitmaps = Vec<(Vec<u8>, [usize; 2])>;

impl MaskRcnnTask {
    /// The task of `config` for `classes` object classes.
    pub fn new(config: &DetectConfig, classes: usize) -> Self {
        Self {
            faster: FasterRcnnTask::new(&config.faster_rcnn, classes, config.seed),
            mask: config.mask_rcnn.clone(),
        }
    }

    /// Detections with masks of a batch, in original-image pixels.
    pub fn detect_masks(
        &self,
        model: &MaskRcnn,
        batch: DetectionBatch,
    ) -> Result<Vec<Vec<MaskDetection>>> {
        let features = model.faster.detector.features(batch.images.clone());
        let infos = batch.infos.clone();
        let detections = self
            .faster
            .detect_on_features(&model.faster, features.clone(), &infos)?;
        let boxes: Vec<Vec<BoundingBox>> = detections
            .iter()
            .map(|ds| ds.iter().map(|d| d.bbox).collect())
            .collect();
        let classes: Vec<usize> = detections.iter().flatten().map(|d| d.class).collect();
        if classes.is_empty() {
            return Ok(infos.iter().map(|_| Vec::new()).collect());
        }
        let probabilities = model.mask_probabilities(features, &boxes, &classes, &self.mask);
        let size = self.mask.mask_size();
        let values: Vec<f32> = probabilities
            .into_data()
            .try_to_vec_as::<f32>()
            .map_err(|e| DetectError::invalid("mask probabilities", format!("{e:?}")))?;
        let mut grids = values.chunks_exact(size * size);
        Ok(infos
            .iter()
            .zip(detections)
            .map(|(info, found)| {
                found
                    .into_iter()
                    .zip(grids.by_ref())
                    .map(|(d, grid)| to_original(info, d, grid, size, self.mask.threshold))
                    .collect()
            })
            .collect())
    }
}

/// A detection in input pixels and its mask grid, as a [`MaskDetection`] in the original
/// image.
fn to_original(
    info: &ImageInfo,
    d: Detection,
    grid: &[f32],
    size: usize,
    threshold: f32,
) -> MaskDetection {
    let bbox = info.to_original(&d.bbox);
    let [w, h] = info.original_size;
    MaskDetection {
        detection: Detection { bbox, ..d },
        mask: paste_mask(grid, size, &bbox, w, h, threshold),
        area: f64::from(bbox.width()) * f64::from(bbox.height()),
    }
}

impl Detector for MaskRcnnTask {
    type Model = MaskRcnn;
    const LOSS_NAME: &'static str = "RPN + box head + mask losses";

    fn batcher(&self) -> &DetectionBatcher {
        &self.faster.batcher
    }

    fn classes(&self) -> usize {
        self.faster.classes
    }

    fn seed(&self) -> u64 {
        self.faster.seed
    }

    fn steps(&self) -> &AtomicU64 {
        self.faster.steps()
    }

    fn scale_jitter(&self) -> Option<ScaleJitter> {
        self.faster.config.scale_jitter
    }

    /// Faster R-CNN's losses plus the weighted mask loss on the positive sampled regions of
    /// objects that have masks.
    fn batch_loss(
        &self,
        model: &MaskRcnn,
        batch: DetectionBatch,
        rng: &mut ChaCha8Rng,
    ) -> TrainResult<Tensor<1>> {
        let infos = batch.infos.clone();
        let parts = self.faster.loss_parts(&model.faster, batch, rng)?;
        let bitmaps: Vec<Bitmaps> = infos
            .iter()
            .map(|info| {
                info.masks
                    .iter()
                    .map(|m| (m.to_bitmap(), [m.width as usize, m.height as usize]))
                    .collect()
            })
            .collect();
        let mut regions: Vec<Vec<BoundingBox>> = Vec::with_capacity(infos.len());
        let mut targets = Vec::new();
        for ((info, sampled), masks) in infos.iter().zip(&parts.sampled).zip(&bitmaps) {
            let mut mine = Vec::new();
            if masks.len() == info.boxes.len() {
                for roi in sampled.iter().filter(|r| r.label > 0) {
                    let Some(object) = roi
                        .target
                        .and_then(|t| info.boxes.iter().position(|b| *b == t))
                    else {
                        continue;
                    };
                    let (pixels, size) = &masks[object];
                    mine.push(roi.region);
                    targets.push(MaskTargetRegion {
                        region: roi.region,
                        class: roi.label - 1,
                        mask: pixels,
                        mask_size: *size,
                        input_size: info.input_size,
                    });
                }
            }
            regions.push(mine);
        }
        if targets.is_empty() {
            return Ok(parts.loss);
        }
        let pooled = roi_align(
            parts.features,
            &regions,
            &self.mask.pooler(model.faster.detector.stride()),
        );
        let logits = model.mask.forward(pooled);
        let masks = mask_loss(&model.mask, logits, &targets)
            .ok_or_else(|| TrainError::Invalid("no mask regions".into()))?;
        Ok(parts.loss + masks.mul_scalar(self.mask.loss_weight))
    }

    /// The boxes alone (validation scores box AP50).
    fn batch_detections(
        &self,
        model: &MaskRcnn,
        batch: DetectionBatch,
    ) -> Result<Vec<Vec<Detection>>> {
        self.faster.batch_detections(&model.faster, batch)
    }
}

/// Mask R-CNN on the config's pretrained backbone, for `classes` object classes.
pub fn mask_rcnn(config: &DetectConfig, classes: usize, device: &Device) -> Result<MaskRcnn> {
    Ok(MaskRcnn::new(
        config,
        backbone(config, device)?,
        classes,
        device,
    ))
}

/// The same network with untrained weights (to load a checkpoint into).
pub fn mask_rcnn_shape(config: &DetectConfig, classes: usize, device: &Device) -> Result<MaskRcnn> {
    Ok(MaskRcnn::new(
        config,
        backbone_shape(config, device)?,
        classes,
        device,
    ))
}

/// Trains Mask R-CNN on `train` (validating on `val`), writing the run into `run`.
pub fn train_mask_rcnn(
    config: &DetectConfig,
    train: &DetectionSet,
    val: &DetectionSet,
    run: &RunDir,
    device: &Device,
    resume: bool,
) -> Result<Trained<MaskRcnn>> {
    if let Some(im) = train.image_without_masks() {
        return Err(DetectError::invalid(
            "mask_rcnn training data",
            format!(
                "image {} ({}) has an object without a mask; Mask R-CNN trains on COCO \
                 segmentations (polygons or RLE) for every object",
                im.id,
                im.path.display()
            ),
        ));
    }
    let classes = train.categories.len();
    let task = MaskRcnnTask::new(config, classes);
    let model = mask_rcnn(config, classes, device)?;
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

/// Detections with masks of `model` on `items`, in original-image pixels, with the images per
/// second.
pub fn detect_mask_rcnn(
    config: &DetectConfig,
    model: &MaskRcnn,
    classes: usize,
    items: &[DetectionItem],
    device: &Device,
) -> Result<(Vec<MaskDetection>, f64)> {
    let model = model.valid();
    let task = MaskRcnnTask::new(config, classes);
    run_in_batches(
        items,
        &task.faster.batcher,
        config.faster_rcnn.eval_batch,
        device,
        |batch| {
            Ok(task
                .detect_masks(&model, batch)?
                .into_iter()
                .flatten()
                .collect())
        },
    )
}
