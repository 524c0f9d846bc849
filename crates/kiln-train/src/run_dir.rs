//! The run directory every kiln command writes.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{MetricsLog, Result, TrainError};

/// Produces `path` atomically: `write` fills a temporary sibling (`.NAME.tmp` plus `suffix`,
/// for writers that pick a format by extension), which is renamed to `path` once complete and
/// removed on failure. Readers see either the old file or the complete new one.
pub fn write_via_temp(
    path: &Path,
    suffix: &str,
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| TrainError::Invalid(format!("{} is not a file path", path.display())))?;
    let tmp = path.with_file_name(format!(".{}.tmp{suffix}", name.to_string_lossy()));
    let result =
        write(&tmp).and_then(|()| fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path` atomically (see [`write_via_temp`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_via_temp(path, "", |tmp| {
        fs::write(tmp, bytes).map_err(|e| TrainError::io(tmp, e))
    })
}

/// UTC time as `YYYYMMDD-HHMMSS`, for default run names.
pub fn timestamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// A run's output directory: `config.toml`, `metrics.jsonl`, plots and `checkpoints/`.
#[derive(Clone, Debug)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// Creates a fresh run directory at `path` and writes the resolved config into it.
    ///
    /// Refuses a directory that already holds a run, so results are never silently mixed;
    /// resuming goes through [`RunDir::open`].
    pub fn create(path: &Path, resolved_config_toml: &str) -> Result<Self> {
        if path.join("config.toml").exists() || path.join("metrics.jsonl").exists() {
            return Err(TrainError::Invalid(format!(
                "{} already holds a run; choose another --out or delete it",
                path.display()
            )));
        }
        if path.exists() {
            let mut entries = fs::read_dir(path).map_err(|e| TrainError::io(path, e))?;
            if entries.next().is_some() {
                return Err(TrainError::Invalid(format!(
                    "{} exists and holds files that are not a kiln run; a run is written only \
                     into a new or empty folder: choose another --out",
                    path.display()
                )));
            }
        }
        fs::create_dir_all(path).map_err(|e| TrainError::io(path, e))?;
        let run = Self {
            root: path.to_path_buf(),
        };
        write_atomic(&run.file("config.toml"), resolved_config_toml.as_bytes())?;
        Ok(run)
    }

    /// Opens an existing run directory (to resume or to read it).
    pub fn open(path: &Path) -> Result<Self> {
        if !path.join("config.toml").is_file() {
            return Err(TrainError::Format {
                path: path.to_path_buf(),
                reason: "not a kiln run directory (no config.toml)".into(),
            });
        }
        Ok(Self {
            root: path.to_path_buf(),
        })
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// A file inside the run directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The checkpoint directory, created on first use.
    pub fn checkpoints(&self) -> Result<PathBuf> {
        let dir = self.root.join("checkpoints");
        fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
        Ok(dir)
    }

    /// The checkpoint a finished run is used with: `best.bpk` (best validation score), or
    /// `last.bpk` when the run validated nothing; an error naming the folder when neither is
    /// there.
    pub fn best_checkpoint(&self) -> Result<PathBuf> {
        let dir = self.root.join("checkpoints");
        ["best.bpk", "last.bpk"]
            .iter()
            .map(|name| dir.join(name))
            .find(|p| p.is_file())
            .ok_or_else(|| TrainError::Format {
                path: dir,
                reason: "no best.bpk or last.bpk: train the run first (or resume it)".into(),
            })
    }

    /// The weights a run ended with, `last.bpk` (after its final epoch, or the epoch it was
    /// paused after); an error naming the folder when it is not there.
    pub fn last_checkpoint(&self) -> Result<PathBuf> {
        let path = self.root.join("checkpoints").join("last.bpk");
        if path.is_file() {
            Ok(path)
        } else {
            Err(TrainError::Format {
                path,
                reason: "no last checkpoint: train the run first (or resume it)".into(),
            })
        }
    }

    /// `model` with the run's `best.bpk` loaded when training wrote one (it validated), else
    /// `model` itself (the final weights): what a run reports at its end.
    pub fn best_or<M: burn::module::Module>(&self, model: M) -> Result<M> {
        let best = self.root.join("checkpoints").join("best.bpk");
        if best.is_file() {
            crate::load_module(model, &best)
        } else {
            Ok(model)
        }
    }

    /// The run's metrics log.
    pub fn metrics(&self) -> MetricsLog {
        MetricsLog::new(self.file("metrics.jsonl"))
    }

    /// Writes `bytes` as `name` inside the run, atomically.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<PathBuf> {
        let path = self.file(name);
        write_atomic(&path, bytes)?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_writes_config_and_refuses_reuse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs/a");
        let run = RunDir::create(&path, "seed = 1\n").unwrap();
        assert_eq!(
            fs::read_to_string(run.file("config.toml")).unwrap(),
            "seed = 1\n"
        );
        let err = RunDir::create(&path, "seed = 2\n").unwrap_err();
        assert!(err.to_string().contains("already holds a run"));
        assert!(RunDir::open(&path).is_ok());
        assert!(RunDir::open(dir.path()).is_err());
        assert!(run.checkpoints().unwrap().is_dir());
        // A folder of the user's own files is never written into; an empty one is fine.
        let mine = dir.path().join("mine");
        fs::create_dir_all(&mine).unwrap();
        fs::write(mine.join("notes.txt"), "keep").unwrap();
        let err = RunDir::create(&mine, "seed = 3\n").unwrap_err();
        assert!(err.to_string().contains("not a kiln run"), "{err}");
        assert_eq!(fs::read_dir(&mine).unwrap().count(), 1);
        let empty = dir.path().join("empty");
        fs::create_dir_all(&empty).unwrap();
        assert!(RunDir::create(&empty, "seed = 4\n").is_ok());
    }

    #[test]
    fn atomic_write_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.bin");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn timestamp_has_the_documented_shape() {
        let t = timestamp();
        assert_eq!(t.len(), 15);
        assert!(t.starts_with("20") && t.as_bytes()[8] == b'-');
    }
}
