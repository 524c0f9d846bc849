//! The region proposal network (Faster R-CNN; torchvision's `RegionProposalNetwork`): a 3×3
//! convolution over the feature map, then per anchor an objectness logit and four box deltas.
//! Training labels anchors by IoU (> 0.7, or the best anchor of a ground-truth box: object;
//! < 0.3: background; the rest ignored), samples 256 per image up to half objects, and takes
//! binary cross-entropy + smooth-L1. Proposals are the decoded anchors, clipped, tiny ones
//! removed, the best `pre_nms` by objectness, NMS, the best `post_nms`.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::SmoothL1LossConfig;
use burn::nn::{Initializer, PaddingConfig2d};
use burn::tensor::activation::{log_sigmoid, relu};
use burn::tensor::{Device, Tensor, TensorData};
use kiln_nets::conv;
use rand::Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::anchors::AnchorConfig;
use super::roi_heads::index_tensor;
use super::sampler::match_boxes;
use crate::batch::ImageInfo;
use crate::data::BoundingBox;
use crate::ops::host::{clip, nms};
use crate::ops::{BoxCoder, boxes_to_tensor, tensor_to_boxes};
use crate::{DetectError, Result};

/// The RPN's settings (`[faster_rcnn.rpn]`; torchvision's defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpnConfig {
    /// Anchors per cell.
    pub anchors: AnchorConfig,
    /// An anchor overlapping a ground-truth box by more than this IoU is an object.
    pub foreground_iou: f32,
    /// An anchor whose best IoU is below this is background.
    pub background_iou: f32,
    /// Anchors sampled per image for the loss.
    pub per_image: usize,
    /// Largest share of objects among them.
    pub positive_fraction: f32,
    /// Proposals kept by objectness before NMS, training / test.
    pub pre_nms: [usize; 2],
    /// Proposals kept after NMS, training / test.
    pub post_nms: [usize; 2],
    /// NMS IoU between proposals.
    pub nms_iou: f32,
    /// Proposals narrower or lower than this many input pixels are dropped.
    pub min_size: f32,
    /// The smooth-L1 loss's quadratic zone (1/9).
    pub smooth_l1_beta: f32,
}

impl Default for RpnConfig {
    fn default() -> Self {
        Self {
            anchors: AnchorConfig::default(),
            foreground_iou: 0.7,
            background_iou: 0.3,
            per_image: 256,
            positive_fraction: 0.5,
            pre_nms: [2000, 1000],
            post_nms: [2000, 1000],
            nms_iou: 0.7,
            min_size: 1e-3,
            smooth_l1_beta: 1.0 / 9.0,
        }
    }
}

impl RpnConfig {
    /// Checks every setting; `what` names the section in errors.
    pub fn validate(&self, what: &str) -> Result<()> {
        let bad = |field: &str, reason: String| {
            Err(DetectError::invalid(format!("{what} {field}"), reason))
        };
        self.anchors.validate(&format!("{what} anchors"))?;
        if !(0.0 <= self.background_iou
            && self.background_iou <= self.foreground_iou
            && self.foreground_iou <= 1.0)
        {
            return bad(
                "foreground_iou / background_iou",
                format!(
                    "need 0 ≤ {} ≤ {} ≤ 1",
                    self.background_iou, self.foreground_iou
                ),
            );
        }
        if self.per_image == 0 || !(self.positive_fraction > 0.0 && self.positive_fraction <= 1.0) {
            return bad(
                "per_image / positive_fraction",
                "need a positive count and a fraction in (0, 1]".into(),
            );
        }
        if self.pre_nms.contains(&0) || self.post_nms.contains(&0) {
            return bad("pre_nms / post_nms", "must be positive".into());
        }
        if !(self.nms_iou > 0.0 && self.nms_iou <= 1.0) {
            return bad("nms_iou", format!("{} is not in (0, 1]", self.nms_iou));
        }
        if !(self.smooth_l1_beta.is_finite() && self.smooth_l1_beta > 0.0) {
            return bad("smooth_l1_beta", "must be positive".into());
        }
        Ok(())
    }
}

/// The RPN's layers: a shared 3×3 convolution, then 1×1 objectness and box-delta predictors.
#[derive(Module, Debug)]
pub struct RpnHead {
    /// 3×3 convolution over the feature map.
    pub conv: Conv2d,
    /// One objectness logit per anchor.
    pub objectness: Conv2d,
    /// Four deltas per anchor.
    pub deltas: Conv2d,
}

/// What the RPN says about every anchor of a batch.
#[derive(Clone, Debug)]
pub struct RpnOutput {
    /// Objectness logits `[batch, anchors]`.
    pub objectness: Tensor<2>,
    /// Deltas `[batch, anchors, 4]`.
    pub deltas: Tensor<3>,
    /// The anchors (the same for every image of the batch), in the outputs' order.
    pub anchors: Vec<BoundingBox>,
}

impl RpnHead {
    /// A head on `channels`-channel maps with `per_cell` anchors per cell, initialised as
    /// torchvision does (normal, σ 0.01, zero bias).
    pub fn new(channels: usize, per_cell: usize, device: &Device) -> Self {
        let normal = Initializer::Normal {
            mean: 0.0,
            std: 0.01,
        };
        let conv = |inputs, outputs, k| {
            let mut layer = Conv2dConfig::new([inputs, outputs], [k, k])
                .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
                .with_initializer(normal.clone())
                .init(device);
            if let Some(bias) = layer.bias.take() {
                layer.bias = Some(bias.map(|b| b.zeros_like()));
            }
            layer
        };
        Self {
            conv: conv(channels, channels, 3),
            objectness: conv(channels, per_cell, 1),
            deltas: conv(channels, 4 * per_cell, 1),
        }
    }

    /// The outputs on `features` `[batch, channels, h, w]` of `stride` pixels per cell.
    pub fn forward(&self, features: Tensor<4>, anchors: &AnchorConfig, stride: usize) -> RpnOutput {
        let [n, _, h, w] = features.dims();
        let a = anchors.per_cell();
        let x = relu(conv::forward(&self.conv, features));
        let objectness = conv::forward(&self.objectness, x.clone())
            .permute([0, 2, 3, 1])
            .reshape([n, h * w * a]);
        let deltas = conv::forward(&self.deltas, x)
            .reshape([n, a, 4, h, w])
            .permute([0, 3, 4, 1, 2])
            .reshape([n, h * w * a, 4]);
        RpnOutput {
            objectness,
            deltas,
            anchors: anchors.grid([h, w], stride),
        }
    }
}

/// The RPN's two losses.
#[derive(Debug)]
pub struct RpnLoss {
    /// Binary cross-entropy of the sampled anchors' objectness, their mean.
    pub objectness: Tensor<1>,
    /// Smooth-L1 of the sampled objects' deltas, summed and divided by the sampled anchors.
    pub regression: Tensor<1>,
}

/// Anchor labels of one image: 1 object, 0 background, −1 ignored, and each anchor's matched
/// ground-truth box. An anchor that is the best of some ground-truth box (ties included) is an
/// object whatever its IoU (torchvision's `allow_low_quality_matches`).
pub fn label_anchors(
    anchors: &[BoundingBox],
    gt: &[BoundingBox],
    config: &RpnConfig,
) -> (Vec<i8>, Vec<Option<usize>>) {
    let matches = match_boxes(anchors, gt);
    let mut labels: Vec<i8> = matches
        .iter()
        .map(|m| match m {
            Some((_, iou)) if *iou >= config.foreground_iou => 1,
            Some((_, iou)) if *iou < config.background_iou => 0,
            None => 0,
            _ => -1,
        })
        .collect();
    let mut matched: Vec<Option<usize>> = matches.iter().map(|m| m.map(|(j, _)| j)).collect();
    for (j, g) in gt.iter().enumerate() {
        let ious: Vec<f32> = anchors
            .iter()
            .map(|a| crate::ops::host::iou(a, g))
            .collect();
        let best = ious.iter().copied().fold(0.0f32, f32::max);
        if best > 0.0 {
            for (i, &v) in ious.iter().enumerate() {
                if v == best {
                    labels[i] = 1;
                    // torchvision keeps the anchor's own best match (it is this box unless
                    // another box overlaps the anchor more).
                    matched[i] = matched[i].or(Some(j));
                }
            }
        }
    }
    (labels, matched)
}

/// The RPN's losses on a batch, anchors sampled per image with `rng`.
pub fn rpn_loss(
    output: &RpnOutput,
    infos: &[ImageInfo],
    config: &RpnConfig,
    rng: &mut impl Rng,
) -> RpnLoss {
    let device = output.objectness.device();
    let [n, count] = output.objectness.dims();
    let coder = BoxCoder::new([1.0; 4]);
    let (mut rows, mut targets) = (Vec::new(), Vec::new());
    let (mut positive_rows, mut positive_anchors, mut positive_boxes) =
        (Vec::new(), Vec::new(), Vec::new());
    for (image, info) in infos.iter().enumerate().take(n) {
        let (labels, matched) = label_anchors(&output.anchors, &info.boxes, config);
        let mut objects: Vec<usize> = (0..count).filter(|&i| labels[i] == 1).collect();
        let mut background: Vec<usize> = (0..count).filter(|&i| labels[i] == 0).collect();
        objects.shuffle(rng);
        background.shuffle(rng);
        let positives =
            ((config.per_image as f32 * config.positive_fraction) as usize).min(objects.len());
        let negatives = (config.per_image - positives).min(background.len());
        for &i in &objects[..positives] {
            rows.push(image * count + i);
            targets.push(1.0f32);
            positive_rows.push(image * count + i);
            positive_anchors.push(output.anchors[i]);
            positive_boxes.push(info.boxes[matched[i].expect("objects have a match")]);
        }
        for &i in &background[..negatives] {
            rows.push(image * count + i);
            targets.push(0.0);
        }
    }
    let sampled = rows.len().max(1) as f32;
    let logits = output
        .objectness
        .clone()
        .reshape([n * count])
        .select(0, index_tensor(&rows, &device));
    let targets = Tensor::<1>::from_data(TensorData::new(targets, [rows.len()]), &device);
    // BCE with logits: −(t · log σ(x) + (1 − t) · log σ(−x)).
    let objectness = (targets.clone() * log_sigmoid(logits.clone())
        + (targets.neg() + 1.0) * log_sigmoid(logits.neg()))
    .neg()
    .mean();
    let regression = if positive_rows.is_empty() {
        output.deltas.clone().sum().mul_scalar(0.0)
    } else {
        let k = positive_rows.len();
        let predicted = output
            .deltas
            .clone()
            .reshape([n * count, 4])
            .select(0, index_tensor(&positive_rows, &device));
        let wanted = coder.encode(
            boxes_to_tensor(&positive_boxes, &device),
            boxes_to_tensor(&positive_anchors, &device),
        );
        debug_assert_eq!(predicted.dims(), [k, 4]);
        SmoothL1LossConfig::new()
            .with_beta(config.smooth_l1_beta)
            .init()
            .forward(predicted, wanted)
            .sum()
            .div_scalar(sampled)
    };
    RpnLoss {
        objectness,
        regression,
    }
}

/// Proposals of every image of the batch, best first, in input pixels (no gradient flows
/// through them: the box head's loss trains the RPN only through its own outputs). `training`
/// picks the first of `pre_nms`/`post_nms`, else the second.
pub fn propose(
    output: &RpnOutput,
    infos: &[ImageInfo],
    config: &RpnConfig,
    training: bool,
) -> Result<Vec<Vec<BoundingBox>>> {
    let [n, count] = output.objectness.dims();
    let device = output.objectness.device();
    let scores = output
        .objectness
        .clone()
        .into_data()
        .convert::<f32>()
        .try_into_vec_as::<f32>()
        .map_err(|e| DetectError::invalid("RPN objectness", format!("{e:?}")))?;
    let anchors = boxes_to_tensor(&output.anchors, &device);
    let decoded = BoxCoder::new([1.0; 4]).decode(
        output.deltas.clone().reshape([n * count, 4]),
        anchors.repeat_dim(0, n),
    );
    let decoded = tensor_to_boxes(decoded);
    let (pre, post) = if training {
        (config.pre_nms[0], config.post_nms[0])
    } else {
        (config.pre_nms[1], config.post_nms[1])
    };
    let mut out = Vec::with_capacity(n);
    for (image, info) in infos.iter().enumerate().take(n) {
        let own = &scores[image * count..(image + 1) * count];
        let mut order: Vec<usize> = (0..count).collect();
        order.sort_by(|&a, &b| own[b].total_cmp(&own[a]));
        order.truncate(pre);
        let [w, h] = [info.input_size[0] as f32, info.input_size[1] as f32];
        let (mut boxes, mut kept) = (Vec::new(), Vec::new());
        for i in order {
            let b = clip(&decoded[image * count + i], w, h);
            if b.x2 - b.x1 >= config.min_size && b.y2 - b.y1 >= config.min_size {
                boxes.push(b);
                kept.push(own[i]);
            }
        }
        let keep = nms(&boxes, &kept, config.nms_iou);
        out.push(keep.into_iter().take(post).map(|k| boxes[k]).collect());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn bx(x1: f32, y1: f32, x2: f32, y2: f32) -> BoundingBox {
        BoundingBox { x1, y1, x2, y2 }
    }

    fn info(boxes: Vec<BoundingBox>) -> ImageInfo {
        ImageInfo {
            image_id: 1,
            original_size: [64, 64],
            input_size: [64, 64],
            labels: vec![0; boxes.len()],
            boxes,
            proposals: Vec::new(),
            masks: Vec::new(),
        }
    }

    #[test]
    fn anchors_are_labelled_by_iou_and_every_box_gets_its_best_anchor() {
        let config = RpnConfig::default();
        let anchors = [
            bx(0.0, 0.0, 10.0, 10.0),   // IoU 1 with gt 0: object
            bx(0.0, 0.0, 10.0, 20.0),   // 0.5: ignored
            bx(50.0, 50.0, 60.0, 60.0), // 0: background
            bx(30.0, 0.0, 40.0, 16.0),  // gt 1's best (IoU 0.4 < 0.7): object anyway
        ];
        let gt = [bx(0.0, 0.0, 10.0, 10.0), bx(30.0, 0.0, 40.0, 40.0)];
        let (labels, matched) = label_anchors(&anchors, &gt, &config);
        assert_eq!(labels, vec![1, -1, 0, 1]);
        assert_eq!((matched[0], matched[3]), (Some(0), Some(1)));
        // Without ground truth everything is background.
        assert_eq!(label_anchors(&anchors, &[], &config).0, vec![0; 4]);
    }

    #[test]
    fn the_head_flattens_outputs_in_the_anchor_order_and_the_loss_trains() {
        let device = Device::flex().autodiff();
        let config = RpnConfig {
            anchors: AnchorConfig {
                sizes: vec![16.0, 32.0],
                aspect_ratios: vec![1.0],
            },
            per_image: 16,
            ..RpnConfig::default()
        };
        let head = RpnHead::new(4, 2, &device);
        let features =
            Tensor::<4>::random([2, 4, 3, 3], burn::tensor::Distribution::Default, &device);
        let output = head.forward(features, &config.anchors, 16);
        assert_eq!(output.objectness.dims(), [2, 18]);
        assert_eq!(output.deltas.dims(), [2, 18, 4]);
        assert_eq!(output.anchors.len(), 18);
        // Anchor 2·(3·1 + 2) + 1: cell (y 1, x 2), size 32, centred on (32, 16).
        let a = output.anchors[11];
        assert_eq!((a.x1, a.y1, a.x2, a.y2), (16.0, 0.0, 48.0, 32.0));
        let infos = [info(vec![bx(16.0, 0.0, 48.0, 32.0)]), info(vec![])];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let loss = rpn_loss(&output, &infos, &config, &mut rng);
        // Small initial logits: BCE near ln 2.
        let bce = loss.objectness.clone().into_scalar::<f32>();
        assert!((bce - 2f32.ln()).abs() < 0.05, "{bce}");
        let total = loss.objectness + loss.regression;
        let grads = total.backward();
        assert!(head.objectness.weight.grad(&grads).is_some());
        assert!(head.deltas.weight.grad(&grads).is_some());
        // Proposals: clipped to each image, at most post_nms, no more than the anchors.
        let proposals = propose(&output, &infos, &config, false).unwrap();
        assert_eq!(proposals.len(), 2);
        for p in proposals.iter().flatten() {
            assert!(
                p.x1 >= 0.0 && p.y1 >= 0.0 && p.x2 <= 64.0 && p.y2 <= 64.0,
                "{p:?}"
            );
        }
        assert!(proposals[0].len() <= 18 && !proposals[0].is_empty());
    }
}
