//! Training infrastructure for kiln: run directories, metrics logs, progress bars and plots.
//!
//! Every kiln command writes a run directory holding its resolved config (`config.toml`), one
//! JSON object per line of metrics (`metrics.jsonl`), PNG plots and checkpoints. Files are
//! written atomically (temporary name, then rename), so a killed run never leaves a
//! half-written file behind.

#![warn(missing_docs)]

mod checkpoint;
mod error;
pub mod filters;
pub mod lookahead;
mod metrics;
pub mod monitor;
pub mod optim;
pub mod params;
pub mod plot;
pub mod probe;
mod progress;
mod run_dir;
pub mod search;
pub mod trainer;

pub use checkpoint::{load_module, save_module};
pub use error::{Result, TrainError};
pub use metrics::{MetricsLog, read_metrics};
pub use progress::Progress;
pub use run_dir::{RunDir, timestamp, write_atomic, write_via_temp};
