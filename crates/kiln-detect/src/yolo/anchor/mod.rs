//! The single-stage anchor-box YOLO: a kiln-nets backbone, a top-down neck over its maps at the
//! configured strides (16 and 32 by default), and per level a 1×1 convolution predicting, for each
//! of its anchors in every cell, box offsets, an objectness logit and class logits.
//!
//! - [`assign`]: which (cell, anchor) pairs learn each object (YOLOv5's rule);
//! - [`loss`]: the box (CIoU/GIoU), objectness and class (BCE) losses, and decoding.

pub mod assign;
pub mod loss;

use burn::module::{Module, Param};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::activation::silu;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor, TensorData};
use kiln_nets::Backbone;
use kiln_nets::conv;
use kiln_nets::zoo::Network;

use super::config::AnchorHeadConfig;
use crate::{DetectError, Result};

/// Backbone, top-down neck and one predictor per level.
#[derive(Module, Debug)]
pub struct AnchorYolo {
    /// The pretrained backbone (its classifier unused).
    pub backbone: Network,
    /// Per level, finest first: 1×1 convolution from the backbone map to the neck's width.
    pub lateral: Vec<Conv2d>,
    /// Per level: 3×3 convolution over the lateral map plus the upsampled coarser one.
    pub smooth: Vec<Conv2d>,
    /// Per level: 1×1 convolution to `anchors × (5 + classes)` outputs.
    pub predict: Vec<Conv2d>,
    /// Strides of the levels, finest first.
    pub strides: Vec<usize>,
    /// Anchors per cell.
    pub anchors: usize,
    /// Object classes.
    pub classes: usize,
}

impl AnchorYolo {
    /// The network on `backbone` for `classes` classes and images of about `input_size`
    /// pixels (which sets the objectness prior). Errors when the backbone lacks a stride.
    pub fn new(
        config: &AnchorHeadConfig,
        backbone: Network,
        classes: usize,
        input_size: usize,
        device: &Device,
    ) -> Result<Self> {
        let levels = backbone.feature_levels();
        let anchors = config.per_level();
        let outputs = anchors * (5 + classes);
        let neck = config.neck_channels;
        let (mut lateral, mut smooth, mut predict) = (Vec::new(), Vec::new(), Vec::new());
        for &stride in &config.strides {
            let level = levels.iter().find(|l| l.stride == stride).ok_or_else(|| {
                DetectError::invalid(
                    "[yolo.anchor] strides",
                    format!(
                        "the backbone has no stride-{stride} map (it has {:?})",
                        levels.iter().map(|l| l.stride).collect::<Vec<_>>()
                    ),
                )
            })?;
            lateral.push(Conv2dConfig::new([level.channels, neck], [1, 1]).init(device));
            smooth.push(
                Conv2dConfig::new([neck, neck], [3, 3])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init(device),
            );
            let mut conv = Conv2dConfig::new([neck, outputs], [1, 1]).init(device);
            conv.bias = Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(prior_bias(anchors, classes, input_size, stride), [outputs]),
                device,
            )));
            predict.push(conv);
        }
        Ok(Self {
            backbone,
            lateral,
            smooth,
            predict,
            strides: config.strides.clone(),
            anchors,
            classes,
        })
    }

    /// Raw outputs per level, finest first: `[batch, anchors × (5 + classes), h, w]`.
    pub fn forward(&self, images: Tensor<4>) -> Vec<Tensor<4>> {
        let maps = self.backbone.feature_maps(images);
        let mut outputs = Vec::with_capacity(self.strides.len());
        let mut coarser: Option<Tensor<4>> = None;
        for level in (0..self.strides.len()).rev() {
            let map = maps
                .at_stride(self.strides[level])
                .expect("strides were checked against the backbone")
                .clone();
            let mut x = silu(conv::forward(&self.lateral[level], map));
            if let Some(top) = coarser {
                let [_, _, h, w] = x.dims();
                let nearest =
                    InterpolateOptions::new(InterpolateMode::Nearest).with_output_size([h, w]);
                x = x + interpolate(top, nearest);
            }
            coarser = Some(x.clone());
            let x = silu(conv::forward(&self.smooth[level], x));
            outputs.push(conv::forward(&self.predict[level], x));
        }
        outputs.reverse();
        outputs
    }
}

/// YOLOv5's starting biases of a predictor: objectness as if about 8 objects were in a
/// 640-pixel image of cells of `stride` (here `input_size` pixels), classes at about 0.6 / (C − 1).
fn prior_bias(anchors: usize, classes: usize, input_size: usize, stride: usize) -> Vec<f32> {
    let cells = (input_size as f32 / stride as f32).powi(2);
    let objectness = (8.0 / cells).ln();
    let class = (0.6 / (classes as f32 - 0.99)).ln();
    (0..anchors)
        .flat_map(|_| {
            (0..5 + classes).map(move |k| match k {
                0..4 => 0.0,
                4 => objectness,
                _ => class,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_nets::zoo::Architecture;

    #[test]
    fn one_output_per_level_with_its_stride_and_the_objectness_prior() {
        let device = Device::flex();
        let backbone = Architecture::EfficientNetLite0.init(1, &device);
        let config = AnchorHeadConfig {
            neck_channels: 8,
            ..Default::default()
        };
        let net = AnchorYolo::new(&config, backbone, 2, 416, &device).unwrap();
        let out = net.forward(Tensor::zeros([1, 3, 64, 96], &device));
        assert_eq!(out[0].dims(), [1, 3 * 7, 4, 6]);
        assert_eq!(out[1].dims(), [1, 3 * 7, 2, 3]);
        let bias =
            super::super::decode::read_values(net.predict[1].bias.clone().unwrap().val()).unwrap();
        // 416 / 32 = 13 cells a side: log(8 / 169).
        assert!((bias[4] - (8.0f32 / 169.0).ln()).abs() < 1e-6);
        assert_eq!(bias[0], 0.0);
        let missing = AnchorHeadConfig {
            strides: vec![64],
            sizes: vec![[1.0, 1.0]],
            level_weights: vec![1.0],
            ..config
        };
        let backbone = Architecture::EfficientNetLite0.init(1, &device);
        let message = AnchorYolo::new(&missing, backbone, 2, 416, &device)
            .unwrap_err()
            .to_string();
        assert!(message.contains("stride-64"), "{message}");
    }
}
