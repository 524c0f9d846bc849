//! Image classification on kiln's training loop: the [`Classification`] task, data prepared
//! the way every classification command prepares it ([`PreparedData`]), training followed by
//! the test score ([`train_and_test`]), the course's sanity checks ([`sanity`]) and ensembles
//! of trained runs ([`ensemble`]).

mod data;
pub mod ensemble;
mod run;
pub mod sanity;
mod task;

pub use data::{PreparedData, SplitSpec, subset_for_search};
pub use run::{ClassifierData, TestScores, Trained, train_and_test};
pub use task::{Classification, Tta, evaluate, tta_scores};
