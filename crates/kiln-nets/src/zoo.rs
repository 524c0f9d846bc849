//! One way to pick a network: [`ModelSpec`] (the `[model]` table of a config: the small-image
//! nets, built for a data set's geometry) and [`Architecture`] (the ImageNet networks with
//! published weights) both give a [`Network`], one Burn module that trains, evaluates, reports
//! its cost and serves as a [`Backbone`] whichever network it holds.
//!
//! ```ignore
//! use kiln_nets::zoo::{Architecture, Geometry, ModelSpec};
//!
//! let spec: ModelSpec = toml::from_str("type = \"resnet\"\nwidths = [16, 32, 64]")?;
//! let cifar = spec.build(Geometry::new(3, 32, 32, 10), None, &device)?;
//! let imagenet = Architecture::parse("efficientnet-lite0")?.load(&weights, &device)?;
//! ```

use std::fmt;
use std::path::Path;

use burn::module::Module;
use burn::nn::activation::ActivationConfig;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::pretrained::{PretrainedError, pytorch_tensor_names};
use crate::{
    AirbenchConfig, AirbenchNet, Backbone, CifarResNet, CifarResNetConfig, ConvNet, ConvNetConfig,
    EfficientNetLite, EfficientNetLiteConfig, FeatureLevel, FeatureMaps, ForwardCost,
    ImageClassifier, ImageNetResNet, ImageNetResNetConfig, ResNetWeights,
};

/// Why a network could not be built or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ZooError {
    /// The `[model]` table describes no valid network.
    #[error("[model] {0}")]
    Invalid(String),
    /// An architecture name kiln does not know.
    #[error("unknown architecture `{name}`; choose one of {known}")]
    UnknownArchitecture {
        /// The name asked for.
        name: String,
        /// The names kiln knows, comma-separated.
        known: String,
    },
    /// A weight file that holds no network kiln knows.
    #[error(
        "{path} holds no network kiln knows (expected EfficientNet-Lite0's `_conv_stem` or a \
         torchvision ResNet's `layer1…`); its first tensors are: {first}"
    )]
    Unrecognised {
        /// The weight file.
        path: String,
        /// Its first tensor names.
        first: String,
    },
    /// The weight file could not be read or does not fit.
    #[error(transparent)]
    Weights(#[from] PretrainedError),
    /// The network computes NaN or infinite scores: its weights hold such values.
    #[error(
        "the network gives non-finite scores: its weights hold NaN or infinite values; use an \
         intact weight file"
    )]
    NonFinite,
}

/// Nonlinearities a config can name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActivationName {
    /// max(0, x).
    #[default]
    Relu,
    /// Gaussian error linear unit.
    Gelu,
    /// Hyperbolic tangent.
    Tanh,
    /// max(0.01x, x).
    LeakyRelu,
}

impl ActivationName {
    /// Burn's configuration of the nonlinearity.
    pub fn config(self) -> ActivationConfig {
        match self {
            Self::Relu => ActivationConfig::Relu,
            Self::Gelu => ActivationConfig::Gelu,
            Self::Tanh => ActivationConfig::Tanh,
            Self::LeakyRelu => ActivationConfig::LeakyRelu(burn::nn::LeakyReluConfig::new()),
        }
    }
}

fn default_kernel() -> usize {
    3
}
fn yes() -> bool {
    true
}
fn default_resnet_widths() -> Vec<usize> {
    CifarResNetConfig::new(3, 10).widths
}
fn default_resnet_blocks() -> Vec<usize> {
    CifarResNetConfig::new(3, 10).blocks
}
fn default_airbench_widths() -> Vec<usize> {
    AirbenchConfig::new().widths
}
fn default_whiten_images() -> usize {
    5000
}
fn default_whiten_eps() -> f64 {
    5e-4
}
fn default_bn_momentum() -> f64 {
    AirbenchConfig::new().batch_norm_momentum
}
fn default_output_scale() -> f64 {
    AirbenchConfig::new().output_scale
}

/// The `[model]` table: a network for small images, sized by the data at build time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ModelSpec {
    /// [`ConvNet`]: stages of convolutions, each closed by a 2×2 max pool.
    ConvNet {
        /// Output channels of each convolution, one list per stage.
        stages: Vec<Vec<usize>>,
        /// Kernel side.
        #[serde(default = "default_kernel")]
        kernel_size: usize,
        /// Batch norm after every convolution.
        #[serde(default = "yes")]
        batch_norm: bool,
        /// Nonlinearity.
        #[serde(default)]
        activation: ActivationName,
        /// Hidden fully connected widths.
        #[serde(default)]
        hidden: Vec<usize>,
        /// Dropout after hidden fully connected layers.
        #[serde(default)]
        dropout: f64,
    },
    /// [`CifarResNet`] for small images.
    Resnet {
        /// Channels per stage.
        #[serde(default = "default_resnet_widths")]
        widths: Vec<usize>,
        /// Basic blocks per stage.
        #[serde(default = "default_resnet_blocks")]
        blocks: Vec<usize>,
    },
    /// [`AirbenchNet`] with its first layer whitened on training patches.
    Airbench {
        /// Widths of the three conv groups.
        #[serde(default = "default_airbench_widths")]
        widths: Vec<usize>,
        /// Training images used to estimate the patch covariance.
        #[serde(default = "default_whiten_images")]
        whiten_images: usize,
        /// ε added to the eigenvalues.
        #[serde(default = "default_whiten_eps")]
        whiten_eps: f64,
        /// Batch-norm momentum (PyTorch's sense).
        #[serde(default = "default_bn_momentum")]
        batch_norm_momentum: f64,
        /// Logit scale.
        #[serde(default = "default_output_scale")]
        output_scale: f64,
    },
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self::ConvNet {
            stages: vec![vec![64], vec![128], vec![256]],
            kernel_size: 3,
            batch_norm: true,
            activation: ActivationName::Relu,
            hidden: Vec::new(),
            dropout: 0.0,
        }
    }
}

/// Image geometry and class count a network is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Channels.
    pub channels: usize,
    /// Height.
    pub height: usize,
    /// Width.
    pub width: usize,
    /// Classes.
    pub classes: usize,
}

impl Geometry {
    /// `channels × height × width` images in `classes` classes.
    pub fn new(channels: usize, height: usize, width: usize, classes: usize) -> Self {
        Self {
            channels,
            height,
            width,
            classes,
        }
    }
}

impl ModelSpec {
    /// Builds the network on `device` (seed it first). Airbench's whitening layer is fitted on
    /// `whitening` images (normalised, NCHW) when given; otherwise (e.g. before loading a
    /// checkpoint) it keeps its initial values.
    pub fn build(
        &self,
        geometry: Geometry,
        whitening: Option<(&[f32], [usize; 4])>,
        device: &Device,
    ) -> Result<Network, ZooError> {
        let g = geometry;
        let invalid = ZooError::Invalid;
        match self {
            Self::ConvNet {
                stages,
                kernel_size,
                batch_norm,
                activation,
                hidden,
                dropout,
            } => {
                let config =
                    ConvNetConfig::new(g.channels, g.classes, [g.height, g.width], stages.clone())
                        .with_kernel_size(*kernel_size)
                        .with_batch_norm(*batch_norm)
                        .with_activation(activation.config())
                        .with_hidden(hidden.clone())
                        .with_dropout(*dropout);
                config.validate().map_err(invalid)?;
                Ok(Network::ConvNet(config.init(device)))
            }
            Self::Resnet { widths, blocks } => {
                let config = CifarResNetConfig::new(g.channels, g.classes)
                    .with_widths(widths.clone())
                    .with_blocks(blocks.clone());
                config.validate().map_err(invalid)?;
                Ok(Network::CifarResNet(config.init(device)))
            }
            Self::Airbench {
                widths,
                whiten_eps,
                batch_norm_momentum,
                output_scale,
                ..
            } => {
                let config = AirbenchConfig::new()
                    .with_in_channels(g.channels)
                    .with_classes(g.classes)
                    .with_widths(widths.clone())
                    .with_batch_norm_momentum(*batch_norm_momentum)
                    .with_output_scale(*output_scale);
                config.validate().map_err(invalid)?;
                if g.height < 8 || g.width < 8 {
                    return Err(invalid(
                        "airbench needs images of at least 8×8 pixels".into(),
                    ));
                }
                let mut net = config.init(device);
                if let Some((images, shape)) = whitening {
                    net = net.with_whitening(images, shape, *whiten_eps);
                }
                Ok(Network::Airbench(net))
            }
        }
    }

    /// Training images the network's initialisation looks at (airbench's whitening), 0 if
    /// none.
    pub fn init_images(&self) -> usize {
        match self {
            Self::Airbench { whiten_images, .. } => *whiten_images,
            _ => 0,
        }
    }
}

/// The ImageNet networks kiln has published weights for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    /// EfficientNet-Lite0 (4.7 M parameters).
    EfficientNetLite0,
    /// torchvision's ResNet-18.
    ResNet18,
    /// torchvision's ResNet-34.
    ResNet34,
    /// torchvision's ResNet-50.
    ResNet50,
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Architecture {
    /// Every architecture, in the order help texts list them.
    pub const ALL: [Architecture; 4] = [
        Architecture::EfficientNetLite0,
        Architecture::ResNet18,
        Architecture::ResNet34,
        Architecture::ResNet50,
    ];

    /// The name used on the command line and in configs.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::EfficientNetLite0 => "efficientnet-lite0",
            Architecture::ResNet18 => "resnet18",
            Architecture::ResNet34 => "resnet34",
            Architecture::ResNet50 => "resnet50",
        }
    }

    /// Parses a [`name`](Self::name) (case and surrounding blanks ignored).
    pub fn parse(name: &str) -> Result<Self, ZooError> {
        let wanted = name.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|arch| arch.name() == wanted)
            .ok_or_else(|| ZooError::UnknownArchitecture {
                name: name.to_string(),
                known: Self::ALL.map(Self::name).join(", "),
            })
    }

    /// Recognises the architecture of a PyTorch state dict from its tensor names.
    pub fn detect(weights: &Path) -> Result<Self, ZooError> {
        let names = pytorch_tensor_names(weights)?;
        let has = |name: &str| names.iter().any(|n| n == name);
        if has("_conv_stem.weight") {
            Ok(Architecture::EfficientNetLite0)
        } else if has("layer1.0.conv3.weight") {
            Ok(Architecture::ResNet50)
        } else if has("layer3.5.conv1.weight") {
            Ok(Architecture::ResNet34)
        } else if has("layer1.0.conv1.weight") {
            Ok(Architecture::ResNet18)
        } else {
            Err(ZooError::Unrecognised {
                path: weights.display().to_string(),
                first: names.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
            })
        }
    }

    /// torchvision's published weights (downloadable), for the ResNets.
    pub fn published(self) -> Option<ResNetWeights> {
        match self {
            Architecture::EfficientNetLite0 => None,
            Architecture::ResNet18 => Some(ResNetWeights::ResNet18ImageNet1kV1),
            Architecture::ResNet34 => Some(ResNetWeights::ResNet34ImageNet1kV1),
            Architecture::ResNet50 => Some(ResNetWeights::ResNet50ImageNet1kV2),
        }
    }

    /// `(shorter side before the centre crop, crop side)` its ImageNet weights were evaluated
    /// with: 256/224, or 232/224 for ResNet-50's V2 weights.
    pub fn eval_sizes(self) -> (usize, usize) {
        match self.published() {
            Some(weights) => (weights.resize_size(), weights.crop_size()),
            None => (256, 224),
        }
    }

    /// A randomly initialised network with a `classes`-way head.
    pub fn init(self, classes: usize, device: &Device) -> Network {
        match self {
            Architecture::EfficientNetLite0 => {
                Network::EfficientNet(EfficientNetLiteConfig::lite0(classes).init(device))
            }
            Architecture::ResNet18 => {
                Network::ImageNetResNet(ImageNetResNetConfig::resnet18(classes).init(device))
            }
            Architecture::ResNet34 => {
                Network::ImageNetResNet(ImageNetResNetConfig::resnet34(classes).init(device))
            }
            Architecture::ResNet50 => {
                Network::ImageNetResNet(ImageNetResNetConfig::resnet50(classes).init(device))
            }
        }
    }

    /// The network with the ImageNet weights at `path` (1000 classes).
    pub fn load(self, path: &Path, device: &Device) -> Result<Network, ZooError> {
        Ok(match self.init(1000, device) {
            Network::EfficientNet(net) => Network::EfficientNet(net.load_pytorch(path)?),
            Network::ImageNetResNet(net) => Network::ImageNetResNet(net.load_pytorch(path)?),
            _ => unreachable!("init builds ImageNet networks"),
        })
    }
}

/// Any network of this crate that classifies images, as one Burn module.
///
/// Burn's own checkpoints (burnpack) of a `Network` name each tensor with the variant first
/// (`Airbench.whiten.weight`); to load one into the plain network, strip it:
/// `BurnpackStore::from_file(path).with_remap_pattern("^Airbench\\.", "")`.
// One network per process, moved rarely: the size difference costs nothing, and Burn's
// `Module` derive needs the variants unboxed.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Network {
    /// A plain conv-pool stack.
    ConvNet(ConvNet),
    /// A residual network for small images.
    CifarResNet(CifarResNet),
    /// The airbench94 network.
    Airbench(AirbenchNet),
    /// EfficientNet-Lite0.
    EfficientNet(EfficientNetLite),
    /// A torchvision ResNet.
    ImageNetResNet(ImageNetResNet),
}

/// Runs `$body` with `$net` bound to the network inside any variant.
macro_rules! each_network {
    ($self:expr, $net:ident => $body:expr) => {
        match $self {
            Network::ConvNet($net) => $body,
            Network::CifarResNet($net) => $body,
            Network::Airbench($net) => $body,
            Network::EfficientNet($net) => $body,
            Network::ImageNetResNet($net) => $body,
        }
    };
}

impl Network {
    /// Class scores `[batch, classes]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        each_network!(self, net => net.forward(images))
    }

    /// Class probabilities (softmax of the scores) of `images`, `batch × classes` values
    /// row-major; an error when a score is not finite (NaN or infinite weights), rather than
    /// probabilities that print as "NaN %".
    pub fn probabilities(&self, images: Tensor<4>) -> Result<Vec<f32>, ZooError> {
        let values: Vec<f32> = burn::tensor::activation::softmax(self.forward(images), 1)
            .into_data()
            .convert::<f32>()
            .try_to_vec()
            .map_err(|_| ZooError::NonFinite)?;
        if values.iter().any(|p| !p.is_finite()) {
            return Err(ZooError::NonFinite);
        }
        Ok(values)
    }

    /// What the classifier sees, `[batch, feature_size()]` (pooled features for the
    /// ImageNet networks: what a linear probe trains on).
    pub fn forward_embedding(&self, images: Tensor<4>) -> Tensor<2> {
        each_network!(self, net => net.forward_embedding(images))
    }

    /// The classifier applied to an embedding (dropout only while training).
    pub fn classify(&self, embedding: Tensor<2>) -> Tensor<2> {
        match self {
            Network::Airbench(net) => net.classify(embedding),
            Network::EfficientNet(net) => {
                crate::linear::forward(&net.fc, net.dropout.forward(embedding))
            }
            _ => crate::linear::forward(self.head(), embedding),
        }
    }

    /// The linear classifier.
    pub fn head(&self) -> &Linear {
        match self {
            Network::ConvNet(net) => &net.head,
            Network::CifarResNet(net) => &net.head,
            Network::Airbench(net) => &net.head,
            Network::EfficientNet(net) => &net.fc,
            Network::ImageNetResNet(net) => &net.fc,
        }
    }

    /// The dotted parameter path of the classifier (`head` or `fc`): what fine-tuning gives
    /// its own learning rate.
    pub fn head_path(&self) -> &'static str {
        match self {
            Network::EfficientNet(_) | Network::ImageNetResNet(_) => "fc",
            _ => "head",
        }
    }

    /// Size of the embedding.
    pub fn feature_size(&self) -> usize {
        self.head().weight.dims()[0]
    }

    /// The network with `head` as its classifier (e.g. a trained linear probe).
    pub fn with_head(self, head: Linear) -> Self {
        match self {
            Network::ConvNet(net) => Network::ConvNet(ConvNet { head, ..net }),
            Network::CifarResNet(net) => Network::CifarResNet(CifarResNet { head, ..net }),
            Network::Airbench(net) => Network::Airbench(AirbenchNet { head, ..net }),
            Network::EfficientNet(net) => {
                Network::EfficientNet(EfficientNetLite { fc: head, ..net })
            }
            Network::ImageNetResNet(net) => {
                Network::ImageNetResNet(ImageNetResNet { fc: head, ..net })
            }
        }
    }

    /// Replaces the classifier with a fresh `classes`-way one, initialised like PyTorch's
    /// `nn.Linear` (for fine-tuning on another label set).
    pub fn with_classes(self, classes: usize, device: &Device) -> Self {
        let head = LinearConfig::new(self.feature_size(), classes).init(device);
        self.with_head(head)
    }

    /// Multiply-adds of a forward pass on one `[h, w]` image, for the networks that count
    /// them (the small-image nets).
    pub fn macs(&self, image_size: [usize; 2]) -> Option<u64> {
        match self {
            Network::ConvNet(net) => Some(net.macs(image_size)),
            Network::CifarResNet(net) => Some(net.macs(image_size)),
            Network::Airbench(net) => Some(net.macs(image_size)),
            Network::EfficientNet(_) | Network::ImageNetResNet(_) => None,
        }
    }
}

impl ImageClassifier for Network {
    fn scores(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward(images)
    }

    fn first_conv(&self) -> Option<Tensor<4>> {
        each_network!(self, net => net.first_conv())
    }
}

impl Backbone for Network {
    fn feature_levels(&self) -> Vec<FeatureLevel> {
        each_network!(self, net => net.feature_levels())
    }

    fn feature_maps(&self, images: Tensor<4>) -> FeatureMaps {
        each_network!(self, net => net.feature_maps(images))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn small() -> Geometry {
        Geometry::new(3, 16, 16, 4)
    }

    #[test]
    fn every_spec_builds_a_network_that_classifies() {
        let device = Device::flex();
        let specs = [
            ModelSpec::default(),
            toml::from_str("type = \"resnet\"\nwidths = [4, 8]\nblocks = [1, 1]").unwrap(),
            toml::from_str("type = \"airbench\"\nwidths = [8, 8, 8]").unwrap(),
        ];
        let images = Tensor::<4>::random([2, 3, 16, 16], Distribution::Default, &device);
        for spec in specs {
            let net = spec.build(small(), None, &device).unwrap();
            let scores = net.forward(images.clone());
            assert_eq!(scores.dims(), [2, 4], "{spec:?}");
            // The head applied to the embedding is the forward pass.
            net.classify(net.forward_embedding(images.clone()))
                .into_data()
                .assert_approx_eq::<f32>(&scores.into_data(), burn::tensor::Tolerance::default());
            assert!(net.macs([16, 16]).unwrap() > 0);
            let levels = net.feature_levels();
            let maps = net.feature_maps(images.clone());
            assert_eq!(maps.levels(), levels.as_slice());
            for (level, map) in maps.iter() {
                assert_eq!(map.dims()[1], level.channels, "{spec:?}");
            }
            let renamed = net.with_classes(7, &device);
            assert_eq!(renamed.forward(images.clone()).dims(), [2, 7]);
        }
    }

    /// Every float gradient of a module's trainable parameters, as (name-less) float types.
    struct GradTypes<'a>(
        &'a burn::tensor::Gradients,
        Vec<Option<burn::tensor::DType>>,
    );

    impl burn::module::ModuleVisitor for GradTypes<'_> {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            let value = param.val();
            if value.is_require_grad() {
                self.1.push(value.grad(self.0).map(|g| g.dtype()));
            }
        }
    }

    #[test]
    fn every_network_trains_inside_an_autocast_scope() {
        use burn::tensor::{DType, FloatDType};
        let device = Device::flex().autodiff();
        let specs = [
            ModelSpec::default(),
            toml::from_str("type = \"resnet\"\nwidths = [4, 8]\nblocks = [1, 1]").unwrap(),
            toml::from_str("type = \"airbench\"\nwidths = [8, 8, 8]").unwrap(),
        ];
        let mut nets: Vec<Network> = specs
            .iter()
            .map(|spec| {
                spec.build(Geometry::new(3, 32, 32, 4), None, &device)
                    .unwrap()
            })
            .collect();
        // EfficientNet's stochastic depth makes a mask of its own; ResNet-50 has bottlenecks.
        for arch in [Architecture::EfficientNetLite0, Architecture::ResNet50] {
            nets.push(arch.init(4, &device));
        }
        let images = Tensor::<4>::random([2, 3, 32, 32], Distribution::Default, &device);
        for net in nets {
            let scores = crate::autocast::scope(FloatDType::F16, || net.forward(images.clone()));
            assert_eq!(scores.dtype(), DType::F16);
            let loss = crate::autocast::to_device_float(scores).sum();
            let grads = loss.backward();
            let mut types = GradTypes(&grads, Vec::new());
            net.visit(&mut types);
            assert!(!types.1.is_empty());
            assert!(
                types.1.iter().all(|t| *t == Some(DType::F32)),
                "every trainable weight gets an f32 gradient: {:?}",
                types.1
            );
        }
    }

    #[test]
    fn bad_specs_are_errors_not_panics() {
        let device = Device::flex();
        let empty = ModelSpec::Resnet {
            widths: vec![],
            blocks: vec![],
        };
        let err = empty.build(small(), None, &device).unwrap_err().to_string();
        assert!(err.starts_with("[model]"), "{err}");
        let airbench: ModelSpec = toml::from_str("type = \"airbench\"").unwrap();
        assert!(
            airbench
                .build(Geometry::new(1, 4, 4, 2), None, &device)
                .is_err()
        );
        assert!(toml::from_str::<ModelSpec>("type = \"vgg\"").is_err());
        assert!(toml::from_str::<ModelSpec>("type = \"resnet\"\ndepth = 3").is_err());
        assert_eq!(airbench.init_images(), 5000);
    }

    #[test]
    fn architectures_by_name() {
        for arch in Architecture::ALL {
            assert_eq!(Architecture::parse(arch.name()).unwrap(), arch);
            assert_eq!(
                Architecture::parse(&format!(" {} ", arch.name().to_uppercase())).unwrap(),
                arch
            );
        }
        let err = Architecture::parse("vgg16").unwrap_err().to_string();
        assert!(err.contains("efficientnet-lite0, resnet18"), "{err}");
        assert_eq!(Architecture::ResNet50.eval_sizes(), (232, 224));
        assert_eq!(Architecture::EfficientNetLite0.eval_sizes(), (256, 224));
        let net = Architecture::ResNet18.init(3, &Device::flex());
        assert_eq!(net.head_path(), "fc");
        assert_eq!(net.feature_size(), 512);
    }

    #[test]
    fn nan_weights_are_an_error_not_nan_probabilities() {
        let device = Device::flex();
        let net = ModelSpec::default().build(small(), None, &device).unwrap();
        let images = Tensor::<4>::random([2, 3, 16, 16], Distribution::Default, &device);
        let p = net.probabilities(images.clone()).unwrap();
        assert_eq!(p.len(), 2 * 4);
        assert!((p[..4].iter().sum::<f32>() - 1.0).abs() < 1e-5);
        let classes = net.head().weight.dims()[1];
        let mut head = LinearConfig::new(net.feature_size(), classes).init(&device);
        head.weight = head.weight.map(|w| w.mul_scalar(f32::NAN));
        let broken = net.with_head(head);
        assert!(matches!(
            broken.probabilities(images),
            Err(ZooError::NonFinite)
        ));
    }

    #[test]
    fn a_file_of_no_known_network_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("garbage.pth");
        std::fs::write(&path, b"not a state dict").unwrap();
        let err = Architecture::detect(&path).unwrap_err().to_string();
        assert!(err.contains("garbage.pth"), "{err}");
    }
}
