//! The box head's loss on sampled regions and its detections at test time (torchvision's
//! `RoIHeads`): cross-entropy over background + classes, smooth-L1 on the ground-truth class's
//! deltas of foreground regions; softmax, class-specific decoding, clipping, score threshold,
//! per-class NMS and the best `max_detections`.

use burn::nn::loss::{CrossEntropyLossConfig, SmoothL1LossConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::config::{Candidate, DetectionRule};
use super::sampler::SampledRoi;
use crate::batch::ImageInfo;
use crate::data::{BoundingBox, Detection};
use crate::ops::{BoxCoder, boxes_to_tensor, tensor_to_boxes};
use crate::{DetectError, Result};

/// The head's two losses on one minibatch of regions.
#[derive(Debug)]
pub struct HeadLoss {
    /// Cross-entropy over background + classes, mean over the regions.
    pub classification: Tensor<1>,
    /// Smooth-L1 over the foreground regions' deltas, summed and divided by the number of
    /// regions (torchvision's normalisation: the box loss weighs as many regions as the class
    /// loss does).
    pub regression: Tensor<1>,
}

/// The losses of `logits` `[R, classes + 1]` and `deltas` `[R, 4 (classes + 1)]` of the
/// `sampled` regions (in the same order).
pub fn head_loss(
    logits: Tensor<2>,
    deltas: Tensor<2>,
    sampled: &[SampledRoi],
    coder: &BoxCoder,
    beta: f32,
) -> HeadLoss {
    let device = logits.device();
    let [r, outputs] = logits.dims();
    let labels: Vec<i64> = sampled.iter().map(|s| s.label as i64).collect();
    let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [r]), &device);
    let classification = CrossEntropyLossConfig::new()
        .init(&device)
        .forward(logits, labels);
    let foreground: Vec<usize> = (0..r).filter(|&i| sampled[i].label > 0).collect();
    let regression = if foreground.is_empty() {
        // No foreground: a zero that keeps the graph (and the deltas' gradient, zero).
        deltas.sum().mul_scalar(0.0)
    } else {
        let f = foreground.len();
        let rows = index_tensor(&foreground, &device);
        let regions: Vec<BoundingBox> = foreground.iter().map(|&i| sampled[i].region).collect();
        let targets: Vec<BoundingBox> = foreground
            .iter()
            .map(|&i| sampled[i].target.expect("foreground regions have a target"))
            .collect();
        let wanted = coder.encode(
            boxes_to_tensor(&targets, &device),
            boxes_to_tensor(&regions, &device),
        );
        // The deltas of each region's own class: a one-hot mask over the classes.
        let mut one_hot = vec![0.0f32; f * outputs];
        for (k, &i) in foreground.iter().enumerate() {
            one_hot[k * outputs + sampled[i].label] = 1.0;
        }
        let one_hot = Tensor::<3>::from_data(TensorData::new(one_hot, [f, outputs, 1]), &device);
        let predicted = (deltas.select(0, rows).reshape([f, outputs, 4]) * one_hot)
            .sum_dim(1)
            .reshape([f, 4]);
        SmoothL1LossConfig::new()
            .with_beta(beta)
            .init()
            .forward(predicted, wanted)
            .sum()
            .div_scalar(r as f32)
    };
    HeadLoss {
        classification,
        regression,
    }
}

/// `[n]` Int tensor of indices.
pub(crate) fn index_tensor(indices: &[usize], device: &Device) -> Tensor<1, Int> {
    let values: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
    Tensor::from_data(TensorData::new(values, [indices.len()]), device)
}

/// Detections of one image from its regions' `logits` and `deltas` (rows of `regions`, in
/// input pixels), in input pixels, best first. `image_id` and the classes (`label − 1`) are
/// filled in.
pub fn detect_regions(
    logits: Tensor<2>,
    deltas: Tensor<2>,
    regions: &[BoundingBox],
    info: &ImageInfo,
    coder: &BoxCoder,
    rule: &DetectionRule,
) -> Result<Vec<Detection>> {
    let [r, outputs] = logits.dims();
    if r == 0 {
        return Ok(Vec::new());
    }
    let device = logits.device();
    let scores = read(softmax(logits, 1))?;
    // Every region decoded once per class: [R·outputs, 4].
    let reference = boxes_to_tensor(regions, &device)
        .reshape([r, 1, 4])
        .expand([r, outputs, 4])
        .reshape([r * outputs, 4]);
    let decoded = tensor_to_boxes(coder.decode(deltas.reshape([r * outputs, 4]), reference));
    let candidates: Vec<Candidate> = (0..r)
        .flat_map(|i| (1..outputs).map(move |c| (i, c)))
        .map(|(i, c)| Candidate {
            bbox: decoded[i * outputs + c],
            score: scores[i * outputs + c],
            class: c - 1,
        })
        .collect();
    Ok(rule.select(&candidates, info))
}

fn read(t: Tensor<2>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec_as::<f32>()
        .map_err(|e| DetectError::invalid("box head output", format!("{e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn bx(x1: f32, y1: f32, x2: f32, y2: f32) -> BoundingBox {
        BoundingBox { x1, y1, x2, y2 }
    }

    fn info() -> ImageInfo {
        ImageInfo {
            image_id: 7,
            original_size: [100, 100],
            input_size: [100, 100],
            boxes: Vec::new(),
            labels: Vec::new(),
            proposals: Vec::new(),
            masks: Vec::new(),
        }
    }

    fn t2(values: Vec<f32>, shape: [usize; 2]) -> Tensor<2> {
        Tensor::from_data(TensorData::new(values, shape), &Device::flex())
    }

    #[test]
    fn the_box_loss_uses_the_true_class_deltas_of_foreground_only() {
        let coder = BoxCoder::new([10.0, 10.0, 5.0, 5.0]);
        let region = bx(0.0, 0.0, 10.0, 10.0);
        // Region 0: class 2's foreground, its target the region shifted right by 1 → encoded
        // dx = 10 · 1/10 = 1; region 1: background.
        let sampled = [
            SampledRoi {
                region,
                label: 2,
                target: Some(bx(1.0, 0.0, 11.0, 10.0)),
            },
            SampledRoi {
                region,
                label: 0,
                target: None,
            },
        ];
        // 3 outputs (background + 2 classes); class 2's deltas of region 0 are exact, every
        // other delta is wild and must not count.
        let mut deltas = vec![9.0f32; 2 * 12];
        deltas[8..12].copy_from_slice(&[1.0, 0.0, 0.0, 0.0]);
        let logits = t2(vec![0.0; 6], [2, 3]);
        let loss = head_loss(
            logits,
            t2(deltas.clone(), [2, 12]),
            &sampled,
            &coder,
            1.0 / 9.0,
        );
        assert!(loss.regression.into_scalar::<f32>().abs() < 1e-6);
        // Uniform logits: cross-entropy ln 3.
        let ce = loss.classification.into_scalar::<f32>();
        assert!((ce - 3f32.ln()).abs() < 1e-5, "{ce}");
        // Off by 0.5 in dx (beyond β = 1/9: linear, 0.5 − β/2), over 2 regions.
        deltas[8] = 1.5;
        let loss = head_loss(
            t2(vec![0.0; 6], [2, 3]),
            t2(deltas, [2, 12]),
            &sampled,
            &coder,
            1.0 / 9.0,
        );
        let expected = (0.5 - 0.5 / 9.0) / 2.0;
        assert!((loss.regression.into_scalar::<f32>() - expected).abs() < 1e-5);
    }

    #[test]
    fn detections_are_decoded_thresholded_and_suppressed_per_class() {
        let coder = BoxCoder::new([10.0, 10.0, 5.0, 5.0]);
        let regions = [
            bx(10.0, 10.0, 50.0, 50.0),
            bx(12.0, 10.0, 52.0, 50.0),
            bx(60.0, 60.0, 90.0, 120.0),
        ];
        // Softmax of the logits: region 0 → class 0 (output 1) 0.787, class 1 0.107; region 1
        // → class 0 0.731, class 1 ≈ 0; region 2 is background.
        let logits = t2(
            vec![0.0, 2.0, 0.0, 0.0, 1.0, -10.0, 5.0, -5.0, -5.0],
            [3, 3],
        );
        // Region 0's class-0 deltas move it right by 4 px (dx = 10 · 4/40 = 1).
        let mut deltas = vec![0.0f32; 3 * 12];
        deltas[4] = 1.0;
        let rule = DetectionRule::default();
        let found = detect_regions(
            logits,
            t2(deltas, [3, 12]),
            &regions,
            &info(),
            &coder,
            &rule,
        )
        .unwrap();
        // Class 0: region 0 (moved to 14..54) suppresses region 1 (12..52, IoU 0.9); class 1:
        // region 0's own box at 0.107 > 0.05, not suppressed by the other class.
        assert_eq!(found.len(), 2, "{found:?}");
        let (first, second) = (&found[0], &found[1]);
        assert_eq!((first.class, first.image_id), (0, 7));
        assert!((first.score - 0.787).abs() < 1e-3, "{}", first.score);
        assert!(
            (first.bbox.x1 - 14.0).abs() < 1e-4 && (first.bbox.x2 - 54.0).abs() < 1e-4,
            "{:?}",
            first.bbox
        );
        assert_eq!((second.class, second.bbox), (1, regions[0]));
        assert!((second.score - 0.107).abs() < 1e-3, "{}", second.score);
        // A higher threshold keeps only the best.
        let strict = DetectionRule {
            score_threshold: 0.5,
            ..rule
        };
        let logits = t2(
            vec![0.0, 2.0, 0.0, 0.0, 1.0, -10.0, 5.0, -5.0, -5.0],
            [3, 3],
        );
        let found = detect_regions(
            logits,
            t2(vec![0.0; 36], [3, 12]),
            &regions,
            &info(),
            &coder,
            &strict,
        )
        .unwrap();
        assert_eq!(found.len(), 1);
    }
}
