//! The one error type of `kiln-detect`: every variant names the file or setting it is about and,
//! where there is one, the fix.

use std::path::{Path, PathBuf};

/// Everything that can go wrong while reading detection data, evaluating or training detectors.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The operating system refused an operation on `path`.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory the operation was about.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A file's contents are not what its format requires (malformed XML/JSON, a bad box, an
    /// unknown class, …).
    #[error("{path}: {reason}")]
    Format {
        /// The offending file.
        path: PathBuf,
        /// What is wrong, and where possible how to fix it.
        reason: String,
    },
    /// An argument or configuration value is out of its valid range.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The setting at fault.
        what: String,
        /// Why it is invalid.
        reason: String,
    },
    /// Reading or transforming images failed.
    #[error(transparent)]
    Data(#[from] kiln_data::DataError),
    /// Training or checkpoint handling failed.
    #[error(transparent)]
    Train(#[from] kiln_train::TrainError),
    /// Building or loading a network failed.
    #[error(transparent)]
    Model(#[from] kiln_nets::zoo::ZooError),
}

impl DetectError {
    /// An I/O error about `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// A format error about `path`.
    pub fn format(path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        Self::Format {
            path: path.as_ref().to_path_buf(),
            reason: reason.into(),
        }
    }

    /// An invalid setting.
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

/// `Result` with [`DetectError`].
pub type Result<T, E = DetectError> = std::result::Result<T, E>;
