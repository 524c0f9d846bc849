//! What a resumable run keeps next to its checkpoints, and how it is read back.

use std::path::PathBuf;

use burn::module::Module;
use serde::{Deserialize, Serialize};

use super::record::EpochRecord;
use crate::{Result, RunDir, TrainError, save_module, write_atomic};

/// Progress of a run after its last finished epoch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ResumeState {
    /// Epochs finished.
    pub epoch: usize,
    /// Optimizer steps taken.
    pub iteration: usize,
    /// Best validation score so far (picks `best.bpk`).
    #[serde(alias = "best_val_accuracy")]
    pub best_score: f64,
    /// Every finished epoch's record.
    pub history: Vec<EpochRecord>,
}

impl ResumeState {
    /// A run that has not started.
    pub fn fresh() -> Self {
        Self {
            epoch: 0,
            iteration: 0,
            best_score: f64::NEG_INFINITY,
            history: Vec::new(),
        }
    }
}

/// The files of a run's checkpoint, under `checkpoints/`.
pub(crate) struct Checkpoints {
    /// The model after the last finished epoch.
    pub model: PathBuf,
    /// The model of the best validation score.
    pub best: PathBuf,
    /// Optimizer state after the last finished epoch.
    pub optimizer: PathBuf,
    /// Lookahead average after the last finished epoch.
    pub lookahead: PathBuf,
    /// [`ResumeState`], written last.
    pub state: PathBuf,
}

impl Checkpoints {
    /// The checkpoint files of `run` (creating `checkpoints/`).
    pub fn of(run: &RunDir) -> Result<Self> {
        let dir = run.checkpoints()?;
        Ok(Self {
            model: dir.join("last.bpk"),
            best: dir.join("best.bpk"),
            optimizer: dir.join("last-optimizer.bin"),
            lookahead: dir.join("last-lookahead.bpk"),
            state: dir.join("state.json"),
        })
    }

    /// Reads the state of the last finished epoch.
    pub fn read_state(&self) -> Result<ResumeState> {
        let text =
            std::fs::read_to_string(&self.state).map_err(|e| TrainError::io(&self.state, e))?;
        serde_json::from_str(&text).map_err(|e| TrainError::Format {
            path: self.state.clone(),
            reason: e.to_string(),
        })
    }

    /// Saves the model (and, when it scored best, `best.bpk`); `save_rest` writes the
    /// optimizer and lookahead files; the state goes last, so a run killed before it resumes
    /// from the previous epoch.
    pub fn save<M: Module>(
        &self,
        model: &M,
        state: &ResumeState,
        is_best: bool,
        save_rest: impl FnOnce(&Self) -> Result<()>,
    ) -> Result<()> {
        save_module(model, &self.model)?;
        if is_best {
            save_module(model, &self.best)?;
        }
        save_rest(self)?;
        write_atomic(
            &self.state,
            serde_json::to_string_pretty(state)
                .expect("the resume state serialises")
                .as_bytes(),
        )
    }
}
