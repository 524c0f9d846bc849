//! ResNet-18, -34 and -50 for ImageNet-sized images, laid out exactly like torchvision's
//! `torchvision.models.resnet` so that its published weights load through
//! [`pretrained::load_pytorch`](crate::pretrained::load_pytorch).
//!
//! The network (He et al., 2016, with torchvision's "ResNet v1.5" bottleneck): a 7×7 stride-2
//! convolution without bias, batch norm, ReLU, a 3×3 stride-2 max pool, four stages
//! `layer1..layer4` of residual blocks (64, 128, 256, 512 channels — times 4 for bottlenecks —
//! every stage after the first halving the resolution in its first block), a global average
//! pool and a linear classifier `fc`.
//!
//! - [`BasicBlock`] (ResNet-18/34): `conv1` 3×3 (with the stride), `bn1`, ReLU, `conv2` 3×3,
//!   `bn2`, plus the shortcut, ReLU.
//! - [`Bottleneck`] (ResNet-50): `conv1` 1×1, `bn1`, ReLU, `conv2` 3×3 **with the stride**,
//!   `bn2`, ReLU, `conv3` 1×1 to 4× the width, `bn3`, plus the shortcut, ReLU.
//! - The shortcut is a [`Downsample`] (1×1 convolution with the stride, then batch norm) when the
//!   block changes the resolution or the channel count, the identity otherwise.
//!
//! Parameter paths equal torchvision's state-dict names except inside the shortcut, which
//! torchvision stores as an `nn.Sequential` (`downsample.0` = conv, `downsample.1` = BN) and kiln
//! names `downsample.conv` / `downsample.bn`; [`ImageNetResNet::pytorch_keys`] maps between the
//! two and ignores torchvision's `num_batches_tracked` counters.
//!
//! Batch norm uses ε = 1e-5 and momentum 0.1 like PyTorch's defaults. Burn's momentum has
//! PyTorch's meaning (`running = (1 − momentum)·running + momentum·batch`, not Keras' inverse
//! convention). One difference remains in training: Burn updates `running_var` with the biased
//! batch variance where PyTorch uses the unbiased one (a factor n/(n − 1), n = batch × h × w
//! values per channel, so below 0.1 % for any realistic batch). Inference — any
//! device without autodiff, or a module after `.valid()` — uses the running statistics and
//! matches PyTorch's `eval()` exactly.
//!
//! Published ImageNet weights are listed by [`ResNetWeights`]; with the `download` feature,
//! `load_pretrained` downloads (into kiln's cache, verified by SHA-256 prefix) and loads them.

use std::path::Path;

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::backbone::global_average;
use crate::pretrained::{KeyMap, PretrainedError, load_pytorch};
use crate::{Backbone, FeatureLevel, FeatureMaps, ImageClassifier, norm};

/// Batch-norm ε of torchvision's ResNets (PyTorch's default).
pub const BN_EPSILON: f64 = 1e-5;
/// Batch-norm momentum of torchvision's ResNets (PyTorch's default, same convention in Burn).
pub const BN_MOMENTUM: f64 = 0.1;
/// The per-channel mean torchvision's ImageNet weights expect of inputs in `[0, 1]` (RGB).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// The per-channel standard deviation torchvision's ImageNet weights expect (RGB).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Output channels of the stem and the base width of `layer1`.
const STEM_WIDTH: usize = 64;
/// Base widths of `layer1..layer4`.
const STAGE_WIDTHS: [usize; 4] = [64, 128, 256, 512];

/// Which residual block a ResNet is built from.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Two 3×3 convolutions (ResNet-18, -34); output channels = the stage width.
    Basic,
    /// 1×1 → 3×3 → 1×1 convolutions (ResNet-50 and deeper); output channels = 4 × the width.
    Bottleneck,
}

impl BlockKind {
    /// How many times the stage width a block outputs (1 for basic blocks, 4 for bottlenecks).
    pub fn expansion(self) -> usize {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }

    /// Weighted layers per block (2 or 3), for the depth in a ResNet's name.
    fn layers(self) -> usize {
        match self {
            BlockKind::Basic => 2,
            BlockKind::Bottleneck => 3,
        }
    }
}

/// Configuration of an [`ImageNetResNet`] (torchvision's `ResNet(block, layers, num_classes)`).
#[derive(Config, Debug)]
pub struct ImageNetResNetConfig {
    /// The residual block.
    pub block: BlockKind,
    /// Blocks in `layer1..layer4`.
    pub layers: [usize; 4],
    /// Number of output classes (1000 for the published ImageNet weights).
    pub num_classes: usize,
}

impl ImageNetResNetConfig {
    /// ResNet-18: basic blocks `[2, 2, 2, 2]`, 11,689,512 parameters with 1000 classes.
    pub fn resnet18(num_classes: usize) -> Self {
        Self::new(BlockKind::Basic, [2, 2, 2, 2], num_classes)
    }

    /// ResNet-34: basic blocks `[3, 4, 6, 3]`, 21,797,672 parameters with 1000 classes.
    pub fn resnet34(num_classes: usize) -> Self {
        Self::new(BlockKind::Basic, [3, 4, 6, 3], num_classes)
    }

    /// ResNet-50: bottlenecks `[3, 4, 6, 3]`, 25,557,032 parameters with 1000 classes.
    pub fn resnet50(num_classes: usize) -> Self {
        Self::new(BlockKind::Bottleneck, [3, 4, 6, 3], num_classes)
    }

    /// Weighted layers: 2 (stem conv and `fc`) plus 2 or 3 per block, e.g. 50 for ResNet-50.
    pub fn depth(&self) -> usize {
        2 + self.block.layers() * self.layers.iter().sum::<usize>()
    }

    /// The published torchvision weights for this architecture (any number of classes: the
    /// weights have 1000, see [`ImageNetResNet::with_classes`] to fine-tune on others).
    pub fn weights(&self) -> Vec<ResNetWeights> {
        ResNetWeights::ALL
            .into_iter()
            .filter(|w| {
                let config = w.config();
                config.block == self.block && config.layers == self.layers
            })
            .collect()
    }

    /// Checks the sizes.
    pub fn validate(&self) -> Result<(), String> {
        if self.layers.contains(&0) || self.num_classes == 0 {
            return Err(format!(
                "every stage needs at least one block and there must be at least one class \
                 (layers {:?}, num_classes {})",
                self.layers, self.num_classes
            ));
        }
        Ok(())
    }

    /// Builds the network with torchvision's initialisation: convolutions Kaiming-normal
    /// (fan-out, ReLU gain), batch norms γ = 1, β = 0, `fc` uniform ±1/√fan-in.
    ///
    /// # Panics
    ///
    /// When [`ImageNetResNetConfig::validate`] fails.
    pub fn init(&self, device: &Device) -> ImageNetResNet {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let expansion = self.block.expansion();
        let mut channels = STEM_WIDTH;
        let mut stages = Vec::with_capacity(4);
        for (stage, (&width, &count)) in STAGE_WIDTHS.iter().zip(&self.layers).enumerate() {
            let mut blocks = Vec::with_capacity(count);
            for i in 0..count {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                blocks.push(match self.block {
                    BlockKind::Basic => {
                        ResidualBlock::Basic(BasicBlock::new(channels, width, stride, device))
                    }
                    BlockKind::Bottleneck => {
                        ResidualBlock::Bottleneck(Bottleneck::new(channels, width, stride, device))
                    }
                });
                channels = width * expansion;
            }
            stages.push(blocks);
        }
        let [layer1, layer2, layer3, layer4]: [Vec<ResidualBlock>; 4] =
            stages.try_into().expect("four stages");
        ImageNetResNet {
            conv1: conv(3, STEM_WIDTH, 7, 2, device),
            bn1: batch_norm(STEM_WIDTH, device),
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            layer1,
            layer2,
            layer3,
            layer4,
            fc: LinearConfig::new(channels, self.num_classes).init(device),
        }
    }
}

/// torchvision's convolution initialisation: `kaiming_normal_(mode="fan_out",
/// nonlinearity="relu")`.
fn he_fan_out() -> Initializer {
    Initializer::KaimingNormal {
        gain: 2f64.sqrt(),
        fan_out_only: true,
    }
}

/// A square convolution without bias, padded by `kernel / 2` (torchvision's `conv1x1`,
/// `conv3x3` and the 7×7 stem).
fn conv(input: usize, output: usize, kernel: usize, stride: usize, device: &Device) -> Conv2d {
    conv_with(input, output, kernel, stride, he_fan_out(), device)
}

/// [`conv`] with another initialiser.
pub(crate) fn conv_with(
    input: usize,
    output: usize,
    kernel: usize,
    stride: usize,
    initializer: Initializer,
    device: &Device,
) -> Conv2d {
    let pad = kernel / 2;
    Conv2dConfig::new([input, output], [kernel; 2])
        .with_stride([stride; 2])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .with_initializer(initializer)
        .init(device)
}

pub(crate) fn batch_norm(channels: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(channels)
        .with_epsilon(BN_EPSILON)
        .with_momentum(BN_MOMENTUM)
        .init(device)
}

/// The projection shortcut: a 1×1 convolution with the block's stride, then batch norm
/// (torchvision's `downsample.0` and `downsample.1`).
#[derive(Module, Debug)]
pub struct Downsample {
    /// 1×1 convolution without bias (torchvision `downsample.0`).
    pub conv: Conv2d,
    /// Batch norm (torchvision `downsample.1`).
    pub bn: BatchNorm,
}

impl Downsample {
    fn new(
        input: usize,
        output: usize,
        stride: usize,
        initializer: Initializer,
        device: &Device,
    ) -> Self {
        Self {
            conv: conv_with(input, output, 1, stride, initializer, device),
            bn: batch_norm(output, device),
        }
    }

    /// `bn(conv(x))`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        norm::forward(&self.bn, crate::conv::forward(&self.conv, x))
    }

    /// The shortcut of a block from `input` channels to `output` channels with `stride`: a
    /// projection when the shape changes, the identity (`None`) otherwise.
    fn when_needed(
        input: usize,
        output: usize,
        stride: usize,
        initializer: Initializer,
        device: &Device,
    ) -> Option<Self> {
        (stride != 1 || input != output)
            .then(|| Self::new(input, output, stride, initializer, device))
    }
}

fn shortcut(downsample: &Option<Downsample>, x: Tensor<4>) -> Tensor<4> {
    match downsample {
        Some(projection) => projection.forward(x),
        None => x,
    }
}

/// torchvision's `BasicBlock`: `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`.
#[derive(Module, Debug)]
pub struct BasicBlock {
    /// 3×3 convolution, carries the stride.
    pub conv1: Conv2d,
    /// Batch norm after `conv1`.
    pub bn1: BatchNorm,
    /// 3×3 convolution.
    pub conv2: Conv2d,
    /// Batch norm after `conv2`.
    pub bn2: BatchNorm,
    /// Projection shortcut when the shape changes, identity otherwise.
    pub downsample: Option<Downsample>,
}

impl BasicBlock {
    /// A block from `input` to `width` channels; `stride` 2 halves the resolution.
    /// Convolutions are initialised like torchvision's.
    pub fn new(input: usize, width: usize, stride: usize, device: &Device) -> Self {
        Self::with_initializer(input, width, stride, he_fan_out(), device)
    }

    /// [`new`](Self::new) with the convolutions drawn from `initializer`.
    pub fn with_initializer(
        input: usize,
        width: usize,
        stride: usize,
        initializer: Initializer,
        device: &Device,
    ) -> Self {
        Self {
            conv1: conv_with(input, width, 3, stride, initializer.clone(), device),
            bn1: batch_norm(width, device),
            conv2: conv_with(width, width, 3, 1, initializer.clone(), device),
            bn2: batch_norm(width, device),
            downsample: Downsample::when_needed(input, width, stride, initializer, device),
        }
    }

    /// The stride of the block (its first convolution's).
    pub fn stride(&self) -> usize {
        self.conv1.stride[0]
    }

    /// The block's output.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = shortcut(&self.downsample, x.clone());
        let y = norm::forward_activated(
            &self.bn1,
            crate::conv::forward(&self.conv1, x),
            norm::FusedActivation::Relu,
        );
        let y = norm::forward(&self.bn2, crate::conv::forward(&self.conv2, y));
        relu(y + identity)
    }
}

/// torchvision's `Bottleneck` (ResNet v1.5: the stride is on the 3×3 convolution):
/// `relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x))`.
#[derive(Module, Debug)]
pub struct Bottleneck {
    /// 1×1 convolution to the width.
    pub conv1: Conv2d,
    /// Batch norm after `conv1`.
    pub bn1: BatchNorm,
    /// 3×3 convolution, carries the stride.
    pub conv2: Conv2d,
    /// Batch norm after `conv2`.
    pub bn2: BatchNorm,
    /// 1×1 convolution to 4 × the width.
    pub conv3: Conv2d,
    /// Batch norm after `conv3`.
    pub bn3: BatchNorm,
    /// Projection shortcut when the shape changes, identity otherwise.
    pub downsample: Option<Downsample>,
}

impl Bottleneck {
    /// A block from `input` channels through `width` to `4 × width` channels; `stride` 2
    /// halves the resolution.
    pub fn new(input: usize, width: usize, stride: usize, device: &Device) -> Self {
        let output = width * BlockKind::Bottleneck.expansion();
        Self {
            conv1: conv(input, width, 1, 1, device),
            bn1: batch_norm(width, device),
            conv2: conv(width, width, 3, stride, device),
            bn2: batch_norm(width, device),
            conv3: conv(width, output, 1, 1, device),
            bn3: batch_norm(output, device),
            downsample: Downsample::when_needed(input, output, stride, he_fan_out(), device),
        }
    }

    /// The block's output.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = shortcut(&self.downsample, x.clone());
        let y = norm::forward_activated(
            &self.bn1,
            crate::conv::forward(&self.conv1, x),
            norm::FusedActivation::Relu,
        );
        let y = norm::forward_activated(
            &self.bn2,
            crate::conv::forward(&self.conv2, y),
            norm::FusedActivation::Relu,
        );
        let y = norm::forward(&self.bn3, crate::conv::forward(&self.conv3, y));
        relu(y + identity)
    }
}

/// One residual block of either kind (the variant name is not part of parameter paths:
/// `layer1.0.conv1.weight` as in torchvision).
// A bottleneck holds one more conv and norm than a basic block (a few hundred bytes of handles,
// the tensors live elsewhere); boxing it would only add an indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum ResidualBlock {
    /// A [`BasicBlock`] (ResNet-18/34).
    Basic(BasicBlock),
    /// A [`Bottleneck`] (ResNet-50).
    Bottleneck(Bottleneck),
}

impl ResidualBlock {
    /// The block's output.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            ResidualBlock::Basic(block) => block.forward(x),
            ResidualBlock::Bottleneck(block) => block.forward(x),
        }
    }

    /// The block's shortcut projection, if it has one.
    pub fn downsample(&self) -> Option<&Downsample> {
        match self {
            ResidualBlock::Basic(block) => block.downsample.as_ref(),
            ResidualBlock::Bottleneck(block) => block.downsample.as_ref(),
        }
    }

    /// The block's output channels.
    pub fn out_channels(&self) -> usize {
        match self {
            ResidualBlock::Basic(block) => block.conv2.weight.dims()[0],
            ResidualBlock::Bottleneck(block) => block.conv3.weight.dims()[0],
        }
    }
}

/// A torchvision-compatible ResNet (18, 34 or 50 layers) for ImageNet-sized images.
#[derive(Module, Debug)]
pub struct ImageNetResNet {
    /// 7×7 stride-2 stem convolution without bias, padding 3.
    pub conv1: Conv2d,
    /// Batch norm of the stem.
    pub bn1: BatchNorm,
    /// 3×3 stride-2 max pool, padding 1.
    pub maxpool: MaxPool2d,
    /// Stage 1 (stride 4 overall).
    pub layer1: Vec<ResidualBlock>,
    /// Stage 2 (stride 8).
    pub layer2: Vec<ResidualBlock>,
    /// Stage 3 (stride 16).
    pub layer3: Vec<ResidualBlock>,
    /// Stage 4 (stride 32).
    pub layer4: Vec<ResidualBlock>,
    /// Linear classifier on the globally averaged `layer4` output.
    pub fc: Linear,
}

/// Strides of an [`ImageNetResNet`]'s feature maps (`layer1..layer4`) relative to the input.
pub const FEATURE_STRIDES: [usize; 4] = [4, 8, 16, 32];

impl ImageNetResNet {
    /// The key rules from torchvision's state-dict names to this module's paths: the shortcut's
    /// `downsample.0` / `downsample.1` become `downsample.conv` / `downsample.bn`, and
    /// `num_batches_tracked` is ignored. (BatchNorm `weight`/`bias` → `gamma`/`beta` and the
    /// transpose of `fc.weight` are done by burn-store's PyTorch adapter.)
    pub fn pytorch_keys() -> KeyMap {
        KeyMap::new()
            .rename(r"\.downsample\.0\.", ".downsample.conv.")
            .rename(r"\.downsample\.1\.", ".downsample.bn.")
            .ignore(r"(^|\.)num_batches_tracked$")
    }

    /// Weighted layers (18, 34 or 50 for the named configurations).
    pub fn depth(&self) -> usize {
        let blocks = self.stages().iter().map(|s| s.len()).sum::<usize>();
        let per_block = match self.layer1.first() {
            Some(ResidualBlock::Bottleneck(_)) => 3,
            _ => 2,
        };
        2 + per_block * blocks
    }

    /// The name error messages use, e.g. `ResNet-50 (1000 classes)`.
    pub fn architecture(&self) -> String {
        format!("ResNet-{} ({} classes)", self.depth(), self.num_classes())
    }

    /// Loads a torchvision ResNet state dict (e.g. a file of [`ResNetWeights`]); every tensor
    /// must match in name and shape, so a file for another depth or number of classes is a
    /// [`PretrainedError::Mismatch`] listing the differences.
    pub fn load_pytorch(self, path: &Path) -> Result<Self, PretrainedError> {
        let architecture = self.architecture();
        load_pytorch(self, path, &Self::pytorch_keys(), &architecture)
    }

    /// Replaces the classifier with a freshly initialised `classes`-way one (for fine-tuning a
    /// pretrained backbone on another label set), initialised like PyTorch's `nn.Linear`.
    pub fn with_classes(mut self, classes: usize, device: &Device) -> Self {
        self.fc = LinearConfig::new(self.feature_size(), classes).init(device);
        self
    }

    /// Number of classes the classifier predicts.
    pub fn num_classes(&self) -> usize {
        self.fc.weight.dims()[1]
    }

    /// Number of features the classifier sees (512 for ResNet-18/34, 2048 for ResNet-50).
    pub fn feature_size(&self) -> usize {
        self.fc.weight.dims()[0]
    }

    /// `layer1..layer4`.
    pub fn stages(&self) -> [&Vec<ResidualBlock>; 4] {
        [&self.layer1, &self.layer2, &self.layer3, &self.layer4]
    }

    /// Stem: `maxpool(relu(bn1(conv1(images))))`, stride 4.
    fn forward_stem(&self, images: Tensor<4>) -> Tensor<4> {
        let x = norm::forward_activated(
            &self.bn1,
            crate::conv::forward(&self.conv1, images),
            norm::FusedActivation::Relu,
        );
        crate::pool::forward(&self.maxpool, x)
    }

    /// Globally averaged `layer4` features `[batch, feature_size()]` (what `fc` sees).
    pub fn forward_embedding(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self
            .stages()
            .iter()
            .flat_map(|stage| stage.iter())
            .fold(self.forward_stem(images), |x, block| block.forward(x));
        global_average(x)
    }

    /// Class scores (logits) `[batch, num_classes]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        crate::linear::forward(&self.fc, self.forward_embedding(images))
    }
}

impl ImageClassifier for ImageNetResNet {
    fn scores(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward(images)
    }

    fn first_conv(&self) -> Option<Tensor<4>> {
        Some(self.conv1.weight.val())
    }
}

impl Backbone for ImageNetResNet {
    /// The outputs of `layer1..layer4` at strides [`FEATURE_STRIDES`] = 4, 8, 16, 32, with
    /// `[64, 128, 256, 512]` channels for ResNet-18/34 and `[256, 512, 1024, 2048]` for
    /// ResNet-50 (sizes follow torchvision's rounding).
    fn feature_levels(&self) -> Vec<FeatureLevel> {
        self.stages()
            .iter()
            .zip(FEATURE_STRIDES)
            .map(|(stage, stride)| FeatureLevel {
                stride,
                channels: stage
                    .last()
                    .expect("every stage has a block")
                    .out_channels(),
            })
            .collect()
    }

    fn feature_maps(&self, images: Tensor<4>) -> FeatureMaps {
        let mut x = self.forward_stem(images);
        let mut maps = Vec::with_capacity(4);
        for stage in self.stages() {
            x = stage.iter().fold(x, |x, block| block.forward(x));
            maps.push(x.clone());
        }
        FeatureMaps::new(self.feature_levels(), maps)
    }
}

/// Weights published by torchvision for these ResNets, trained on ImageNet-1k (1000 classes).
///
/// Accuracies are torchvision's, single 224×224 centre crop after resizing the shorter side to
/// [`resize_size`](Self::resize_size), bilinear, normalised with [`IMAGENET_MEAN`] and
/// [`IMAGENET_STD`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResNetWeights {
    /// `ResNet18_Weights.IMAGENET1K_V1` (`resnet18-f37072fd.pth`): 69.758 % top-1,
    /// 89.078 % top-5.
    ResNet18ImageNet1kV1,
    /// `ResNet34_Weights.IMAGENET1K_V1` (`resnet34-b627a593.pth`): 73.314 % top-1,
    /// 91.420 % top-5.
    ResNet34ImageNet1kV1,
    /// `ResNet50_Weights.IMAGENET1K_V1` (`resnet50-0676ba61.pth`), the original recipe:
    /// 76.130 % top-1, 92.862 % top-5.
    ResNet50ImageNet1kV1,
    /// `ResNet50_Weights.IMAGENET1K_V2` (`resnet50-11ad3fa6.pth`), torchvision's newer training
    /// recipe and its default: 80.858 % top-1, 95.434 % top-5 (evaluated after resizing to 232).
    ResNet50ImageNet1kV2,
}

impl ResNetWeights {
    /// Every published file.
    pub const ALL: [ResNetWeights; 4] = [
        ResNetWeights::ResNet18ImageNet1kV1,
        ResNetWeights::ResNet34ImageNet1kV1,
        ResNetWeights::ResNet50ImageNet1kV1,
        ResNetWeights::ResNet50ImageNet1kV2,
    ];

    /// The download URL on `download.pytorch.org`.
    pub fn url(self) -> &'static str {
        match self {
            ResNetWeights::ResNet18ImageNet1kV1 => {
                "https://download.pytorch.org/models/resnet18-f37072fd.pth"
            }
            ResNetWeights::ResNet34ImageNet1kV1 => {
                "https://download.pytorch.org/models/resnet34-b627a593.pth"
            }
            ResNetWeights::ResNet50ImageNet1kV1 => {
                "https://download.pytorch.org/models/resnet50-0676ba61.pth"
            }
            ResNetWeights::ResNet50ImageNet1kV2 => {
                "https://download.pytorch.org/models/resnet50-11ad3fa6.pth"
            }
        }
    }

    /// The file name (the URL's last segment), as stored in the cache.
    pub fn file_name(self) -> &'static str {
        let url = self.url();
        &url[url.rfind('/').map_or(0, |i| i + 1)..]
    }

    /// The first 8 hex digits of the file's SHA-256, embedded in its name after the dash
    /// (what torchvision's `check_hash` verifies).
    pub fn sha256_prefix(self) -> &'static str {
        let name = self.file_name();
        let start = name.rfind('-').map_or(0, |i| i + 1);
        let end = name.rfind('.').unwrap_or(name.len());
        &name[start..end]
    }

    /// The architecture the weights are for, with 1000 classes.
    pub fn config(self) -> ImageNetResNetConfig {
        match self {
            ResNetWeights::ResNet18ImageNet1kV1 => ImageNetResNetConfig::resnet18(1000),
            ResNetWeights::ResNet34ImageNet1kV1 => ImageNetResNetConfig::resnet34(1000),
            ResNetWeights::ResNet50ImageNet1kV1 | ResNetWeights::ResNet50ImageNet1kV2 => {
                ImageNetResNetConfig::resnet50(1000)
            }
        }
    }

    /// torchvision's ImageNet-1k validation top-1 accuracy, in percent.
    pub fn top1(self) -> f64 {
        match self {
            ResNetWeights::ResNet18ImageNet1kV1 => 69.758,
            ResNetWeights::ResNet34ImageNet1kV1 => 73.314,
            ResNetWeights::ResNet50ImageNet1kV1 => 76.130,
            ResNetWeights::ResNet50ImageNet1kV2 => 80.858,
        }
    }

    /// torchvision's ImageNet-1k validation top-5 accuracy, in percent.
    pub fn top5(self) -> f64 {
        match self {
            ResNetWeights::ResNet18ImageNet1kV1 => 89.078,
            ResNetWeights::ResNet34ImageNet1kV1 => 91.420,
            ResNetWeights::ResNet50ImageNet1kV1 => 92.862,
            ResNetWeights::ResNet50ImageNet1kV2 => 95.434,
        }
    }

    /// Shorter image side before the centre crop in torchvision's evaluation (256, or 232 for
    /// the V2 weights).
    pub fn resize_size(self) -> usize {
        match self {
            ResNetWeights::ResNet50ImageNet1kV2 => 232,
            _ => 256,
        }
    }

    /// Side of the square centre crop the accuracies were measured on (224).
    pub fn crop_size(self) -> usize {
        224
    }

    /// Builds the architecture on `device` and loads the weights from `path` (a copy of
    /// [`file_name`](Self::file_name) obtained any way; no download, no checksum).
    pub fn load(self, path: &Path, device: &Device) -> Result<ImageNetResNet, PretrainedError> {
        self.config().init(device).load_pytorch(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn torchvision_resnet_parameter_counts() {
        // Parameters only (no BN running statistics), counted where they are trainable.
        let device = Device::flex().autodiff();
        for (config, params, depth) in [
            (ImageNetResNetConfig::resnet18(1000), 11_689_512, 18),
            (ImageNetResNetConfig::resnet34(1000), 21_797_672, 34),
            (ImageNetResNetConfig::resnet50(1000), 25_557_032, 50),
        ] {
            assert_eq!(config.depth(), depth);
            let net = config.init(&device);
            assert_eq!(
                crate::cost::trainable_params(&net),
                params,
                "ResNet-{depth}"
            );
            assert_eq!(net.depth(), depth);
        }
    }

    #[test]
    fn torchvision_resnet18_forward_shapes_and_strides() {
        let device = Device::flex();
        let net = ImageNetResNetConfig::resnet18(10).init(&device);
        let channels: Vec<usize> = net.feature_levels().iter().map(|l| l.channels).collect();
        assert_eq!(channels, [64, 128, 256, 512]);
        let x = Tensor::<4>::random([1, 3, 64, 64], Distribution::Default, &device);
        let maps = net.feature_maps(x.clone()).into_maps();
        let dims: Vec<[usize; 4]> = maps.iter().map(|m| m.dims()).collect();
        assert_eq!(
            dims,
            [
                [1, 64, 16, 16],
                [1, 128, 8, 8],
                [1, 256, 4, 4],
                [1, 512, 2, 2]
            ]
        );
        for (map, stride) in maps.iter().zip(FEATURE_STRIDES) {
            assert_eq!(map.dims()[2], 64 / stride);
        }
        let logits = net.forward(x.clone());
        assert_eq!(logits.dims(), [1, 10]);
        // The logits are `fc` of the averaged last map.
        let last = maps[3].clone().mean_dim(3).mean_dim(2).flatten::<2>(1, 3);
        let expected = net.fc.forward(last).into_data();
        logits
            .into_data()
            .assert_approx_eq::<f32>(&expected, burn::tensor::Tolerance::default());

        // Odd sizes round like torchvision: 65 → conv1 33 → maxpool 17 → 9 → 5 → 3.
        let x = Tensor::<4>::random([1, 3, 65, 65], Distribution::Default, &device);
        let sides: Vec<usize> = net
            .feature_maps(x)
            .into_maps()
            .iter()
            .map(|m| m.dims()[2])
            .collect();
        assert_eq!(sides, [17, 9, 5, 3]);
    }

    #[test]
    fn torchvision_resnet50_forward_shapes_and_strides() {
        let device = Device::flex();
        let net = ImageNetResNetConfig::resnet50(1000).init(&device);
        let channels: Vec<usize> = net.feature_levels().iter().map(|l| l.channels).collect();
        assert_eq!(channels, [256, 512, 1024, 2048]);
        assert_eq!(net.feature_size(), 2048);
        // ResNet v1.5: the stride of a bottleneck is on its 3×3 convolution.
        let ResidualBlock::Bottleneck(first) = &net.layer2[0] else {
            panic!("ResNet-50 is built from bottlenecks")
        };
        assert_eq!(first.conv1.stride, [1, 1]);
        assert_eq!(first.conv2.stride, [2, 2]);
        assert_eq!(first.downsample.as_ref().unwrap().conv.stride, [2, 2]);
        assert!(net.layer2[1].downsample().is_none());

        let x = Tensor::<4>::random([2, 3, 64, 64], Distribution::Default, &device);
        let dims: Vec<[usize; 4]> = net
            .feature_maps(x.clone())
            .into_maps()
            .iter()
            .map(|m| m.dims())
            .collect();
        assert_eq!(
            dims,
            [
                [2, 256, 16, 16],
                [2, 512, 8, 8],
                [2, 1024, 4, 4],
                [2, 2048, 2, 2]
            ]
        );
        assert_eq!(net.forward(x.clone()).dims(), [2, 1000]);

        let tuned = net.with_classes(5, &device);
        assert_eq!(tuned.forward(x).dims(), [2, 5]);
        assert_eq!(tuned.num_classes(), 5);
        assert_eq!(tuned.architecture(), "ResNet-50 (5 classes)");
    }

    #[test]
    fn torchvision_resnet_batch_norms_use_pytorch_settings() {
        let net = ImageNetResNetConfig::resnet50(1000).init(&Device::flex());
        let mut norms = vec![&net.bn1];
        for block in net.stages().into_iter().flatten() {
            let ResidualBlock::Bottleneck(b) = block else {
                unreachable!()
            };
            norms.extend([&b.bn1, &b.bn2, &b.bn3]);
            norms.extend(b.downsample.as_ref().map(|d| &d.bn));
        }
        assert_eq!(norms.len(), 1 + 16 * 3 + 4);
        for norm in norms {
            assert_eq!(norm.epsilon, 1e-5);
            assert_eq!(norm.momentum, 0.1);
        }
    }

    #[test]
    fn torchvision_resnet_weights_are_described_consistently() {
        for weights in ResNetWeights::ALL {
            let name = weights.file_name();
            assert!(weights.url().ends_with(&format!("/{name}")));
            assert_eq!(weights.sha256_prefix().len(), 8, "{name}");
            assert!(
                weights
                    .sha256_prefix()
                    .chars()
                    .all(|c| c.is_ascii_hexdigit())
            );
            assert!(weights.config().weights().contains(&weights));
            assert_eq!(weights.config().num_classes, 1000);
            assert!(weights.top5() > weights.top1());
        }
        let w = ResNetWeights::ResNet18ImageNet1kV1;
        assert_eq!(w.file_name(), "resnet18-f37072fd.pth");
        assert_eq!(w.sha256_prefix(), "f37072fd");
        assert_eq!(
            ResNetWeights::ResNet34ImageNet1kV1.sha256_prefix(),
            "b627a593"
        );
        assert_eq!(
            ResNetWeights::ResNet50ImageNet1kV2.sha256_prefix(),
            "11ad3fa6"
        );
        assert_eq!(ResNetWeights::ResNet50ImageNet1kV2.top1(), 80.858);
        assert_eq!(
            ImageNetResNetConfig::resnet50(3).weights(),
            [
                ResNetWeights::ResNet50ImageNet1kV1,
                ResNetWeights::ResNet50ImageNet1kV2
            ]
        );
    }
}
