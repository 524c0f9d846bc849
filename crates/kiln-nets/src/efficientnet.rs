//! EfficientNet-Lite0 (Tan & Le, 2019; the "Lite" variant for mobile CPUs): EfficientNet-B0's
//! inverted-residual (MBConv) blocks without squeeze-excitation, ReLU6 instead of swish,
//! TensorFlow-style "same" padding and BatchNorm with eps 1e-3.
//!
//! The module's parameter paths are the PyTorch names of the `efficientnet-lite-pytorch`
//! package without their leading underscores (`_blocks.3._bn1` is `blocks.3.bn1`), so
//! [`EfficientNetLite::load_pytorch`] reads its ImageNet weights with one renaming rule.
//!
//! ```ignore
//! let net = EfficientNetLiteConfig::lite0(1000).init(&device)
//!     .load_pytorch(Path::new("efficientnet-lite0-57934424.pth"))?;
//! let logits = net.forward(images); // images: [batch, 3, 224, 224], ImageNet-normalised
//! ```

use std::path::Path;

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Initializer, Linear, LinearConfig,
    PaddingConfig2d,
};
use burn::tensor::{Device, Tensor};

use crate::backbone::{global_average, levels_of_blocks};
use crate::pretrained::{KeyMap, PretrainedError, load_pytorch};
use crate::{Backbone, FeatureLevel, FeatureMaps, ImageClassifier, norm};

/// BatchNorm epsilon of the published weights (TensorFlow's default).
pub const BATCH_NORM_EPS: f64 = 1e-3;
/// BatchNorm momentum of the reference implementation (PyTorch convention: weight of the new
/// batch, `1 - 0.99`).
pub const BATCH_NORM_MOMENTUM: f64 = 0.01;

/// One stage of MBConv blocks: `repeats` blocks, the first with `stride`.
#[derive(Config, Debug, Copy, PartialEq)]
pub struct MbStage {
    /// Depthwise kernel size (3 or 5).
    pub kernel: usize,
    /// Stride of the stage's first block.
    pub stride: usize,
    /// Expansion ratio of the inverted bottleneck (1 = no expansion conv).
    pub expand_ratio: usize,
    /// Output channels.
    pub channels: usize,
    /// Number of blocks.
    pub repeats: usize,
}

/// EfficientNet-B0's stages, which Lite0 keeps (input 32 channels from the stem).
pub const LITE0_STAGES: [MbStage; 7] = [
    MbStage {
        kernel: 3,
        stride: 1,
        expand_ratio: 1,
        channels: 16,
        repeats: 1,
    },
    MbStage {
        kernel: 3,
        stride: 2,
        expand_ratio: 6,
        channels: 24,
        repeats: 2,
    },
    MbStage {
        kernel: 5,
        stride: 2,
        expand_ratio: 6,
        channels: 40,
        repeats: 2,
    },
    MbStage {
        kernel: 3,
        stride: 2,
        expand_ratio: 6,
        channels: 80,
        repeats: 3,
    },
    MbStage {
        kernel: 5,
        stride: 1,
        expand_ratio: 6,
        channels: 112,
        repeats: 3,
    },
    MbStage {
        kernel: 5,
        stride: 2,
        expand_ratio: 6,
        channels: 192,
        repeats: 4,
    },
    MbStage {
        kernel: 3,
        stride: 1,
        expand_ratio: 6,
        channels: 320,
        repeats: 1,
    },
];

/// Configuration of an [`EfficientNetLite`].
#[derive(Config, Debug)]
pub struct EfficientNetLiteConfig {
    /// Number of output classes.
    pub classes: usize,
    /// Stem output channels.
    #[config(default = 32)]
    pub stem_channels: usize,
    /// Channels of the 1×1 head convolution (the feature size).
    #[config(default = 1280)]
    pub head_channels: usize,
    /// The block stages.
    #[config(default = "LITE0_STAGES.to_vec()")]
    pub stages: Vec<MbStage>,
    /// Dropout before the classifier.
    #[config(default = 0.2)]
    pub dropout: f64,
    /// Stochastic-depth rate of the last block (block `i` of `n` drops with `rate · i / n`).
    #[config(default = 0.2)]
    pub drop_connect: f64,
}

impl EfficientNetLiteConfig {
    /// EfficientNet-Lite0 (4.65 M parameters with 1,000 classes) with a `classes`-way head.
    pub fn lite0(classes: usize) -> Self {
        Self::new(classes)
    }

    /// Checks the sizes and rates.
    pub fn validate(&self) -> Result<(), String> {
        if self.classes == 0 || self.stem_channels == 0 || self.head_channels == 0 {
            return Err("classes, stem_channels and head_channels must be positive".into());
        }
        if self.stages.is_empty() {
            return Err("an EfficientNet needs at least one stage".into());
        }
        for stage in &self.stages {
            if stage.kernel == 0
                || stage.kernel % 2 == 0
                || !(1..=2).contains(&stage.stride)
                || stage.expand_ratio == 0
                || stage.channels == 0
                || stage.repeats == 0
            {
                return Err(format!(
                    "invalid stage {stage:?}: odd kernel, stride 1 or 2, positive expansion, \
                     channels and repeats"
                ));
            }
        }
        for (name, rate) in [
            ("dropout", self.dropout),
            ("drop_connect", self.drop_connect),
        ] {
            if !(0.0..1.0).contains(&rate) {
                return Err(format!("{name} must be in [0, 1), got {rate}"));
            }
        }
        Ok(())
    }

    /// Builds the network with TensorFlow's initialisation (He normal, fan-out) for the convs.
    ///
    /// # Panics
    ///
    /// When [`EfficientNetLiteConfig::validate`] fails.
    pub fn init(&self, device: &Device) -> EfficientNetLite {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let total: usize = self.stages.iter().map(|s| s.repeats).sum();
        let mut blocks = Vec::with_capacity(total);
        let mut channels = self.stem_channels;
        let mut strides = Vec::new();
        for stage in &self.stages {
            for i in 0..stage.repeats {
                let stride = if i == 0 { stage.stride } else { 1 };
                let drop = self.drop_connect * blocks.len() as f64 / total as f64;
                strides.push(stride);
                blocks.push(MbConv::new(
                    channels,
                    stage.channels,
                    stage.kernel,
                    stride,
                    stage.expand_ratio,
                    drop,
                    device,
                ));
                channels = stage.channels;
            }
        }
        EfficientNetLite {
            conv_stem: conv(3, self.stem_channels, 3, 2, 1, device),
            bn0: batch_norm(self.stem_channels, device),
            blocks,
            conv_head: conv(channels, self.head_channels, 1, 1, 1, device),
            bn1: batch_norm(self.head_channels, device),
            dropout: DropoutConfig::new(self.dropout).init(),
            fc: LinearConfig::new(self.head_channels, self.classes).init(device),
        }
    }
}

fn conv(
    input: usize,
    output: usize,
    kernel: usize,
    stride: usize,
    groups: usize,
    device: &Device,
) -> Conv2d {
    // Stride-1 "same" padding is symmetric and goes into the convolution; stride 2 pads
    // asymmetrically in `forward_same`, which depends on the input size.
    let padding = if stride == 1 {
        let p = kernel / 2;
        PaddingConfig2d::Explicit(p, p, p, p)
    } else {
        PaddingConfig2d::Valid
    };
    Conv2dConfig::new([input, output], [kernel; 2])
        .with_stride([stride; 2])
        .with_groups(groups)
        .with_padding(padding)
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal {
            gain: 2f64.sqrt(),
            fan_out_only: true,
        })
        .init(device)
}

fn batch_norm(channels: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(channels)
        .with_epsilon(BATCH_NORM_EPS)
        .with_momentum(BATCH_NORM_MOMENTUM)
        .init(device)
}

/// `conv(x)` with TensorFlow "same" padding: explicit in the layer for stride 1, computed from
/// the input size otherwise (the odd extra row and column after).
fn forward_same(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    if conv.stride == [1, 1] {
        crate::conv::forward(conv, x)
    } else {
        crate::conv::forward_padded(conv, x, &PaddingConfig2d::Same)
    }
}

/// Mobile inverted bottleneck: 1×1 expansion (unless the ratio is 1), depthwise k×k, linear
/// 1×1 projection, and an identity shortcut with stochastic depth when the shape is kept.
#[derive(Module, Debug)]
pub struct MbConv {
    /// 1×1 expansion (absent when the expansion ratio is 1).
    pub expand_conv: Option<Conv2d>,
    /// BatchNorm after the expansion.
    pub bn0: Option<BatchNorm>,
    /// Depthwise k×k convolution (carries the stride).
    pub depthwise_conv: Conv2d,
    /// BatchNorm after the depthwise convolution.
    pub bn1: BatchNorm,
    /// Linear 1×1 projection.
    pub project_conv: Conv2d,
    /// BatchNorm after the projection.
    pub bn2: BatchNorm,
    /// Stochastic depth on the residual branch: its per-example keep mask, drawn as dropout
    /// of ones (so it follows `train()` / `valid()` like any dropout).
    pub drop_path: Dropout,
    /// Whether the block adds its input (stride 1 and equal channels).
    pub residual: bool,
}

impl MbConv {
    /// A block from `input` to `output` channels.
    pub fn new(
        input: usize,
        output: usize,
        kernel: usize,
        stride: usize,
        expand_ratio: usize,
        drop_path: f64,
        device: &Device,
    ) -> Self {
        let hidden = input * expand_ratio;
        let expands = expand_ratio != 1;
        Self {
            expand_conv: expands.then(|| conv(input, hidden, 1, 1, 1, device)),
            bn0: expands.then(|| batch_norm(hidden, device)),
            depthwise_conv: conv(hidden, hidden, kernel, stride, hidden, device),
            bn1: batch_norm(hidden, device),
            project_conv: conv(hidden, output, 1, 1, 1, device),
            bn2: batch_norm(output, device),
            drop_path: DropoutConfig::new(drop_path).init(),
            residual: stride == 1 && input == output,
        }
    }

    /// The block's output.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut y = x.clone();
        if let (Some(expand), Some(bn)) = (&self.expand_conv, &self.bn0) {
            y = norm::forward_activated(
                bn,
                crate::conv::forward(expand, y),
                norm::FusedActivation::Relu6,
            );
        }
        y = norm::forward_activated(
            &self.bn1,
            forward_same(&self.depthwise_conv, y),
            norm::FusedActivation::Relu6,
        );
        y = norm::forward(&self.bn2, crate::conv::forward(&self.project_conv, y));
        if !self.residual {
            return y;
        }
        let dropping = self.drop_path.prob > 0.0
            && self.drop_path.training.is_enabled()
            && y.device().is_autodiff();
        if dropping {
            // In the activations' float type: half inside an autocast scope.
            let keep = Tensor::ones([y.dims()[0], 1, 1, 1], &y.device());
            let keep = crate::autocast::cast(keep, y.dtype().into());
            y = y * self.drop_path.forward(keep);
        }
        y + x
    }
}

/// EfficientNet-Lite: stem, MBConv blocks, 1×1 head conv, global average pool, classifier.
#[derive(Module, Debug)]
pub struct EfficientNetLite {
    /// 3×3 stride-2 stem convolution.
    pub conv_stem: Conv2d,
    /// BatchNorm of the stem.
    pub bn0: BatchNorm,
    /// The MBConv blocks, stage after stage.
    pub blocks: Vec<MbConv>,
    /// 1×1 head convolution to the feature size.
    pub conv_head: Conv2d,
    /// BatchNorm of the head.
    pub bn1: BatchNorm,
    /// Dropout before the classifier.
    pub dropout: Dropout,
    /// Linear classifier.
    pub fc: Linear,
}

impl EfficientNetLite {
    /// The key rules from the `efficientnet-lite-pytorch` names to this module's paths.
    pub fn pytorch_keys() -> KeyMap {
        KeyMap::new()
            .rename(r"(^|\.)_", "$1")
            .ignore(r"num_batches_tracked$")
    }

    /// Loads a PyTorch state dict of `efficientnet-lite-pytorch` (e.g. the published ImageNet
    /// weights `efficientnet-lite0-57934424.pth`); every tensor must match in name and shape.
    pub fn load_pytorch(self, path: &Path) -> Result<Self, PretrainedError> {
        load_pytorch(self, path, &Self::pytorch_keys(), "EfficientNet-Lite0")
    }

    /// Replaces the classifier with a freshly initialised `classes`-way one (for fine-tuning).
    pub fn with_classes(mut self, classes: usize, device: &Device) -> Self {
        let features = self.fc.weight.dims()[0];
        self.fc = LinearConfig::new(features, classes).init(device);
        self
    }

    /// Number of features the classifier sees (the head conv's channels).
    pub fn feature_size(&self) -> usize {
        self.fc.weight.dims()[0]
    }

    fn stem(&self, images: Tensor<4>) -> Tensor<4> {
        norm::forward_activated(
            &self.bn0,
            forward_same(&self.conv_stem, images),
            norm::FusedActivation::Relu6,
        )
    }

    /// Runs stem, blocks and head, handing `keep` the last block output before each stride
    /// change and the head's output at the end; returns the head's output.
    fn stages(&self, images: Tensor<4>, mut keep: impl FnMut(&Tensor<4>)) -> Tensor<4> {
        let mut x = self.stem(images);
        for block in &self.blocks {
            if block.depthwise_conv.stride[0] > 1 {
                keep(&x);
            }
            x = block.forward(x);
        }
        let x = norm::forward_activated(
            &self.bn1,
            crate::conv::forward(&self.conv_head, x),
            norm::FusedActivation::Relu6,
        );
        keep(&x);
        x
    }

    /// Globally averaged head features `[batch, 1280]` (what a linear probe trains on).
    pub fn forward_embedding(&self, images: Tensor<4>) -> Tensor<2> {
        global_average(self.stages(images, |_| {}))
    }

    /// Class scores `[batch, classes]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let embedding = self.forward_embedding(images);
        crate::linear::forward(&self.fc, self.dropout.forward(embedding))
    }
}

impl ImageClassifier for EfficientNetLite {
    fn scores(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward(images)
    }

    fn first_conv(&self) -> Option<Tensor<4>> {
        Some(self.conv_stem.weight.val())
    }
}

impl Backbone for EfficientNetLite {
    /// The last block output at strides 2, 4, 8 and 16 (16, 24, 40 and 112 channels for Lite0)
    /// and, at stride 32, the head's output (conv head + BN + ReLU6, 1280 channels): the maps
    /// torchvision's `efficientnet.features` ends its stages with.
    fn feature_levels(&self) -> Vec<FeatureLevel> {
        let stem = FeatureLevel {
            stride: 2,
            channels: self.conv_stem.weight.dims()[0],
        };
        let blocks = self
            .blocks
            .iter()
            .map(|b| (b.depthwise_conv.stride[0], b.project_conv.weight.dims()[0]));
        let mut levels = levels_of_blocks(stem, blocks);
        if let Some(last) = levels.last_mut() {
            last.channels = self.conv_head.weight.dims()[0];
        }
        levels
    }

    fn feature_maps(&self, images: Tensor<4>) -> FeatureMaps {
        let mut maps = Vec::new();
        self.stages(images, |x| maps.push(x.clone()));
        FeatureMaps::new(self.feature_levels(), maps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn same_padding_matches_tensorflow() {
        // 224 → 112 with a 3×3 stride-2 kernel: one extra pixel, after.
        assert_eq!(crate::conv::same_padding(224, 3, 2), (0, 1));
        assert_eq!(crate::conv::same_padding(112, 5, 2), (1, 2));
        // Odd sizes: ceil(7 / 2) = 4 outputs need 3 + 2·3 − 7 = 2 pixels.
        assert_eq!(crate::conv::same_padding(7, 3, 2), (1, 1));
        assert_eq!(crate::conv::same_padding(8, 3, 1), (1, 1));
    }

    #[test]
    fn lite0_has_its_published_size() {
        let device = Device::flex().autodiff();
        let net = EfficientNetLiteConfig::lite0(1000).init(&device);
        // 4,652,008 parameters (efficientnet-lite-pytorch's count for Lite0).
        assert_eq!(crate::cost::trainable_params(&net), 4_652_008);
        assert_eq!(net.blocks.len(), 16);
        assert_eq!(net.feature_size(), 1280);
    }

    #[test]
    fn shapes_and_strides() {
        let device = Device::flex();
        let net = EfficientNetLiteConfig::lite0(7).init(&device);
        let images = Tensor::<4>::random([2, 3, 72, 72], Distribution::Normal(0.0, 1.0), &device);
        let maps = net.feature_maps(images.clone());
        let found: Vec<(usize, usize, [usize; 4])> = maps
            .iter()
            .map(|(level, map)| (level.stride, level.channels, map.dims()))
            .collect();
        assert_eq!(
            found,
            vec![
                (2, 16, [2, 16, 36, 36]),
                (4, 24, [2, 24, 18, 18]),
                (8, 40, [2, 40, 9, 9]),
                (16, 112, [2, 112, 5, 5]),
                (32, 1280, [2, 1280, 3, 3]),
            ]
        );
        assert_eq!(net.feature_levels(), maps.levels());
        // The classifier pools the stride-32 map.
        let pooled = global_average(maps.coarsest().clone());
        net.forward_embedding(images.clone())
            .into_data()
            .assert_approx_eq::<f32>(&pooled.into_data(), burn::tensor::Tolerance::default());
        assert_eq!(net.forward(images).dims(), [2, 7]);
    }

    #[test]
    fn stochastic_depth_only_while_training() {
        let device = Device::flex().autodiff();
        let net = EfficientNetLiteConfig::lite0(3)
            .with_drop_connect(0.5)
            .with_dropout(0.0)
            .init(&device);
        let images = Tensor::<4>::random([4, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
        let eval = net.valid();
        let a = eval.forward(images.clone()).into_data();
        let b = eval.forward(images.clone()).into_data();
        a.assert_eq(&b, true);
        let training = net.forward_embedding(images.clone()).into_data();
        let again = net.forward_embedding(images).into_data();
        assert_ne!(
            training.try_to_vec::<f32>().unwrap(),
            again.try_to_vec::<f32>().unwrap(),
            "drop paths are random per forward in training"
        );
    }
}
