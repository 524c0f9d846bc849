//! kiln's one training loop and what it needs: a [`task::Task`] says how to batch, what the loss
//! is and how to evaluate; [`trainer::fit`] trains any task (classification in [`classify`];
//! detection and segmentation the same way) with schedules, learning-rate groups, lookahead,
//! freeze rules, the update monitor, checkpoints and exact resume.
//!
//! Every kiln command writes a run directory holding its resolved config (`config.toml`), one
//! JSON object per line of metrics (`metrics.jsonl`), PNG plots and checkpoints. Files are
//! written atomically (temporary name, then rename), so a killed run never leaves a
//! half-written file behind.
//!
//! A task of your own, trained by the same loop (the whole of one in `tests/trainer.rs`):
//!
//! ```ignore
//! use kiln_train::task::{Evaluation, StepOutput, Task};
//! use kiln_train::trainer::{FitData, TrainSettings, fit};
//!
//! impl Task for Regression {
//!     type Model = Line;            // any Burn module
//!     type Item = Point;            // what the dataset yields
//!     type Batch = Points;          // what the batcher makes of a Vec<Point>
//!     type Batcher = PointBatcher;
//!     const SCORE: &'static str = "close";   // picks checkpoints/best.bpk
//!
//!     fn batcher(&self) -> PointBatcher { PointBatcher }
//!     fn train_step(&self, model: &Line, batch: Points) -> Result<StepOutput> {
//!         let loss = MseLoss::new().forward(model.forward(batch.x), batch.y, Reduction::Mean);
//!         Ok(StepOutput { loss, items: batch.len(), sums: vec![] })
//!     }
//!     fn evaluate(&self, model: &Line, batches: &mut dyn Iterator<Item = Result<Points>>)
//!         -> Result<Evaluation> { /* loss and ("close", fraction) */ }
//! }
//!
//! let data = FitData { train, epoch: EpochCounter::default(), val, batch_groups: None };
//! let (line, history) = fit(&Regression, line, data, &settings, seed, &run, &device, false)?;
//! ```

#![warn(missing_docs)]

pub mod bench;
mod checkpoint;
pub mod classify;
mod error;
pub mod filters;
pub mod lookahead;
mod metrics;
pub mod mixed;
pub mod monitor;
pub mod optim;
pub mod params;
pub mod plot;
pub mod probe;
mod progress;
mod run_dir;
pub mod search;
pub mod task;
pub mod trainer;
pub mod transfer;

pub use checkpoint::{load_module, save_module};
pub use error::{Result, TrainError};
pub use metrics::{MetricsLog, read_metrics};
pub use progress::Progress;
pub use run_dir::{RunDir, timestamp, write_atomic, write_via_temp};
