//! `kiln-cnn ensemble`: the test accuracy of trained runs, one by one and with their class
//! probabilities averaged.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use burn::tensor::Device;
use clap::ValueEnum;

use kiln_data::{ClassificationBatcher, Normalization};
use kiln_train::classify::ensemble::{self, Ensemble};
use kiln_train::{RunDir, load_module};

use super::{CnnRunConfig, geometry_of};
use crate::cli;

/// Which checkpoint of each run an ensemble averages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Checkpoint {
    /// The epoch of highest validation accuracy (`best.bpk`).
    Best,
    /// The final weights (`last.bpk`).
    Last,
}

impl Checkpoint {
    /// The checkpoint's file name in a run's `checkpoints/`.
    pub fn file_name(self) -> &'static str {
        match self {
            Checkpoint::Best => "best.bpk",
            Checkpoint::Last => "last.bpk",
        }
    }
}

/// One member's test accuracy.
#[derive(Clone, Debug)]
pub struct MemberScore {
    /// The member's run directory.
    pub run: PathBuf,
    /// Its test accuracy alone.
    pub accuracy: f64,
}

/// The members' test accuracies and the ensemble's.
#[derive(Clone, Debug)]
pub struct EnsembleScores {
    /// Each member alone, in the order given.
    pub members: Vec<MemberScore>,
    /// The averaged class probabilities' accuracy.
    pub accuracy: f64,
}

/// Scores `checkpoint` of each `kiln-cnn` run in `runs` (with its own normalisation and
/// test-time augmentation) on the test split of `data` (default: the first run's data), and the
/// average of their class probabilities.
pub fn test_ensemble(
    runs: &[PathBuf],
    data: Option<&Path>,
    checkpoint: Checkpoint,
    device: &Device,
) -> Result<EnsembleScores> {
    let mut members = Vec::new();
    for dir in runs {
        let run = RunDir::open(dir)?;
        let config: CnnRunConfig = cli::load_config(Some(&run.file("config.toml")))?;
        members.push((run, config));
    }
    let Some((_, first)) = members.first() else {
        bail!("an ensemble needs at least one run directory");
    };
    let (path, images) = cli::open_data(data, first.data.as_deref(), None)?;
    let test = cli::require_test(&images, &path)?;
    let geometry = geometry_of(&images.train);
    let mut combined = Ensemble::default();
    let mut scores = Vec::new();
    for (run, config) in &members {
        let file = run.path().join("checkpoints").join(checkpoint.file_name());
        if !file.exists() {
            bail!(
                "{} does not exist; train the run first or pick --checkpoint last",
                file.display()
            );
        }
        let normalization = Normalization::load(&run.file("normalization.json"))?;
        // Whitening filters come from the checkpoint, so none are fitted here.
        let net = load_module(config.model.build(geometry, None, device)?, &file)?;
        let batcher = ClassificationBatcher::new(normalization);
        let p = ensemble::probabilities(&net, &test, &batcher, config.train.tta, device)?;
        scores.push(MemberScore {
            run: run.path().to_path_buf(),
            accuracy: ensemble::accuracy(&p, &test.labels, geometry.classes),
        });
        combined.add(&p)?;
    }
    Ok(EnsembleScores {
        members: scores,
        accuracy: combined.accuracy(&test.labels, geometry.classes),
    })
}

/// Writes an ensemble's scores as a run directory at `out` (default `runs/kiln-cnn-ensemble-…`):
/// the members and `checkpoint` as its config, each member's and the ensemble's test accuracy
/// in `metrics.jsonl`. Returns the directory.
pub fn write_ensemble_run(
    scores: &EnsembleScores,
    runs: &[PathBuf],
    checkpoint: Checkpoint,
    out: Option<&Path>,
) -> Result<RunDir> {
    let run = cli::create_run(
        out,
        "kiln-cnn-ensemble",
        &serde_json::json!({"runs": runs, "checkpoint": checkpoint.file_name()}),
    )?;
    let members: Vec<_> = scores
        .members
        .iter()
        .map(|m| serde_json::json!({"run": m.run, "test_accuracy": m.accuracy}))
        .collect();
    run.metrics().append(
        &serde_json::json!({"members": members, "ensemble_test_accuracy": scores.accuracy}),
    )?;
    Ok(run)
}
