//! YOLOv1 (Redmon et al. 2016, "You Only Look Once"), faithful to the paper except for the
//! backbone: the image is divided into an S×S grid; for every cell the network predicts B boxes
//! — centre `(x, y)` relative to the cell, `(√w, √h)` relative to the image, and a confidence
//! whose target is the IoU of the box with the object it is responsible for — and C class
//! probabilities, all as linear outputs of fully connected layers that see the whole image.
//!
//! The loss is the paper's sum of squared errors: coordinates of responsible predictors weighted
//! by λcoord, confidence of predictors without an object by λnoobj, class probabilities of
//! cells holding an object. A predictor is responsible for the object whose centre falls in its
//! cell when its predicted box overlaps that object most among the cell's B predictors. One
//! object per cell: when centres share a cell, the largest object is the one learned.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::leaky_relu;
use burn::tensor::{Device, Tensor, TensorData};
use kiln_nets::Backbone;
use kiln_nets::conv;
use kiln_nets::zoo::Network;

use super::config::YoloV1Config;
use super::decode::read_values;
use crate::Result;
use crate::batch::ImageInfo;
use crate::data::BoundingBox;
use crate::ops::host::{area, iou};
use crate::two_stage::Candidate;

/// The paper's leaky rectifier slope.
const LEAKY_SLOPE: f64 = 0.1;

/// YOLOv1 on a kiln-nets backbone: a 1×1 and a stride-2 3×3 convolution bring the stride-32 map
/// to the S×S grid, then two fully connected layers output `S·S·(5B + C)` numbers.
#[derive(Module, Debug)]
pub struct YoloV1 {
    /// The pretrained backbone (its classifier unused).
    pub backbone: Network,
    /// 1×1 convolution narrowing the backbone's stride-32 map.
    pub reduce: Conv2d,
    /// 3×3 stride-2 convolution down to the grid.
    pub down: Conv2d,
    /// Hidden fully connected layer.
    pub hidden: Linear,
    /// Dropout after it.
    pub dropout: Dropout,
    /// Output layer: per cell B × (x, y, √w, √h, confidence) then C class probabilities.
    pub output: Linear,
    /// Cells per side.
    pub grid: usize,
    /// Boxes per cell.
    pub boxes: usize,
    /// Object classes.
    pub classes: usize,
}

impl YoloV1 {
    /// The network on `backbone` for `classes` object classes.
    pub fn new(config: &YoloV1Config, backbone: Network, classes: usize, device: &Device) -> Self {
        let channels = backbone
            .feature_levels()
            .last()
            .map_or(backbone.feature_size(), |l| l.channels);
        let (s, c) = (config.grid, config.channels);
        let outputs = s * s * (5 * config.boxes + classes);
        Self {
            backbone,
            reduce: Conv2dConfig::new([channels, c], [1, 1]).init(device),
            down: Conv2dConfig::new([c, c], [3, 3])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            hidden: LinearConfig::new(c * s * s, config.hidden).init(device),
            dropout: DropoutConfig::new(config.dropout).init(),
            // Small outputs at first, so the first squared errors do not swamp the backbone.
            output: LinearConfig::new(config.hidden, outputs)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 0.01,
                })
                .init(device),
            grid: s,
            boxes: config.boxes,
            classes,
        }
    }

    /// Numbers per cell: `5B + C`.
    pub fn per_cell(&self) -> usize {
        5 * self.boxes + self.classes
    }

    /// The raw predictions `[batch, S, S, 5B + C]` of images `[batch, 3, 64 S, 64 S]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<4> {
        let batch = images.dims()[0];
        let map = self.backbone.feature_maps(images).coarsest().clone();
        let x = leaky_relu(conv::forward(&self.reduce, map), LEAKY_SLOPE);
        let x = leaky_relu(conv::forward(&self.down, x), LEAKY_SLOPE);
        let x = x.flatten::<2>(1, 3);
        let x = self
            .dropout
            .forward(leaky_relu(self.hidden.forward(x), LEAKY_SLOPE));
        self.output
            .forward(x)
            .reshape([batch, self.grid, self.grid, self.per_cell()])
    }
}

/// The grid cell `(column, row)` holding the centre of `b` in an image of `[width, height]`.
fn cell_of(b: &BoundingBox, [w, h]: [f32; 2], s: usize) -> (usize, usize) {
    let cx = (b.x1 + b.x2) / 2.0 / w.max(1.0);
    let cy = (b.y1 + b.y2) / 2.0 / h.max(1.0);
    let at = |v: f32| ((v * s as f32).floor().max(0.0) as usize).min(s - 1);
    (at(cx), at(cy))
}

/// The box (input pixels) of predictor `(x, y, √w, √h)` in cell `(column, row)`.
fn decode_box(p: &[f32], (col, row): (usize, usize), s: usize, [w, h]: [f32; 2]) -> BoundingBox {
    let cx = (col as f32 + p[0]) / s as f32 * w;
    let cy = (row as f32 + p[1]) / s as f32 * h;
    let (bw, bh) = (p[2] * p[2] * w, p[3] * p[3] * h);
    BoundingBox {
        x1: cx - bw / 2.0,
        y1: cy - bh / 2.0,
        x2: cx + bw / 2.0,
        y2: cy + bh / 2.0,
    }
}

/// What the loss compares, built on the host from the detached predictions and the targets.
struct V1Targets {
    /// Per cell × number: the target value.
    values: Vec<f32>,
    /// Per cell × number: the squared error's weight (0 where nothing is compared).
    weights: Vec<f32>,
}

/// The per-number targets and weights of one batch: coordinates and confidence of responsible
/// predictors, confidence of the others, class probabilities of cells with an object.
fn v1_targets(
    predictions: &[f32],
    infos: &[ImageInfo],
    s: usize,
    b: usize,
    classes: usize,
    config: &YoloV1Config,
) -> V1Targets {
    let per_cell = 5 * b + classes;
    let mut values = vec![0.0f32; predictions.len()];
    let mut weights = vec![0.0f32; predictions.len()];
    // Every predictor's confidence is pushed to 0 unless it is made responsible below.
    for cell in 0..infos.len() * s * s {
        for k in 0..b {
            weights[cell * per_cell + 5 * k + 4] = config.noobj_weight;
        }
    }
    for (image, info) in infos.iter().enumerate() {
        let size = [info.input_size[0] as f32, info.input_size[1] as f32];
        // Largest first, so the largest object of a shared cell is the one kept.
        let mut order: Vec<usize> = (0..info.boxes.len()).collect();
        order.sort_by(|&i, &j| area(&info.boxes[j]).total_cmp(&area(&info.boxes[i])));
        let mut taken = vec![false; s * s];
        for i in order {
            let target = &info.boxes[i];
            let (col, row) = cell_of(target, size, s);
            if std::mem::replace(&mut taken[row * s + col], true) {
                continue;
            }
            let base = ((image * s + row) * s + col) * per_cell;
            let cell = &predictions[base..base + per_cell];
            let overlaps: Vec<f32> = (0..b)
                .map(|k| {
                    iou(
                        &decode_box(&cell[5 * k..5 * k + 4], (col, row), s, size),
                        target,
                    )
                })
                .collect();
            let responsible = (0..b)
                .max_by(|&x, &y| overlaps[x].total_cmp(&overlaps[y]).then(y.cmp(&x)))
                .unwrap_or(0);
            let (cx, cy) = (
                (target.x1 + target.x2) / 2.0 / size[0] * s as f32,
                (target.y1 + target.y2) / 2.0 / size[1] * s as f32,
            );
            let wanted = [
                cx - col as f32,
                cy - row as f32,
                ((target.x2 - target.x1) / size[0]).max(0.0).sqrt(),
                ((target.y2 - target.y1) / size[1]).max(0.0).sqrt(),
                overlaps[responsible],
            ];
            let at = base + 5 * responsible;
            for (k, v) in wanted.into_iter().enumerate() {
                values[at + k] = v;
                weights[at + k] = if k < 4 { config.coord_weight } else { 1.0 };
            }
            let label = info.labels[i];
            for c in 0..classes {
                values[base + 5 * b + c] = f32::from(u8::from(c == label));
                weights[base + 5 * b + c] = 1.0;
            }
        }
    }
    V1Targets { values, weights }
}

/// YOLOv1's loss of `predictions` `[batch, S, S, 5B + C]` against the batch's targets: the
/// weighted sum of squared errors, divided by the number of images.
pub fn v1_loss(
    predictions: Tensor<4>,
    infos: &[ImageInfo],
    config: &YoloV1Config,
    classes: usize,
) -> Result<Tensor<1>> {
    let dims = predictions.dims();
    let [batch, s, _, _] = dims;
    let device = predictions.device();
    let host = read_values(predictions.clone().detach())?;
    let targets = v1_targets(&host, infos, s, config.boxes, classes, config);
    let tensor = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, dims), &device);
    let error = predictions - tensor(targets.values);
    Ok((error.clone() * error * tensor(targets.weights))
        .sum()
        .div_scalar(batch.max(1) as f32))
}

/// Every predictor's class-specific confidences `Pr(class | object) · confidence` with its box
/// (input pixels), per image of a batch of predictions `[batch, S, S, 5B + C]`.
pub fn v1_candidates(
    predictions: Tensor<4>,
    infos: &[ImageInfo],
    boxes: usize,
) -> Result<Vec<Vec<Candidate>>> {
    let [_, s, _, per_cell] = predictions.dims();
    let classes = per_cell - 5 * boxes;
    let host = read_values(predictions)?;
    Ok(infos
        .iter()
        .enumerate()
        .map(|(image, info)| {
            let size = [info.input_size[0] as f32, info.input_size[1] as f32];
            let mut out = Vec::with_capacity(s * s * boxes * classes);
            for row in 0..s {
                for col in 0..s {
                    let base = ((image * s + row) * s + col) * per_cell;
                    let cell = &host[base..base + per_cell];
                    for k in 0..boxes {
                        let bbox = decode_box(&cell[5 * k..5 * k + 4], (col, row), s, size);
                        let confidence = cell[5 * k + 4];
                        for c in 0..classes {
                            out.push(Candidate {
                                bbox,
                                score: cell[5 * boxes + c] * confidence,
                                class: c,
                            });
                        }
                    }
                }
            }
            out
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(boxes: Vec<BoundingBox>, labels: Vec<usize>) -> ImageInfo {
        ImageInfo {
            image_id: 1,
            original_size: [140, 140],
            input_size: [140, 140],
            boxes,
            labels,
            proposals: vec![],
            masks: Vec::new(),
        }
    }

    fn bx(x1: f32, y1: f32, x2: f32, y2: f32) -> BoundingBox {
        BoundingBox { x1, y1, x2, y2 }
    }

    #[test]
    fn targets_follow_the_paper() {
        // S = 7 on a 140-pixel image: 20-pixel cells. The object's centre (50, 30) falls in
        // cell (2, 1) at (0.5, 0.5) of it; its size 40×20 is (0.2857, 0.1429) of the image.
        let config = YoloV1Config {
            grid: 7,
            boxes: 2,
            ..Default::default()
        };
        let (s, b, c) = (7, 2, 3);
        let per_cell = 5 * b + c;
        let mut predictions = vec![0.0f32; s * s * per_cell];
        // Predictor 1 of that cell already predicts the object's box exactly; predictor 0 a
        // box elsewhere: predictor 1 is responsible, with confidence target IoU 1.
        let base = (7 + 2) * per_cell;
        predictions[base + 5..base + 9].copy_from_slice(&[
            0.5,
            0.5,
            (40.0f32 / 140.0).sqrt(),
            (20.0f32 / 140.0).sqrt(),
        ]);
        let object = bx(30.0, 20.0, 70.0, 40.0);
        let infos = [info(vec![object], vec![2])];
        let t = v1_targets(&predictions, &infos, s, b, c, &config);
        let resp = base + 5;
        assert!((t.values[resp] - 0.5).abs() < 1e-6);
        assert!((t.values[resp + 2] - (40.0f32 / 140.0).sqrt()).abs() < 1e-6);
        assert!(
            (t.values[resp + 4] - 1.0).abs() < 1e-5,
            "{}",
            t.values[resp + 4]
        );
        assert_eq!(&t.weights[resp..resp + 5], &[5.0, 5.0, 5.0, 5.0, 1.0]);
        // The other predictor of the cell only has its confidence pushed to 0 with λnoobj.
        assert_eq!(&t.weights[base..base + 5], &[0.0, 0.0, 0.0, 0.0, 0.5]);
        // Class probabilities: one-hot on class 2, weight 1, in that cell only.
        assert_eq!(&t.values[base + 10..base + 13], &[0.0, 0.0, 1.0]);
        assert_eq!(&t.weights[base + 10..base + 13], &[1.0; 3]);
        assert_eq!(t.weights[10..13], [0.0; 3]);
        // Every other predictor: confidence with λnoobj, nothing else.
        assert_eq!(t.weights[4], 0.5);
        assert_eq!(t.weights[0], 0.0);
    }

    #[test]
    fn the_loss_is_zero_for_perfect_predictions_and_decoding_inverts_the_targets() {
        let config = YoloV1Config {
            grid: 7,
            boxes: 2,
            ..Default::default()
        };
        let object = bx(30.0, 20.0, 70.0, 40.0);
        let infos = [info(vec![object], vec![0])];
        let (s, b, c) = (7, 2, 1);
        // Predictions equal to the targets built from them (IoU 1 for the responsible one).
        let mut predictions = vec![0.0f32; s * s * (5 * b + c)];
        let base = (7 + 2) * (5 * b + c);
        predictions[base..base + 5].copy_from_slice(&[
            0.5,
            0.5,
            (40.0f32 / 140.0).sqrt(),
            (20.0f32 / 140.0).sqrt(),
            1.0,
        ]);
        predictions[base + 10] = 1.0;
        let device = Device::flex();
        let tensor = Tensor::<4>::from_data(
            TensorData::new(predictions.clone(), [1, s, s, 5 * b + c]),
            &device,
        );
        let loss = v1_loss(tensor.clone(), &infos, &config, c)
            .unwrap()
            .into_scalar::<f32>();
        assert!(loss < 1e-8, "{loss}");
        let found = v1_candidates(tensor, &infos, b).unwrap();
        let best = found[0]
            .iter()
            .max_by(|x, y| x.score.total_cmp(&y.score))
            .unwrap();
        assert!((best.score - 1.0).abs() < 1e-6);
        assert!(iou(&best.bbox, &object) > 0.999);
    }

    #[test]
    fn the_network_outputs_the_grid() {
        let device = Device::flex();
        let backbone = kiln_nets::zoo::Architecture::EfficientNetLite0.init(1, &device);
        let config = YoloV1Config {
            grid: 2,
            boxes: 2,
            channels: 8,
            hidden: 16,
            ..Default::default()
        };
        let net = YoloV1::new(&config, backbone, 3, &device);
        let out = net.forward(Tensor::zeros([2, 3, 128, 128], &device));
        assert_eq!(out.dims(), [2, 2, 2, 13]);
    }
}
