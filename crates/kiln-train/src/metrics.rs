//! `metrics.jsonl`: one JSON object per line, appended as a run goes.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::{Result, TrainError};

/// Appends records to a run's `metrics.jsonl`.
#[derive(Clone, Debug)]
pub struct MetricsLog {
    path: PathBuf,
}

impl MetricsLog {
    /// A log writing to `path`.
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record as a single line (written with one `write` call and flushed).
    pub fn append(&self, record: &impl Serialize) -> Result<()> {
        let mut line = serde_json::to_string(record)
            .map_err(|e| TrainError::Invalid(format!("metrics record is not JSON: {e}")))?;
        if line.contains('\n') {
            return Err(TrainError::Invalid("metrics record spans lines".into()));
        }
        line.push('\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| TrainError::io(&self.path, e))?;
        file.write_all(line.as_bytes())
            .and_then(|_| file.flush())
            .map_err(|e| TrainError::io(&self.path, e))
    }
}

/// Reads every record of a `metrics.jsonl`, ignoring a last line cut short by a crash.
pub fn read_metrics(path: &Path) -> Result<Vec<Value>> {
    let text = fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(v) => out.push(v),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => break,
            Err(e) => {
                return Err(TrainError::Format {
                    path: path.to_path_buf(),
                    reason: format!("line {}: {e}", i + 1),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn appends_and_reads_back_tolerating_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = MetricsLog::new(dir.path().join("metrics.jsonl"));
        log.append(&json!({"epoch": 1, "loss": 2.5})).unwrap();
        log.append(&json!({"epoch": 2, "loss": 1.5})).unwrap();
        let records = read_metrics(log.path()).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1]["loss"], 1.5);
        let mut f = OpenOptions::new().append(true).open(log.path()).unwrap();
        f.write_all(b"{\"epoch\": 3, \"lo").unwrap();
        assert_eq!(read_metrics(log.path()).unwrap().len(), 2);
        fs::write(log.path(), "{\"a\":1}\nnot json\n{\"b\":2}\n").unwrap();
        let err = read_metrics(log.path()).unwrap_err();
        assert!(err.to_string().contains("line 2"));
    }
}
