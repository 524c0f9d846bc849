//! Fast R-CNN's network: a kiln-nets backbone run once per image, a 1×1 "neck" narrowing its
//! last map, and the box head run on each region's pooled features.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor};
use kiln_nets::Backbone;
use kiln_nets::conv;
use kiln_nets::zoo::Network;

use super::config::{BoxHeadConfig, RoiPooler};
use crate::data::BoundingBox;
use crate::ops::{roi_align, roi_pool};

/// Two fully connected layers over a region's pooled features, then class scores
/// (background first) and one set of box deltas per class (torchvision's `TwoMLPHead` and
/// `FastRCNNPredictor`).
#[derive(Module, Debug)]
pub struct BoxHead {
    /// First fully connected layer (over `channels × bins × bins`).
    pub fc6: Linear,
    /// Second fully connected layer.
    pub fc7: Linear,
    /// Background + class scores.
    pub classifier: Linear,
    /// Box deltas `4 × (classes + 1)` (the background's are unused).
    pub regressor: Linear,
}

impl BoxHead {
    /// A head for `classes` object classes on `channels`×`bins`×`bins` region features.
    /// The predictors start small (normal, σ 0.01 and 0.001, as Detectron initialises them) so
    /// the first steps do not undo the pretrained features.
    pub fn new(config: &BoxHeadConfig, channels: usize, classes: usize, device: &Device) -> Self {
        let inputs = channels * config.bins * config.bins;
        let normal = |std| Initializer::Normal { mean: 0.0, std };
        Self {
            fc6: LinearConfig::new(inputs, config.hidden).init(device),
            fc7: LinearConfig::new(config.hidden, config.hidden).init(device),
            classifier: LinearConfig::new(config.hidden, classes + 1)
                .with_initializer(normal(0.01))
                .init(device),
            regressor: LinearConfig::new(config.hidden, 4 * (classes + 1))
                .with_initializer(normal(0.001))
                .init(device),
        }
    }

    /// Class logits `[R, classes + 1]` and deltas `[R, 4 (classes + 1)]` of region features
    /// `[R, channels, bins, bins]`.
    pub fn forward(&self, regions: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let x = regions.flatten::<2>(1, 3);
        let x = relu(self.fc6.forward(x));
        let x = relu(self.fc7.forward(x));
        (
            self.classifier.forward(x.clone()),
            self.regressor.forward(x),
        )
    }

    /// Object classes the head predicts.
    pub fn classes(&self) -> usize {
        self.classifier.weight.dims()[1] - 1
    }
}

/// Backbone + neck + box head.
#[derive(Module, Debug)]
pub struct FastRcnn {
    /// The pretrained backbone (its classifier unused).
    pub backbone: Network,
    /// 1×1 convolution narrowing the backbone's last map.
    pub neck: Conv2d,
    /// 1×1 projection of the stride-16 map, added to the upsampled neck output
    /// ([`BoxHeadConfig::feature_stride`] 16); `None` at stride 32.
    pub lateral: Option<Conv2d>,
    /// The box head.
    pub head: BoxHead,
}

impl FastRcnn {
    /// The network on `backbone` for `classes` object classes.
    pub fn new(config: &BoxHeadConfig, backbone: Network, classes: usize, device: &Device) -> Self {
        let levels = backbone.feature_levels();
        let channels = levels
            .last()
            .map_or(backbone.feature_size(), |l| l.channels);
        let lateral = levels
            .iter()
            .find(|l| l.stride == 16 && config.feature_stride == 16)
            .map(|l| Conv2dConfig::new([l.channels, config.neck_channels], [1, 1]).init(device));
        Self {
            backbone,
            neck: Conv2dConfig::new([channels, config.neck_channels], [1, 1]).init(device),
            lateral,
            head: BoxHead::new(config, config.neck_channels, classes, device),
        }
    }

    /// Pixels per cell of the map regions are pooled from.
    pub fn stride(&self) -> usize {
        let last = self
            .backbone
            .feature_levels()
            .last()
            .map_or(32, |l| l.stride);
        if self.lateral.is_some() {
            last / 2
        } else {
            last
        }
    }

    /// The map regions are pooled from, `[batch, neck channels, h, w]`.
    pub fn features(&self, images: Tensor<4>) -> Tensor<4> {
        let maps = self.backbone.feature_maps(images);
        let top = conv::forward(&self.neck, maps.coarsest().clone());
        match (&self.lateral, maps.levels().iter().rev().nth(1)) {
            (Some(lateral), Some(finer)) => {
                let finer = maps
                    .at_stride(finer.stride)
                    .expect("the level was listed")
                    .clone();
                let [_, _, h, w] = finer.dims();
                let up = interpolate(
                    top,
                    InterpolateOptions::new(InterpolateMode::Nearest).with_output_size([h, w]),
                );
                relu(up + conv::forward(lateral, finer))
            }
            _ => relu(top),
        }
    }

    /// Class logits and box deltas of `rois` (per image of `features`, in input pixels).
    pub fn classify_regions(
        &self,
        features: Tensor<4>,
        rois: &[Vec<BoundingBox>],
        pooler: &RoiPooler,
    ) -> (Tensor<2>, Tensor<2>) {
        let regions = match pooler {
            RoiPooler::Align(c) => roi_align(features, rois, c),
            RoiPooler::Pool(c) => roi_pool(features, rois, c),
        };
        self.head.forward(regions)
    }
}
