//! The fast CIFAR-10 network of Keller Jordan's airbench94 recipe: a frozen 2×2 convolution
//! initialised by PCA whitening of training patches, three groups of
//! `conv → max pool → BN → GELU → conv → BN → GELU` (widths 64/256/256), a global max pool and a
//! bias-free linear head scaled by 1/9. Convolutions start as identities on their first input
//! channels (Dirac initialisation); batch norms learn only their bias.

use crate::conv;
use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::gelu;
use burn::tensor::{Device, Tensor};

use crate::init::{replace_values, zeroed};
use crate::whitening::whitening_filters;
use crate::{Backbone, FeatureLevel, FeatureMaps, ImageClassifier};

/// Configuration of an [`AirbenchNet`].
#[derive(Config, Debug)]
pub struct AirbenchConfig {
    /// Input channels.
    #[config(default = 3)]
    pub in_channels: usize,
    /// Number of output classes.
    #[config(default = 10)]
    pub classes: usize,
    /// Widths of the three conv groups.
    #[config(default = "vec![64, 256, 256]")]
    pub widths: Vec<usize>,
    /// Side of the whitening convolution.
    #[config(default = 2)]
    pub whiten_kernel: usize,
    /// Batch-norm momentum in PyTorch's and Burn's sense (weight of the new batch statistics);
    /// airbench's 0.6 "momentum" is 0.4 here.
    #[config(default = 0.4)]
    pub batch_norm_momentum: f64,
    /// Batch-norm ε.
    #[config(default = 1e-12)]
    pub batch_norm_epsilon: f64,
    /// Factor applied to the logits.
    #[config(default = "1.0 / 9.0")]
    pub output_scale: f64,
}

impl AirbenchConfig {
    /// Channels out of the whitening layer: both signs of every eigenvector.
    pub fn whiten_width(&self) -> usize {
        2 * self.in_channels * self.whiten_kernel * self.whiten_kernel
    }

    /// Checks the sizes.
    pub fn validate(&self) -> Result<(), String> {
        if self.widths.len() != 3 || self.widths.contains(&0) {
            return Err(format!(
                "widths {:?} must be three positive numbers",
                self.widths
            ));
        }
        if self.in_channels == 0 || self.classes == 0 || self.whiten_kernel == 0 {
            return Err("in_channels, classes and whiten_kernel must be positive".into());
        }
        if !(0.0..=1.0).contains(&self.batch_norm_momentum) {
            return Err(format!(
                "batch_norm_momentum {} must be in [0, 1]",
                self.batch_norm_momentum
            ));
        }
        Ok(())
    }

    /// Builds the network. The whitening filters start random and frozen: call
    /// [`AirbenchNet::with_whitening`] with training images before training.
    ///
    /// # Panics
    ///
    /// When [`AirbenchConfig::validate`] fails.
    pub fn init(&self, device: &Device) -> AirbenchNet {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let whiten = Conv2dConfig::new(
            [self.in_channels, self.whiten_width()],
            [self.whiten_kernel; 2],
        )
        .with_bias(true)
        .init(device);
        let whiten = Conv2d {
            weight: whiten.weight.set_require_grad(false),
            bias: whiten.bias.map(zeroed),
            ..whiten
        };
        let mut channels = self.whiten_width();
        let groups = self
            .widths
            .iter()
            .map(|&width| {
                let group = ConvGroup {
                    conv1: dirac_conv(channels, width, device),
                    norm1: frozen_scale_norm(width, self, device),
                    conv2: dirac_conv(width, width, device),
                    norm2: frozen_scale_norm(width, self, device),
                };
                channels = width;
                group
            })
            .collect();
        AirbenchNet {
            whiten,
            groups,
            pool: MaxPool2dConfig::new([2, 2]).init(),
            head: LinearConfig::new(channels, self.classes)
                .with_bias(false)
                .init(device),
            output_scale: self.output_scale,
        }
    }
}

/// A 3×3 "same" convolution without bias whose first `min(input, output)` filters are identities
/// (PyTorch's `dirac_` on them) and the rest PyTorch's default uniform initialisation.
fn dirac_conv(input: usize, output: usize, device: &Device) -> Conv2d {
    let conv = Conv2dConfig::new([input, output], [3, 3])
        .with_padding(PaddingConfig2d::Same)
        .with_bias(false)
        .init(device);
    let mut w = conv
        .weight
        .val()
        .into_data()
        .try_to_vec_as::<f32>()
        .expect("f32 weights");
    let per_filter = input * 9;
    for o in 0..input.min(output) {
        let filter = &mut w[o * per_filter..(o + 1) * per_filter];
        filter.fill(0.0);
        filter[o * 9 + 4] = 1.0;
    }
    Conv2d {
        weight: replace_values(conv.weight, w),
        ..conv
    }
}

/// Batch norm whose scale stays 1 (only the bias is learned).
fn frozen_scale_norm(features: usize, config: &AirbenchConfig, device: &Device) -> BatchNorm {
    let norm = BatchNormConfig::new(features)
        .with_momentum(config.batch_norm_momentum)
        .with_epsilon(config.batch_norm_epsilon)
        .init(device);
    BatchNorm {
        gamma: norm.gamma.set_require_grad(false),
        ..norm
    }
}

/// `conv → 2×2 max pool → BN → GELU → conv → BN → GELU`.
#[derive(Module, Debug)]
pub struct ConvGroup {
    /// First convolution (before the pool).
    pub conv1: Conv2d,
    /// Its batch norm.
    pub norm1: BatchNorm,
    /// Second convolution.
    pub conv2: Conv2d,
    /// Its batch norm.
    pub norm2: BatchNorm,
}

/// The airbench94 network (see the module documentation).
#[derive(Module, Debug)]
pub struct AirbenchNet {
    /// The 2×2 whitening convolution (weights frozen, bias trainable).
    pub whiten: Conv2d,
    /// The three conv groups.
    pub groups: Vec<ConvGroup>,
    /// The 2×2 max pool inside each group.
    pub pool: MaxPool2d,
    /// Bias-free linear classifier.
    pub head: Linear,
    /// Factor applied to the logits.
    pub output_scale: f64,
}

impl AirbenchNet {
    /// Sets the whitening filters from training images `[n, c, h, w]` (already normalised as the
    /// network will see them; airbench uses 5,000): eigenvectors of the patch covariance scaled
    /// by `1/√(λ + eps)`, and their negatives.
    pub fn with_whitening(self, images: &[f32], shape: [usize; 4], eps: f64) -> Self {
        let [_, c, kh, _] = self.whiten.weight.dims();
        assert_eq!(shape[1], c, "whitening images have the wrong channel count");
        let filters = whitening_filters(images, shape, kh, eps);
        Self {
            whiten: Conv2d {
                weight: replace_values(self.whiten.weight, filters),
                ..self.whiten
            },
            ..self
        }
    }

    /// Runs the whitening layer and every conv group, handing each group's output to `keep`;
    /// returns the last.
    fn groups_forward(&self, images: Tensor<4>, mut keep: impl FnMut(&Tensor<4>)) -> Tensor<4> {
        let mut x = gelu(conv::forward(&self.whiten, images));
        for g in &self.groups {
            x = crate::pool::forward(&self.pool, conv::forward(&g.conv1, x));
            x = gelu(crate::norm::forward(&g.norm1, x));
            x = gelu(crate::norm::forward(&g.norm2, conv::forward(&g.conv2, x)));
            keep(&x);
        }
        x
    }

    /// Globally max-pooled last-group features `[batch, channels]` (what the head sees).
    pub fn forward_embedding(&self, images: Tensor<4>) -> Tensor<2> {
        self.groups_forward(images, |_| {})
            .max_dim(3)
            .max_dim(2)
            .flatten(1, 3)
    }

    /// The scaled linear classifier on an embedding.
    pub fn classify(&self, embedding: Tensor<2>) -> Tensor<2> {
        crate::linear::forward(&self.head, embedding).mul_scalar(self.output_scale)
    }

    /// Class scores `[batch, classes]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.classify(self.forward_embedding(images))
    }
}

impl ImageClassifier for AirbenchNet {
    fn scores(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward(images)
    }

    fn first_conv(&self) -> Option<Tensor<4>> {
        Some(self.whiten.weight.val())
    }
}

impl Backbone for AirbenchNet {
    /// Each conv group's output. The whitening convolution is unpadded (32 → 31 pixels), so
    /// maps are ⌊(h − 1) / stride⌋ on a side; the nominal strides are 2, 4, 8.
    fn feature_levels(&self) -> Vec<FeatureLevel> {
        self.groups
            .iter()
            .enumerate()
            .map(|(i, g)| FeatureLevel {
                stride: 2 << i,
                channels: g.conv2.weight.dims()[0],
            })
            .collect()
    }

    fn feature_maps(&self, images: Tensor<4>) -> FeatureMaps {
        let mut maps = Vec::new();
        self.groups_forward(images, |x| maps.push(x.clone()));
        FeatureMaps::new(self.feature_levels(), maps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::assert_gradients_match;
    use burn::tensor::Distribution;

    #[test]
    fn dirac_filters_pass_their_channel_through() {
        let device = Device::flex();
        let conv = dirac_conv(4, 6, &device);
        let x = Tensor::<4>::random([2, 4, 5, 5], Distribution::Default, &device);
        let y = conv.forward(x.clone());
        let kept = y.slice([0..2, 0..4]);
        let diff: f32 = (kept - x).abs().max().into_scalar();
        assert!(diff < 1e-6, "{diff}");
    }

    #[test]
    fn shapes_and_frozen_parameters() {
        let device = Device::flex().autodiff();
        let config = AirbenchConfig::new().with_widths(vec![8, 16, 16]);
        let net = config.init(&device);
        assert_eq!(net.whiten.weight.dims(), [24, 3, 2, 2]);
        assert!(!net.whiten.weight.is_require_grad());
        assert!(!net.groups[0].norm1.gamma.is_require_grad());
        assert!(net.groups[0].norm1.beta.is_require_grad());
        let images: Vec<f32> = (0..4 * 3 * 32 * 32)
            .map(|i| ((i * 7919) % 255) as f32 / 255.0)
            .collect();
        let net = net.with_whitening(&images, [4, 3, 32, 32], 5e-4);
        assert!(!net.whiten.weight.is_require_grad());
        let x = Tensor::<4>::from_data(
            burn::tensor::TensorData::new(images, [4, 3, 32, 32]),
            &device,
        );
        assert_eq!(net.forward(x).dims(), [4, 10]);
        assert!(
            AirbenchConfig::new()
                .with_widths(vec![8])
                .validate()
                .is_err()
        );
    }

    #[test]
    fn gradients_match_finite_differences() {
        let config = AirbenchConfig::new()
            .with_in_channels(2)
            .with_classes(3)
            .with_widths(vec![3, 4, 4])
            .with_batch_norm_epsilon(1e-5)
            .with_output_scale(1.0);
        assert_gradients_match(
            &config.init(&Device::flex().autodiff()),
            [8, 2, 16, 16],
            // Gradients of the middle convolutions are ~1e-7 after three max pools and can be
            // ~2e-8 (the initialisation is not seeded: tests share the backend's generator),
            // where centred differences keep about three digits: one run measured 2.0989e-8
            // against 2.0948e-8. A wrong gradient is off by its own size, not by 1e-3.
            1e-3,
            |m, x| m.forward(x),
        );
    }
}
