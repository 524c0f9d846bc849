//! Training the [`Localizer`] in kiln-train's loop: cross-entropy over background + classes and
//! a box loss on the items that hold an object.

use burn::nn::loss::{CrossEntropyLossConfig, SmoothL1LossConfig};
use burn::tensor::{Int, Tensor, TensorData};
use kiln_train::task::{Evaluation, StepOutput, Task};
use kiln_train::{Result as TrainResult, TrainError};
use serde::{Deserialize, Serialize};

use super::model::Localizer;
use crate::batch::{DetectionBatch, DetectionBatcher, DetectionItem, ImageInfo};
use crate::data::BoundingBox;
use crate::ops::host::area;

/// How the 4-number box head is trained.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BoxLoss {
    /// Smooth L1 on the normalised coordinates, quadratic below `beta`.
    SmoothL1 {
        /// Where the loss turns from quadratic to linear.
        beta: f32,
    },
    /// Squared error on the normalised coordinates.
    L2,
}

/// What one training item asks of the network.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalizeTarget {
    /// 0 for background, `1 + class` for an object.
    pub class: usize,
    /// The object's box as fractions of the input (`None` for background).
    pub bbox: Option<[f32; 4]>,
}

impl LocalizeTarget {
    /// The target of an image or window of `[width, height]` holding `boxes`: the object with
    /// the largest area, if it covers at least `min_fraction` of the input; else background.
    pub fn of(info: &ImageInfo, min_fraction: f32) -> Self {
        let [w, h] = [info.input_size[0] as f32, info.input_size[1] as f32];
        let largest = info
            .boxes
            .iter()
            .zip(&info.labels)
            .max_by(|a, b| area(a.0).total_cmp(&area(b.0)));
        match largest {
            Some((b, &label)) if area(b) >= min_fraction * w * h && area(b) > 0.0 => Self {
                class: label + 1,
                bbox: Some([b.x1 / w, b.y1 / h, b.x2 / w, b.y2 / h]),
            },
            _ => Self {
                class: 0,
                bbox: None,
            },
        }
    }
}

/// Localization / OverFeat training: [`DetectionBatcher`] batches, the class head's
/// cross-entropy plus `box_weight` × the box loss over the items with an object.
#[derive(Clone, Debug)]
pub struct LocalizeTask {
    /// Resizes items to the network input.
    pub batcher: DetectionBatcher,
    /// The box loss.
    pub box_loss: BoxLoss,
    /// Weight of the box loss against the class loss.
    pub box_weight: f32,
    /// An object covering less of the input than this makes it a background sample.
    pub min_object_fraction: f32,
}

/// IoU of two boxes given as `[x1, y1, x2, y2]`.
fn iou4(a: &[f32], b: &[f32]) -> f32 {
    let to_box = |v: &[f32]| BoundingBox {
        x1: v[0],
        y1: v[1],
        x2: v[2],
        y2: v[3],
    };
    crate::ops::host::iou(&to_box(a), &to_box(b))
}

impl LocalizeTask {
    /// Loss pieces of a batch: (class loss, box loss or `None` without objects, logits, boxes,
    /// targets).
    fn losses(
        &self,
        model: &Localizer,
        batch: DetectionBatch,
    ) -> (
        Tensor<1>,
        Option<Tensor<1>>,
        Tensor<2>,
        Tensor<2>,
        Vec<LocalizeTarget>,
    ) {
        let device = batch.images.device();
        let targets: Vec<LocalizeTarget> = batch
            .infos
            .iter()
            .map(|info| LocalizeTarget::of(info, self.min_object_fraction))
            .collect();
        let (logits, boxes) = model.forward(batch.images);
        let n = targets.len();
        let classes: Vec<i64> = targets.iter().map(|t| t.class as i64).collect();
        let classes = Tensor::<1, Int>::from_data(TensorData::new(classes, [n]), &device);
        let class_loss = CrossEntropyLossConfig::new()
            .init(&device)
            .forward(logits.clone(), classes);
        let with_box: Vec<i64> = (0..n)
            .filter(|&i| targets[i].bbox.is_some())
            .map(|i| i as i64)
            .collect();
        let box_loss = (!with_box.is_empty()).then(|| {
            let k = with_box.len();
            let wanted: Vec<f32> = targets.iter().filter_map(|t| t.bbox).flatten().collect();
            let wanted = Tensor::<2>::from_data(TensorData::new(wanted, [k, 4]), &device);
            let rows = Tensor::<1, Int>::from_data(TensorData::new(with_box, [k]), &device);
            let predicted = boxes.clone().select(0, rows);
            let per_value = match self.box_loss {
                BoxLoss::SmoothL1 { beta } => SmoothL1LossConfig::new()
                    .with_beta(beta)
                    .init()
                    .forward(predicted, wanted),
                BoxLoss::L2 => (predicted - wanted).powi_scalar(2),
            };
            // Summed over the 4 coordinates, averaged over the boxes.
            per_value.sum().div_scalar(k as f32)
        });
        (class_loss, box_loss, logits, boxes, targets)
    }
}

fn read(t: Tensor<2>) -> TrainResult<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec_as::<f32>()
        .map_err(|e| TrainError::Invalid(format!("reading predictions: {e:?}")))
}

impl Task for LocalizeTask {
    type Model = Localizer;
    type Item = DetectionItem;
    type Batch = DetectionBatch;
    type Batcher = DetectionBatcher;
    const SCORE: &'static str = "box_iou";

    fn batcher(&self) -> DetectionBatcher {
        self.batcher.clone()
    }

    fn train_step(&self, model: &Localizer, batch: DetectionBatch) -> TrainResult<StepOutput> {
        let items = batch.infos.len();
        let (class_loss, box_loss, ..) = self.losses(model, batch);
        let loss = match box_loss {
            Some(b) => class_loss + b.mul_scalar(self.box_weight),
            None => class_loss,
        };
        Ok(StepOutput {
            loss,
            items,
            sums: vec![],
        })
    }

    /// Loss, class accuracy, and the mean IoU of predicted with target boxes over the items
    /// holding an object (`box_iou`, the score that picks `best.bpk`).
    fn evaluate(
        &self,
        model: &Localizer,
        batches: &mut dyn Iterator<Item = TrainResult<DetectionBatch>>,
    ) -> TrainResult<Evaluation> {
        let (mut loss, mut n, mut hits, mut iou_sum, mut with_box) =
            (0.0, 0usize, 0usize, 0.0, 0usize);
        for batch in batches {
            let batch = batch?;
            let count = batch.infos.len();
            let (class_loss, box_loss, logits, boxes, targets) = self.losses(model, batch);
            let mut total = class_loss.into_scalar::<f64>();
            if let Some(b) = box_loss {
                total += b.into_scalar::<f64>() * self.box_weight as f64;
            }
            loss += total * count as f64;
            n += count;
            let classes = logits.dims()[1];
            let logits = read(logits)?;
            let boxes = read(boxes)?;
            for (i, t) in targets.iter().enumerate() {
                let row = &logits[i * classes..(i + 1) * classes];
                let best = (0..classes)
                    .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                    .unwrap_or(0);
                hits += usize::from(best == t.class);
                if let Some(b) = t.bbox {
                    iou_sum += iou4(&boxes[i * 4..i * 4 + 4], &b) as f64;
                    with_box += 1;
                }
            }
        }
        let n = n.max(1) as f64;
        Ok(Evaluation {
            loss: loss / n,
            metrics: vec![
                ("accuracy", hits as f64 / n),
                ("box_iou", iou_sum / with_box.max(1) as f64),
            ],
        })
    }
}
