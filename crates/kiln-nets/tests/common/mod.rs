//! What the integration tests of kiln-nets share: where the project's shared data is.

use std::path::PathBuf;

/// `$KILN_SHARED` (the shared data directory), or `None` after saying the test was skipped.
pub fn shared_dir() -> Option<PathBuf> {
    match std::env::var_os("KILN_SHARED") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => {
            eprintln!("SKIPPED: KILN_SHARED is not set (point it at the shared data directory)");
            None
        }
    }
}
