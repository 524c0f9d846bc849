//! The anchor head's losses and decoding (YOLOv5's): a prediction `(tx, ty, tw, th, to, tc…)` of
//! anchor `(aw, ah)` in cell `(i, j)` of stride `s` is the box centred at
//! `((2σ(tx) − 0.5 + i) s, (2σ(ty) − 0.5 + j) s)` of size `((2σ(tw))² aw, (2σ(th))² ah)` — bounded
//! to a quarter to four times the anchor, so no exponential can blow up — with objectness
//! `σ(to)` and class probabilities `σ(tc)`.
//!
//! Losses: `1 − CIoU` (or GIoU) of the matched predictions' boxes with their objects; binary
//! cross-entropy of every objectness against the IoU of its matched box (0 for unmatched
//! predictions), weighted per level; binary cross-entropy of the matched predictions' classes
//! (only with more than one class). Weighted as YOLOv5 weighs them and multiplied by the batch
//! size (its convention, which its learning rates assume).

use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::assign::{Match, assign};
use crate::Result;
use crate::batch::ImageInfo;
use crate::data::BoundingBox;
use crate::ops::{boxes_to_tensor, paired_complete_iou, paired_generalized_iou};
use crate::two_stage::Candidate;
use crate::yolo::config::{AnchorHeadConfig, IouLoss};
use crate::yolo::decode::read_values;

/// The three losses of a batch, each already weighted.
#[derive(Debug)]
pub struct AnchorLoss {
    /// Box loss.
    pub boxes: Tensor<1>,
    /// Objectness loss.
    pub objectness: Tensor<1>,
    /// Class loss (zero with one class).
    pub classes: Tensor<1>,
}

impl AnchorLoss {
    /// Their sum.
    pub fn total(self) -> Tensor<1> {
        self.boxes + self.objectness + self.classes
    }
}

/// Element-wise binary cross-entropy of `logits` against `targets` in [0, 1], computed
/// stably: `max(x, 0) − x t + log(1 + e^−|x|)`.
pub fn bce_with_logits<const D: usize>(logits: Tensor<D>, targets: Tensor<D>) -> Tensor<D> {
    logits.clone().clamp_min(0.0) - logits.clone() * targets + logits.abs().neg().exp().log1p()
}

/// A level's outputs `[batch, anchors × (5 + classes), h, w]` as a table
/// `[batch × anchors × h × w, 5 + classes]` (row order: image, anchor, row, column).
fn table(output: Tensor<4>, anchors: usize) -> Tensor<2> {
    let [batch, channels, h, w] = output.dims();
    let per = channels / anchors;
    output
        .reshape([batch, anchors, per, h, w])
        .permute([0, 1, 3, 4, 2])
        .reshape([batch * anchors * h * w, per])
}

fn column_tensor(values: Vec<f32>, rows: usize, columns: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, [rows, columns]), device)
}

/// The boxes `[M, 4]` decoded from predictions `[M, 5 + classes]` of the `matches`.
fn decode_matched(predicted: Tensor<2>, matches: &[Match], stride: f32) -> Tensor<2> {
    let device = predicted.device();
    let m = matches.len();
    let cells = column_tensor(
        matches
            .iter()
            .flat_map(|x| x.cell.map(|c| c as f32))
            .collect(),
        m,
        2,
        &device,
    );
    let anchors = column_tensor(
        matches.iter().flat_map(|x| x.anchor).collect(),
        m,
        2,
        &device,
    );
    let xy = (sigmoid(predicted.clone().slice([0..m, 0..2])).mul_scalar(2.0) - 0.5 + cells)
        .mul_scalar(stride);
    let wh = sigmoid(predicted.slice([0..m, 2..4]))
        .mul_scalar(2.0)
        .powi_scalar(2)
        * anchors;
    let half = wh.div_scalar(2.0);
    Tensor::cat(vec![xy.clone() - half.clone(), xy + half], 1)
}

/// The weighted losses of a batch's `outputs` (finest level first) against its targets, for
/// `classes` classes and inputs of about `input_size` pixels.
pub fn anchor_loss(
    outputs: Vec<Tensor<4>>,
    infos: &[ImageInfo],
    config: &AnchorHeadConfig,
    classes: usize,
    input_size: usize,
) -> Result<AnchorLoss> {
    let device = outputs[0].device();
    let levels = outputs.len() as f32;
    let sizes: Vec<[usize; 2]> = outputs
        .iter()
        .map(|o| {
            let [_, _, h, w] = o.dims();
            [h, w]
        })
        .collect();
    let matched = assign(infos, &sizes, config);
    let anchors = config.per_level();
    let zero = || Tensor::<1>::zeros([1], &device);
    let (mut boxes, mut objectness, mut class_loss) = (zero(), zero(), zero());
    for (level, (output, matches)) in outputs.into_iter().zip(&matched).enumerate() {
        let predictions = table(output, anchors);
        let rows = predictions.dims()[0];
        let mut wanted = vec![0.0f32; rows];
        if !matches.is_empty() {
            let m = matches.len();
            let index: Vec<i64> = matches.iter().map(|x| x.row as i64).collect();
            let index = Tensor::<1, Int>::from_data(TensorData::new(index, [m]), &device);
            let predicted = predictions.clone().select(0, index);
            let decoded = decode_matched(predicted.clone(), matches, config.strides[level] as f32);
            let targets: Vec<BoundingBox> = matches.iter().map(|x| x.target).collect();
            let targets = boxes_to_tensor(&targets, &device);
            let overlap = match config.box_loss {
                IouLoss::Ciou => paired_complete_iou(decoded, targets),
                IouLoss::Giou => paired_generalized_iou(decoded, targets),
            };
            boxes = boxes + overlap.clone().neg().add_scalar(1.0).mean();
            // Objectness targets: the (detached, non-negative) IoU of the matched box; where
            // several matches share a prediction, the best.
            for (x, iou) in matches.iter().zip(read_values(overlap.detach())?) {
                wanted[x.row] = wanted[x.row].max(iou.max(0.0));
            }
            if classes > 1 {
                let mut one_hot = vec![0.0f32; m * classes];
                for (k, x) in matches.iter().enumerate() {
                    one_hot[k * classes + x.label] = 1.0;
                }
                let logits = predicted.slice([0..m, 5..5 + classes]);
                class_loss = class_loss
                    + bce_with_logits(logits, column_tensor(one_hot, m, classes, &device)).mean();
            }
        }
        let logits = predictions.slice([0..rows, 4..5]);
        let wanted = column_tensor(wanted, rows, 1, &device);
        objectness = objectness
            + bce_with_logits(logits, wanted)
                .mean()
                .mul_scalar(config.level_weights[level]);
    }
    let batch = infos.len() as f32;
    let scale = 3.0 / levels * batch;
    let input_factor = (input_size as f32 / 640.0).powi(2);
    Ok(AnchorLoss {
        boxes: boxes.mul_scalar(config.box_weight * scale),
        objectness: objectness.mul_scalar(config.objectness_weight * input_factor * scale),
        classes: class_loss.mul_scalar(config.class_weight * classes as f32 / 80.0 * scale),
    })
}

/// Every prediction's box (input pixels) and per-class score — objectness times class
/// probability, or objectness alone with one class — per image of a batch.
pub fn anchor_candidates(
    outputs: Vec<Tensor<4>>,
    infos: &[ImageInfo],
    config: &AnchorHeadConfig,
    classes: usize,
) -> Result<Vec<Vec<Candidate>>> {
    let anchors = config.per_level();
    let per = 5 + classes;
    let mut found = vec![Vec::new(); infos.len()];
    for (level, output) in outputs.into_iter().enumerate() {
        let [_, _, h, w] = output.dims();
        let stride = config.strides[level] as f32;
        let values = read_values(sigmoid(table(output, anchors)))?;
        for (image, out) in found.iter_mut().enumerate() {
            for (a, anchor) in config.level_sizes(level).iter().enumerate() {
                for j in 0..h {
                    for i in 0..w {
                        let row = ((image * anchors + a) * h + j) * w + i;
                        let p = &values[row * per..(row + 1) * per];
                        let cx = (2.0 * p[0] - 0.5 + i as f32) * stride;
                        let cy = (2.0 * p[1] - 0.5 + j as f32) * stride;
                        let bw = (2.0 * p[2]).powi(2) * anchor[0];
                        let bh = (2.0 * p[3]).powi(2) * anchor[1];
                        let bbox = BoundingBox {
                            x1: cx - bw / 2.0,
                            y1: cy - bh / 2.0,
                            x2: cx + bw / 2.0,
                            y2: cy + bh / 2.0,
                        };
                        for class in 0..classes {
                            let score = if classes == 1 {
                                p[4]
                            } else {
                                p[4] * p[5 + class]
                            };
                            out.push(Candidate { bbox, score, class });
                        }
                    }
                }
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::host::iou;

    /// The logit whose sigmoid is `p`.
    fn logit(p: f32) -> f32 {
        (p / (1.0 - p)).ln()
    }

    fn config() -> AnchorHeadConfig {
        AnchorHeadConfig {
            strides: vec![16],
            sizes: vec![[32.0, 16.0]],
            level_weights: vec![1.0],
            neighbour_cells: false,
            ..Default::default()
        }
    }

    #[test]
    fn bce_is_stable_and_matches_its_definition() {
        let device = Device::flex();
        let x = Tensor::<1>::from_data(TensorData::new(vec![-200.0f32, 0.0, 3.0], [3]), &device);
        let t = Tensor::<1>::from_data(TensorData::new(vec![0.0f32, 1.0, 0.25], [3]), &device);
        let got = read_values(bce_with_logits(x, t)).unwrap();
        let p = 1.0 / (1.0 + (-3.0f32).exp());
        let expected = [0.0, 2.0f32.ln(), -(0.25 * p.ln() + 0.75 * (1.0 - p).ln())];
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-5, "{g} vs {e}");
        }
    }

    #[test]
    fn a_prediction_that_decodes_onto_its_object_has_no_box_loss_and_is_found() {
        // One 2×2 map of stride 16, one anchor 32×16, one class. The object, 32×16 centred at
        // (24, 8), is matched in cell (1, 0); its prediction decodes exactly onto it when
        // 2σ(tx) − 0.5 = 0.5 (σ = 0.5) and 2σ(tw) = 1 (σ = 0.5).
        let device = Device::flex();
        let object = BoundingBox {
            x1: 8.0,
            y1: 0.0,
            x2: 40.0,
            y2: 16.0,
        };
        let info = ImageInfo {
            image_id: 1,
            original_size: [32, 32],
            input_size: [32, 32],
            boxes: vec![object],
            labels: vec![0],
            proposals: vec![],
            masks: Vec::new(),
        };
        // Channels: x, y, w, h, objectness, class; at (row 0, column 1) all 0 logits except a
        // confident objectness; elsewhere a very low objectness.
        let mut values = vec![0.0f32; 6 * 4];
        for cell in 0..4 {
            values[4 * 4 + cell] = -20.0;
        }
        values[4 * 4 + 1] = logit(0.999);
        let output = Tensor::<4>::from_data(TensorData::new(values, [1, 6, 2, 2]), &device);
        let config = config();
        let loss = anchor_loss(
            vec![output.clone()],
            std::slice::from_ref(&info),
            &config,
            1,
            416,
        )
        .unwrap();
        let boxes = loss.boxes.into_scalar::<f32>();
        assert!(boxes.abs() < 1e-5, "{boxes}");
        // Objectness: the matched one's target is IoU 1, the others 0, all nearly right.
        assert!(loss.objectness.into_scalar::<f32>() < 1e-3);
        assert_eq!(loss.classes.into_scalar::<f32>(), 0.0);
        let found = anchor_candidates(vec![output], &[info], &config, 1).unwrap();
        let best = found[0]
            .iter()
            .max_by(|a, b| a.score.total_cmp(&b.score))
            .unwrap();
        assert!((best.score - 0.999).abs() < 1e-5);
        assert!(iou(&best.bbox, &object) > 0.9999);
    }

    #[test]
    fn the_box_loss_falls_as_the_prediction_moves_onto_its_object() {
        let device = Device::flex();
        let info = ImageInfo {
            image_id: 1,
            original_size: [32, 32],
            input_size: [32, 32],
            boxes: vec![BoundingBox {
                x1: 8.0,
                y1: 0.0,
                x2: 40.0,
                y2: 16.0,
            }],
            labels: vec![0],
            proposals: vec![],
            masks: Vec::new(),
        };
        let loss_at = |tx: f32| {
            let mut values = vec![0.0f32; 6 * 4];
            values[1] = tx;
            let output = Tensor::<4>::from_data(TensorData::new(values, [1, 6, 2, 2]), &device);
            anchor_loss(vec![output], std::slice::from_ref(&info), &config(), 1, 416)
                .unwrap()
                .boxes
                .into_scalar::<f32>()
        };
        assert!(loss_at(2.0) > loss_at(1.0));
        assert!(loss_at(1.0) > loss_at(0.0));
    }
}
