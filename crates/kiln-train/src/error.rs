//! Errors of `kiln-train`, each naming the file concerned.

use std::path::{Path, PathBuf};

/// What can go wrong while writing or reading a run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The operating system refused an operation on `path`.
    #[error("{path}: {source}")]
    Io {
        /// File or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A run file exists but cannot be understood.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The request cannot be carried out as given.
    #[error("{0}")]
    Invalid(String),
    /// Reading or preparing the data failed.
    #[error(transparent)]
    Data(#[from] kiln_data::DataError),
    /// The network could not be built or its weights loaded.
    #[error(transparent)]
    Model(#[from] kiln_nets::zoo::ZooError),
}

impl TrainError {
    /// Wraps an I/O error with its path.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}

/// Result alias for `kiln-train`.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
