//! Plain convolutional networks: stages of `[conv → (batch norm) → activation] × n` each closed by a
//! 2×2 max pool, then fully connected layers. Covers the course's conv-relu-pool nets, VGG-style
//! stacks of 3×3 convolutions and the convolution-speed benchmark net.

use crate::conv;
use burn::config::Config;
use burn::module::Module;
use burn::nn::activation::{Activation, ActivationConfig};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Initializer, Linear, LinearConfig,
    PaddingConfig2d,
};
use burn::tensor::{Device, Tensor};

use crate::{Backbone, FeatureLevel, FeatureMaps, ImageClassifier};

/// Configuration of a [`ConvNet`].
#[derive(Config, Debug)]
pub struct ConvNetConfig {
    /// Input channels (3 for RGB, 1 for grey).
    pub in_channels: usize,
    /// Number of output classes.
    pub classes: usize,
    /// Input height and width.
    pub image_size: [usize; 2],
    /// Output channels of each convolution, one list per stage; every stage ends with a 2×2
    /// max pool.
    pub stages: Vec<Vec<usize>>,
    /// Square kernel side of every convolution ("same" padding).
    #[config(default = 3)]
    pub kernel_size: usize,
    /// Batch normalisation after every convolution.
    #[config(default = true)]
    pub batch_norm: bool,
    /// Nonlinearity after every convolution and hidden linear layer.
    #[config(default = "ActivationConfig::Relu")]
    pub activation: ActivationConfig,
    /// Widths of the hidden fully connected layers before the classifier.
    #[config(default = "Vec::new()")]
    pub hidden: Vec<usize>,
    /// Inverted-dropout probability after each hidden fully connected layer.
    #[config(default = 0.0)]
    pub dropout: f64,
}

impl ConvNetConfig {
    /// The course's three-layer network: conv 7×7 (32 filters) → ReLU → 2×2 max pool →
    /// affine (100) → ReLU → affine.
    pub fn course_three_layer(in_channels: usize, classes: usize, image_size: [usize; 2]) -> Self {
        Self::new(in_channels, classes, image_size, vec![vec![32]])
            .with_kernel_size(7)
            .with_batch_norm(false)
            .with_hidden(vec![100])
    }

    /// A VGG-style network: stages of 3×3 convolutions with batch norm, e.g.
    /// `[[64, 64], [128, 128], [256, 256]]`, and a linear classifier.
    pub fn vgg(
        in_channels: usize,
        classes: usize,
        image_size: [usize; 2],
        stages: Vec<Vec<usize>>,
    ) -> Self {
        Self::new(in_channels, classes, image_size, stages)
    }

    /// The convolution benchmark's network: three conv 3×3-BN-ReLU-max-pool blocks with 64, 128
    /// and 256 channels and one linear layer (4096 → classes for 32×32 inputs).
    pub fn benchmark(in_channels: usize, classes: usize, image_size: [usize; 2]) -> Self {
        Self::new(
            in_channels,
            classes,
            image_size,
            vec![vec![64], vec![128], vec![256]],
        )
    }

    /// Spatial size after the last stage's pool.
    pub fn feature_size(&self) -> [usize; 2] {
        let shrink = |s: usize| self.stages.iter().fold(s, |s, _| s / 2);
        [shrink(self.image_size[0]), shrink(self.image_size[1])]
    }

    /// Checks that every size is positive and that the image survives the pools.
    pub fn validate(&self) -> Result<(), String> {
        if self.in_channels == 0 || self.classes == 0 || self.kernel_size == 0 {
            return Err("channels, classes and kernel_size must be positive".into());
        }
        if self.kernel_size.is_multiple_of(2) {
            return Err(format!(
                "kernel_size {} must be odd for 'same' padding",
                self.kernel_size
            ));
        }
        if self.stages.is_empty() || self.stages.iter().any(|s| s.is_empty() || s.contains(&0)) {
            return Err(format!(
                "stages {:?} must be non-empty lists of positive widths",
                self.stages
            ));
        }
        if self.hidden.contains(&0) {
            return Err(format!("hidden widths {:?} must be positive", self.hidden));
        }
        let [h, w] = self.feature_size();
        if h == 0 || w == 0 {
            return Err(format!(
                "{} pooling stages shrink a {}×{} image to nothing",
                self.stages.len(),
                self.image_size[0],
                self.image_size[1]
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("dropout {} must be in [0, 1)", self.dropout));
        }
        Ok(())
    }

    /// Builds the network: He-initialised convolutions (no bias before batch norm) and hidden
    /// linear layers, and a classifier with Burn's default initialisation.
    ///
    /// # Panics
    ///
    /// When [`ConvNetConfig::validate`] fails.
    pub fn init(&self, device: &Device) -> ConvNet {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let he = Initializer::KaimingNormal {
            gain: 2f64.sqrt(),
            fan_out_only: false,
        };
        let mut convs = Vec::new();
        let mut norms = Vec::new();
        let mut stage_lengths = Vec::new();
        let mut channels = self.in_channels;
        for stage in &self.stages {
            stage_lengths.push(stage.len());
            for &out in stage {
                convs.push(
                    Conv2dConfig::new([channels, out], [self.kernel_size; 2])
                        .with_padding(PaddingConfig2d::Same)
                        .with_bias(!self.batch_norm)
                        .with_initializer(he.clone())
                        .init(device),
                );
                if self.batch_norm {
                    norms.push(BatchNormConfig::new(out).init(device));
                }
                channels = out;
            }
        }
        let [h, w] = self.feature_size();
        let mut widths = vec![channels * h * w];
        widths.extend(&self.hidden);
        let linear = |i: usize, o: usize| {
            LinearConfig::new(i, o)
                .with_initializer(he.clone())
                .init(device)
        };
        // The classifier keeps Burn's (PyTorch's) default, smaller initialisation, so the first
        // scores are near-uniform and the initial loss near ln(classes).
        let head = LinearConfig::new(*widths.last().expect("features"), self.classes).init(device);
        ConvNet {
            convs,
            norms,
            stage_lengths,
            pool: MaxPool2dConfig::new([2, 2]).init(),
            activation: self.activation.init(device),
            hidden: widths.windows(2).map(|p| linear(p[0], p[1])).collect(),
            dropout: DropoutConfig::new(self.dropout).init(),
            head,
        }
    }
}

/// A plain convolutional classifier (see the module documentation).
#[derive(Module, Debug)]
pub struct ConvNet {
    /// Every convolution, stage after stage.
    pub convs: Vec<Conv2d>,
    /// One batch norm per convolution, or none.
    pub norms: Vec<BatchNorm>,
    /// Convolutions per stage.
    pub stage_lengths: Vec<usize>,
    /// The 2×2 max pool closing each stage.
    pub pool: MaxPool2d,
    /// The nonlinearity.
    pub activation: Activation,
    /// Hidden fully connected layers.
    pub hidden: Vec<Linear>,
    /// Dropout after each hidden fully connected layer.
    pub dropout: Dropout,
    /// The classifier.
    pub head: Linear,
}

impl ConvNet {
    fn conv_block(&self, layer: usize, x: Tensor<4>) -> Tensor<4> {
        let x = conv::forward(&self.convs[layer], x);
        match self.norms.get(layer) {
            Some(norm) => crate::norm::forward_then(norm, x, &self.activation),
            None => self.activation.forward(x),
        }
    }

    /// Runs every stage, handing each stage's pooled output to `keep`; returns the last.
    fn stages(&self, mut x: Tensor<4>, mut keep: impl FnMut(&Tensor<4>)) -> Tensor<4> {
        let mut layer = 0;
        for &n in &self.stage_lengths {
            for _ in 0..n {
                x = self.conv_block(layer, x);
                layer += 1;
            }
            x = crate::pool::forward(&self.pool, x);
            keep(&x);
        }
        x
    }

    /// What the classifier sees `[batch, head inputs]`: the last stage flattened, through the
    /// hidden fully connected layers.
    pub fn forward_embedding(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = self.stages(images, |_| {}).flatten(1, 3);
        for layer in &self.hidden {
            x = self
                .dropout
                .forward(self.activation.forward(crate::linear::forward(layer, x)));
        }
        x
    }

    /// Class scores `[batch, classes]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        crate::linear::forward(&self.head, self.forward_embedding(images))
    }
}

impl ImageClassifier for ConvNet {
    fn scores(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward(images)
    }

    fn first_conv(&self) -> Option<Tensor<4>> {
        self.convs.first().map(|c| c.weight.val())
    }
}

impl Backbone for ConvNet {
    /// Each stage's pooled output: strides 2, 4, 8, …
    fn feature_levels(&self) -> Vec<FeatureLevel> {
        let mut last = 0;
        self.stage_lengths
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                last += n;
                FeatureLevel {
                    stride: 2 << i,
                    channels: self.convs[last - 1].weight.dims()[0],
                }
            })
            .collect()
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
    fn shapes_of_the_named_networks() {
        let device = Device::flex();
        let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Default, &device);
        for config in [
            ConvNetConfig::course_three_layer(3, 10, [32, 32]),
            ConvNetConfig::vgg(3, 10, [32, 32], vec![vec![8, 8], vec![16, 16]]),
            ConvNetConfig::benchmark(3, 10, [32, 32]),
        ] {
            let net = config.init(&device);
            assert_eq!(net.forward(x.clone()).dims(), [2, 10]);
        }
        let bench = ConvNetConfig::benchmark(3, 10, [32, 32]).init(&device);
        assert_eq!(bench.head.weight.dims(), [4096, 10]);
        assert!(
            ConvNetConfig::vgg(3, 10, [8, 8], vec![vec![4]; 4])
                .validate()
                .is_err()
        );
        assert!(
            ConvNetConfig::new(3, 10, [8, 8], vec![vec![4]])
                .with_kernel_size(2)
                .validate()
                .is_err()
        );
    }

    #[test]
    fn gradients_match_finite_differences() {
        for config in [
            ConvNetConfig::new(2, 3, [6, 6], vec![vec![3], vec![4]]).with_hidden(vec![5]),
            ConvNetConfig::new(2, 3, [4, 4], vec![vec![3, 2]])
                .with_kernel_size(3)
                .with_batch_norm(false)
                .with_activation(ActivationConfig::Gelu),
        ] {
            let size = config.image_size;
            assert_gradients_match(
                &config.init(&Device::flex().autodiff()),
                [3, 2, size[0], size[1]],
                1e-5,
                |m, x| m.forward(x),
            );
        }
    }
}
