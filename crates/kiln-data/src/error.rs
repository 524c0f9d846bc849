//! The one error type of `kiln-data`: every variant names the file (or URL) it is about and,
//! where there is one, the fix.

use std::path::{Path, PathBuf};

/// Everything that can go wrong while finding, reading, downloading or transforming data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The operating system refused an operation on `path`.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory the operation was about.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file exists but its contents are not what its format requires.
    #[error("{path}: {reason}")]
    Format {
        /// The offending file.
        path: PathBuf,
        /// What is wrong, and where possible how to fix it.
        reason: String,
    },
    /// An image file could not be decoded.
    #[error("{path}: cannot decode image ({reason}); delete or replace the file")]
    Decode {
        /// The image file.
        path: PathBuf,
        /// The decoder's message.
        reason: String,
    },
    /// A downloaded or cached file does not have the published checksum.
    #[error(
        "{path}: {algorithm} is {actual}, expected {expected}; the file is corrupt or incomplete, delete it and retry"
    )]
    Checksum {
        /// The file whose checksum did not match.
        path: PathBuf,
        /// The hash function, e.g. `MD5` or `SHA-256`.
        algorithm: &'static str,
        /// The published checksum (for a SHA-256 prefix, the hex digits the digest must start
        /// with).
        expected: String,
        /// The checksum of the bytes on disk.
        actual: String,
    },
    /// An archive entry would be written outside the extraction directory.
    #[error("{archive}: refusing entry {entry:?}, which points outside the extraction directory")]
    UnsafeArchiveEntry {
        /// The archive.
        archive: PathBuf,
        /// The entry's path as stored in the archive.
        entry: String,
    },
    /// A download failed.
    #[error("downloading {url} failed: {reason}")]
    Download {
        /// What was being downloaded.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// No dataset in a layout kiln reads was found at `path`.
    #[error("{path}: {reason}")]
    NotFound {
        /// Where kiln looked.
        path: PathBuf,
        /// What was expected there and how to get it.
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
}

impl DataError {
    /// Wraps an I/O error with the path it happened on.
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

/// Result alias for `kiln-data`.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
