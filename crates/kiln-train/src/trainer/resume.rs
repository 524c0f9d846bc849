//! What a resumable run keeps next to its checkpoints, and how it is read back.
//!
//! An epoch's checkpoint is a set — the model, the optimizer state, the lookahead average —
//! that must be restored together. Each set is written into a hidden folder, renamed to
//! `checkpoints/epoch-NNNN/` once complete (one atomic rename), and only then named in
//! `state.json` (written atomically too); the previous set is removed last. A run killed at any
//! point therefore resumes from one whole set: the new one if `state.json` names it, the
//! previous one otherwise. `last.bpk` and `best.bpk` beside them are copies for users.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::FloatDType;
use serde::{Deserialize, Serialize};

use super::record::EpochRecord;
use crate::mixed::LossScaler;
use crate::{Result, RunDir, TrainError, save_module, write_atomic, write_via_temp};

/// Progress of a run after its last finished epoch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ResumeState {
    /// Epochs finished.
    pub epoch: usize,
    /// Optimizer steps taken.
    pub iteration: usize,
    /// Best validation score so far (picks `best.bpk`); −∞ before any (JSON has no infinity,
    /// so it is written as `null`).
    #[serde(
        alias = "best_val_accuracy",
        deserialize_with = "null_as_minus_infinity"
    )]
    pub best_score: f64,
    /// Every finished epoch's record.
    pub history: Vec<EpochRecord>,
    /// The folder (under `checkpoints/`) of the set to resume from; absent in runs written
    /// before sets existed, which kept `last.bpk`, `last-optimizer.bin` and
    /// `last-lookahead.bpk` beside `state.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// The float type the run computes in; absent in runs written before it was recorded
    /// (all of them f32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub float_dtype: Option<FloatDType>,
    /// The loss scaler of an f16 mixed-precision run, as the next step uses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scaler: Option<LossScaler>,
}

fn null_as_minus_infinity<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NEG_INFINITY))
}

impl ResumeState {
    /// A run that has not started.
    pub fn fresh() -> Self {
        Self {
            epoch: 0,
            iteration: 0,
            best_score: f64::NEG_INFINITY,
            history: Vec::new(),
            checkpoint: None,
            float_dtype: None,
            loss_scaler: None,
        }
    }
}

/// The files of one checkpoint set.
pub(crate) struct SetFiles {
    /// The model.
    pub model: PathBuf,
    /// The optimizer state (momenta, Adam moments).
    pub optimizer: PathBuf,
    /// The lookahead average (when the run has lookahead).
    pub lookahead: PathBuf,
}

impl SetFiles {
    fn in_dir(dir: &Path) -> Self {
        Self {
            model: dir.join("model.bpk"),
            optimizer: dir.join("optimizer.bin"),
            lookahead: dir.join("lookahead.bpk"),
        }
    }
}

/// A run's `checkpoints/` folder.
pub(crate) struct Checkpoints {
    dir: PathBuf,
    /// Copy of the model after the last finished epoch, for users.
    pub model: PathBuf,
    /// Copy of the model of the best validation score, for users.
    pub best: PathBuf,
    /// [`ResumeState`], the last file an epoch writes.
    pub state: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |e| TrainError::io(path, e)
}

impl Checkpoints {
    /// The checkpoint folder of `run` (created if need be).
    pub fn of(run: &RunDir) -> Result<Self> {
        let dir = run.checkpoints()?;
        Ok(Self {
            model: dir.join("last.bpk"),
            best: dir.join("best.bpk"),
            state: dir.join("state.json"),
            dir,
        })
    }

    /// Reads the state of the last finished epoch.
    pub fn read_state(&self) -> Result<ResumeState> {
        let text = fs::read_to_string(&self.state).map_err(io(&self.state))?;
        serde_json::from_str(&text).map_err(|e| TrainError::Format {
            path: self.state.clone(),
            reason: format!("{e}; the run cannot be resumed, start a new one"),
        })
    }

    /// The set `state` names, checked to be there.
    pub fn set_of(&self, state: &ResumeState) -> Result<SetFiles> {
        let files = match &state.checkpoint {
            Some(name) => SetFiles::in_dir(&self.dir.join(name)),
            None => SetFiles {
                model: self.model.clone(),
                optimizer: self.dir.join("last-optimizer.bin"),
                lookahead: self.dir.join("last-lookahead.bpk"),
            },
        };
        if !files.model.is_file() || !files.optimizer.is_file() {
            return Err(TrainError::Format {
                path: self.state.clone(),
                reason: format!(
                    "it names a checkpoint ({}) whose files are not all there; the folder was \
                     changed by hand: restore it or start a new run",
                    files.model.parent().unwrap_or(&self.dir).display()
                ),
            });
        }
        Ok(files)
    }

    /// Removes what a killed save left behind: unfinished sets, temporary files, and sets
    /// that `state` does not name.
    pub fn clean(&self, state: &ResumeState) -> Result<()> {
        for entry in fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let entry = entry.map_err(io(&self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let unfinished =
                name.starts_with('.') && (name.ends_with(".partial") || name.contains(".tmp"));
            let stale_set = name.starts_with("epoch-") && Some(&name) != state.checkpoint.as_ref();
            if !(unfinished || stale_set) {
                continue;
            }
            if path.is_dir() {
                fs::remove_dir_all(&path).map_err(io(&path))?;
            } else {
                fs::remove_file(&path).map_err(io(&path))?;
            }
        }
        Ok(())
    }

    /// Saves the set of the epoch `state` has just finished: `model`, and what `save_rest`
    /// writes into the set's files (optimizer, lookahead); then names the set in
    /// `state.json`, refreshes `last.bpk` (and `best.bpk` when `is_best`) and removes the
    /// previous set.
    pub fn save<M: Module>(
        &self,
        model: &M,
        state: &mut ResumeState,
        is_best: bool,
        save_rest: impl FnOnce(&SetFiles) -> Result<()>,
    ) -> Result<()> {
        let name = format!("epoch-{:04}", state.epoch);
        let partial = self.dir.join(format!(".{name}.partial"));
        let finished = self.dir.join(&name);
        for leftover in [&partial, &finished] {
            if leftover.exists() {
                fs::remove_dir_all(leftover).map_err(io(leftover))?;
            }
        }
        fs::create_dir_all(&partial).map_err(io(&partial))?;
        let files = SetFiles::in_dir(&partial);
        save_module(model, &files.model)?;
        save_rest(&files)?;
        fs::rename(&partial, &finished).map_err(io(&finished))?;
        let previous = state.checkpoint.replace(name);
        write_atomic(
            &self.state,
            serde_json::to_string_pretty(state)
                .expect("the resume state serialises")
                .as_bytes(),
        )?;
        let saved = SetFiles::in_dir(&finished).model;
        let copy = |to: &Path| {
            write_via_temp(to, "", |tmp| {
                fs::copy(&saved, tmp).map(|_| ()).map_err(io(tmp))
            })
        };
        copy(&self.model)?;
        if is_best {
            copy(&self.best)?;
        }
        if let Some(previous) = previous.filter(|p| Some(p) != state.checkpoint.as_ref()) {
            let path = self.dir.join(previous);
            if path.is_dir() {
                fs::remove_dir_all(&path).map_err(io(&path))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Device;

    fn state(epoch: usize) -> ResumeState {
        ResumeState {
            epoch,
            ..ResumeState::fresh()
        }
    }

    fn write_rest(files: &SetFiles) -> Result<()> {
        fs::write(&files.optimizer, b"optimizer").map_err(io(&files.optimizer))
    }

    #[test]
    fn a_save_killed_before_its_state_resumes_from_the_previous_set() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(&dir.path().join("run"), "x = 1\n").unwrap();
        let checkpoints = Checkpoints::of(&run).unwrap();
        let model: Linear = LinearConfig::new(2, 2).init(&Device::flex());
        let mut s = state(1);
        checkpoints.save(&model, &mut s, true, write_rest).unwrap();
        assert_eq!(s.checkpoint.as_deref(), Some("epoch-0001"));
        assert!(checkpoints.model.is_file() && checkpoints.best.is_file());

        // Epoch 2 killed after its set was renamed into place but before state.json: the set
        // on disk is unnamed, and the state still names epoch 1's whole set.
        let mut s2 = checkpoints.read_state().unwrap();
        s2.epoch = 2;
        let orphan = dir.path().join("run/checkpoints/epoch-0002");
        fs::create_dir_all(&orphan).unwrap();
        fs::write(orphan.join("model.bpk"), b"half").unwrap();
        let partial = dir.path().join("run/checkpoints/.epoch-0003.partial");
        fs::create_dir_all(&partial).unwrap();
        fs::write(dir.path().join("run/checkpoints/.last.bpk.tmp"), b"x").unwrap();

        let resumed = checkpoints.read_state().unwrap();
        assert_eq!(resumed.epoch, 1);
        let files = checkpoints.set_of(&resumed).unwrap();
        assert!(
            files
                .model
                .starts_with(dir.path().join("run/checkpoints/epoch-0001"))
        );
        checkpoints.clean(&resumed).unwrap();
        assert!(!orphan.exists() && !partial.exists());
        assert!(!dir.path().join("run/checkpoints/.last.bpk.tmp").exists());
        assert!(files.model.is_file());

        // The replayed epoch 2 saves, and epoch 1's set goes.
        checkpoints
            .save(&model, &mut s2, false, write_rest)
            .unwrap();
        assert_eq!(
            checkpoints.read_state().unwrap().checkpoint.as_deref(),
            Some("epoch-0002")
        );
        assert!(!files.model.exists());
    }

    #[test]
    fn a_set_missing_its_files_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(&dir.path().join("run"), "x = 1\n").unwrap();
        let checkpoints = Checkpoints::of(&run).unwrap();
        let model: Linear = LinearConfig::new(2, 2).init(&Device::flex());
        let mut s = state(1);
        checkpoints.save(&model, &mut s, false, write_rest).unwrap();
        fs::remove_file(dir.path().join("run/checkpoints/epoch-0001/optimizer.bin")).unwrap();
        let err = checkpoints
            .set_of(&checkpoints.read_state().unwrap())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("epoch-0001") && err.contains("state.json"),
            "{err}"
        );
        // A run written before sets existed still finds its files beside state.json.
        let legacy = ResumeState::fresh();
        assert!(checkpoints.set_of(&legacy).is_err());
    }
}
