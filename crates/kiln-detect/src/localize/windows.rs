//! Detections from a trained [`Localizer`]: one box per image (localization), or every window
//! at several scales merged by NMS (OverFeat).

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::model::Localizer;
use crate::batch::{DetectionBatch, DetectionBatcher, DetectionItem, ResizeRule};
use crate::data::{BoundingBox, Detection};
use crate::ops::host::{batched_nms, ordered};
use crate::{DetectError, Result};

fn read<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec_as::<f32>()
        .map_err(|e| DetectError::invalid("predictions", format!("{e:?}")))
}

/// One detection per image of `batch` (resized by a square rule): the most likely object
/// class, scored by its probability, with the regressed box in original-image pixels.
pub fn localize_image(model: &Localizer, batch: DetectionBatch) -> Result<Vec<Detection>> {
    let (logits, boxes) = model.forward(batch.images);
    let classes = logits.dims()[1];
    let probs = read(softmax(logits, 1))?;
    let boxes = read(boxes)?;
    Ok(batch
        .infos
        .iter()
        .enumerate()
        .map(|(i, info)| {
            let p = &probs[i * classes..(i + 1) * classes];
            let best = (1..classes)
                .max_by(|&a, &b| p[a].total_cmp(&p[b]))
                .unwrap_or(1);
            let [w, h] = [info.input_size[0] as f32, info.input_size[1] as f32];
            let b = &boxes[i * 4..i * 4 + 4];
            let input_box = BoundingBox {
                x1: b[0] * w,
                y1: b[1] * h,
                x2: b[2] * w,
                y2: b[3] * h,
            };
            Detection {
                image_id: info.image_id,
                class: best - 1,
                bbox: info.to_original(&ordered(&input_box)),
                score: p[best],
            }
        })
        .collect())
}

/// OverFeat's multi-scale sliding-window search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowSearch {
    /// Window side in input pixels (the size the network was trained on; a multiple of 32).
    pub window: usize,
    /// Short sides the image is resized to, one network pass each.
    pub scales: Vec<usize>,
    /// Windows whose class probability is below this give no detection.
    pub score_threshold: f32,
    /// IoU above which NMS merges two detections of a class.
    pub nms_iou: f32,
    /// Detections kept per image, best first.
    pub max_detections: usize,
}

impl Default for WindowSearch {
    fn default() -> Self {
        Self {
            window: 224,
            scales: vec![224, 320, 448],
            score_threshold: 0.05,
            nms_iou: 0.4,
            max_detections: 100,
        }
    }
}

impl WindowSearch {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: &str| Err(DetectError::invalid("[overfeat]", reason.to_string()));
        if self.window == 0 || !self.window.is_multiple_of(32) {
            return bad("window must be a positive multiple of 32 (the backbone's stride)");
        }
        if self.scales.is_empty() || self.scales.iter().any(|&s| s < self.window) {
            return bad("scales must be short sides of at least the window size");
        }
        if !(0.0..=1.0).contains(&self.nms_iou) || !(0.0..1.0).contains(&self.score_threshold) {
            return bad("nms_iou must be in [0, 1] and score_threshold in [0, 1)");
        }
        Ok(())
    }
}

/// OverFeat detections for one image: at every scale the network runs once over the whole
/// image, every window's class probabilities and box become detections, and per-class NMS
/// merges them across windows and scales.
pub fn sliding_windows(
    model: &Localizer,
    item: &DetectionItem,
    search: &WindowSearch,
    device: &Device,
) -> Result<Vec<Detection>> {
    const STRIDE: usize = 32;
    let mut found: Vec<Detection> = Vec::new();
    for &short_side in &search.scales {
        let batcher = DetectionBatcher::new(ResizeRule::ShortSide {
            short_side,
            max_long_side: short_side * 4,
        });
        let batch = batcher.batch(vec![item.clone()], device);
        let info = batch.infos[0].clone();
        let (logits, boxes) = model.forward_windows(batch.images);
        let [_, classes, h, w] = logits.dims();
        let probs = read(softmax(logits, 1))?;
        let boxes = read(boxes)?;
        let plane = h * w;
        for i in 0..h {
            for j in 0..w {
                let (x0, y0) = ((j * STRIDE) as f32, (i * STRIDE) as f32);
                // Windows wholly in the padding see nothing of the image.
                if x0 >= info.input_size[0] as f32 || y0 >= info.input_size[1] as f32 {
                    continue;
                }
                let at = i * w + j;
                let side = search.window as f32;
                let coord = |k: usize| boxes[k * plane + at] * side;
                let input_box = BoundingBox {
                    x1: x0 + coord(0),
                    y1: y0 + coord(1),
                    x2: x0 + coord(2),
                    y2: y0 + coord(3),
                };
                let bbox = info.to_original(&ordered(&input_box));
                if bbox.width() <= 0.0 || bbox.height() <= 0.0 {
                    continue;
                }
                for class in 1..classes {
                    let score = probs[class * plane + at];
                    if score >= search.score_threshold {
                        found.push(Detection {
                            image_id: info.image_id,
                            class: class - 1,
                            bbox,
                            score,
                        });
                    }
                }
            }
        }
    }
    let boxes: Vec<BoundingBox> = found.iter().map(|d| d.bbox).collect();
    let scores: Vec<f32> = found.iter().map(|d| d.score).collect();
    let classes: Vec<usize> = found.iter().map(|d| d.class).collect();
    let keep = batched_nms(&boxes, &scores, &classes, search.nms_iou);
    Ok(keep
        .into_iter()
        .take(search.max_detections)
        .map(|k| found[k])
        .collect())
}
