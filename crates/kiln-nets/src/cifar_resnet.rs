//! Residual networks for small images (He et al., 2016, CIFAR variant): a 3×3 stem, stages of
//! basic blocks (torchvision's [`BasicBlock`]: two 3×3 conv-BN layers and an identity or
//! 1×1-conv shortcut, He-initialised here), global average pooling and a linear classifier.
//! For ImageNet-sized images and published weights see [`ImageNetResNet`](crate::ImageNetResNet).

use crate::conv;
use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use crate::backbone::{global_average, levels_of_blocks};
use crate::imagenet_resnet::{BasicBlock, batch_norm, conv_with};
use crate::{Backbone, FeatureLevel, FeatureMaps, ImageClassifier};

/// Configuration of a [`CifarResNet`] for small images.
#[derive(Config, Debug)]
pub struct CifarResNetConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Number of output classes.
    pub classes: usize,
    /// Channels of each stage; every stage after the first halves the resolution.
    #[config(default = "vec![16, 32, 64]")]
    pub widths: Vec<usize>,
    /// Basic blocks per stage.
    #[config(default = "vec![3, 3, 3]")]
    pub blocks: Vec<usize>,
}

impl CifarResNetConfig {
    /// ResNet-20 (3 stages × 3 blocks, 16/32/64 channels, 0.27 M parameters).
    pub fn resnet20(in_channels: usize, classes: usize) -> Self {
        Self::new(in_channels, classes)
    }

    /// ResNet-8 (3 stages × 1 block), wider: 32/64/128 channels.
    pub fn resnet8_wide(in_channels: usize, classes: usize) -> Self {
        Self::new(in_channels, classes)
            .with_widths(vec![32, 64, 128])
            .with_blocks(vec![1, 1, 1])
    }

    /// Checks the sizes.
    pub fn validate(&self) -> Result<(), String> {
        if self.widths.is_empty()
            || self.widths.len() != self.blocks.len()
            || self.widths.contains(&0)
            || self.blocks.contains(&0)
            || self.in_channels == 0
            || self.classes == 0
        {
            return Err(format!(
                "widths {:?} and blocks {:?} must be equally long lists of positive numbers",
                self.widths, self.blocks
            ));
        }
        Ok(())
    }

    /// Builds the network with He-initialised convolutions.
    ///
    /// # Panics
    ///
    /// When [`CifarResNetConfig::validate`] fails.
    pub fn init(&self, device: &Device) -> CifarResNet {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let mut blocks = Vec::new();
        let mut channels = self.widths[0];
        for (stage, (&width, &count)) in self.widths.iter().zip(&self.blocks).enumerate() {
            for i in 0..count {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                blocks.push(BasicBlock::with_initializer(
                    channels,
                    width,
                    stride,
                    he(),
                    device,
                ));
                channels = width;
            }
        }
        CifarResNet {
            conv1: conv_with(self.in_channels, self.widths[0], 3, 1, he(), device),
            bn1: batch_norm(self.widths[0], device),
            blocks,
            head: LinearConfig::new(channels, self.classes).init(device),
        }
    }
}

fn he() -> Initializer {
    Initializer::KaimingNormal {
        gain: 2f64.sqrt(),
        fan_out_only: false,
    }
}

/// A residual network for small images.
#[derive(Module, Debug)]
pub struct CifarResNet {
    /// 3×3 stem convolution without bias.
    pub conv1: Conv2d,
    /// Batch norm of the stem.
    pub bn1: BatchNorm,
    /// Basic blocks (torchvision's, He-initialised), stage after stage.
    pub blocks: Vec<BasicBlock>,
    /// Linear classifier on globally averaged features.
    pub head: Linear,
}

impl CifarResNet {
    /// Runs the stem and every block, handing each stage's output to `keep`; returns the last.
    fn stages(&self, images: Tensor<4>, mut keep: impl FnMut(&Tensor<4>)) -> Tensor<4> {
        let mut x = crate::norm::forward_activated(
            &self.bn1,
            conv::forward(&self.conv1, images),
            crate::norm::FusedActivation::Relu,
        );
        for block in &self.blocks {
            if block.stride() > 1 {
                keep(&x);
            }
            x = block.forward(x);
        }
        keep(&x);
        x
    }

    /// Globally averaged last-stage features `[batch, channels]` (what the head sees).
    pub fn forward_embedding(&self, images: Tensor<4>) -> Tensor<2> {
        global_average(self.stages(images, |_| {}))
    }

    /// Class scores `[batch, classes]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        crate::linear::forward(&self.head, self.forward_embedding(images))
    }
}

impl ImageClassifier for CifarResNet {
    fn scores(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward(images)
    }

    fn first_conv(&self) -> Option<Tensor<4>> {
        Some(self.conv1.weight.val())
    }
}

impl Backbone for CifarResNet {
    /// Each stage's output: strides 1, 2, 4, …
    fn feature_levels(&self) -> Vec<FeatureLevel> {
        let stem = FeatureLevel {
            stride: 1,
            channels: self.conv1.weight.dims()[0],
        };
        let blocks = self
            .blocks
            .iter()
            .map(|b| (b.stride(), b.conv2.weight.dims()[0]));
        levels_of_blocks(stem, blocks)
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
    use crate::test_util::assert_gradients_match;
    use burn::tensor::Distribution;

    #[test]
    fn resnet20_has_its_published_size() {
        let device = Device::flex().autodiff();
        let net = CifarResNetConfig::resnet20(3, 10).init(&device);
        let params = crate::cost::trainable_params(&net);
        // He et al. report 0.27 M parameters for ResNet-20 (with 1×1 projection shortcuts
        // here instead of zero padding, a few thousand more).
        assert!((270_000..285_000).contains(&params), "{params}");
        let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Default, &device);
        assert_eq!(net.forward(x).dims(), [2, 10]);
        assert!(
            CifarResNetConfig::new(3, 10)
                .with_blocks(vec![1])
                .validate()
                .is_err()
        );
    }

    #[test]
    fn gradients_match_finite_differences() {
        let config = CifarResNetConfig::new(2, 3)
            .with_widths(vec![3, 4])
            .with_blocks(vec![1, 1]);
        assert_gradients_match(
            &config.init(&Device::flex().autodiff()),
            [4, 2, 6, 6],
            1e-5,
            |m, x| m.forward(x),
        );
    }
}
