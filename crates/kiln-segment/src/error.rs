//! Errors of kiln-segment: each names the file or setting at fault and what is wrong.

use std::path::{Path, PathBuf};

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file or setting is not what it should be.
    #[error("{what}: {reason}")]
    Invalid {
        /// The file or setting.
        what: String,
        /// What is wrong and, where it helps, the fix.
        reason: String,
    },
    /// kiln-data could not read or extract something.
    #[error(transparent)]
    Data(#[from] kiln_data::DataError),
    /// Training, a checkpoint or a plot failed.
    #[error(transparent)]
    Train(#[from] kiln_train::TrainError),
    /// The backbone's weights could not be found or loaded.
    #[error("[backbone]: {0}")]
    Backbone(#[from] kiln_nets::download::BackboneError),
}

impl SegmentError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// An invalid file or setting.
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

/// kiln-segment's result.
pub type Result<T> = std::result::Result<T, SegmentError>;
