//! Random hyperparameter search (Bergstra & Bengio): log-uniform ranges, a coarse stage over
//! wide ranges, then a fine stage narrowed around the best coarse results.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::plot::ScatterPlot;
use crate::{Result, RunDir, TrainError};

/// A range sampled uniformly in log space.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogRange {
    /// Smallest value (positive).
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

impl LogRange {
    /// A validated range.
    pub fn new(min: f64, max: f64) -> Result<Self> {
        if !(min > 0.0 && max >= min && max.is_finite()) {
            return Err(TrainError::Invalid(format!(
                "log range [{min}, {max}] must be positive and increasing"
            )));
        }
        Ok(Self { min, max })
    }

    /// One draw.
    pub fn sample(&self, rng: &mut impl Rng) -> f64 {
        let (lo, hi) = (self.min.ln(), self.max.ln());
        if hi > lo {
            rng.random_range(lo..hi).exp()
        } else {
            self.min
        }
    }

    /// A range `decades` wide (in log10) centred on the geometric mean of `values`, clipped
    /// to nothing: the fine stage may leave the coarse range.
    pub fn around(values: &[f64], decades: f64) -> Result<Self> {
        if values.is_empty() {
            return Err(TrainError::Invalid("no values to narrow around".into()));
        }
        let centre = values.iter().map(|v| v.log10()).sum::<f64>() / values.len() as f64;
        Self::new(
            10f64.powf(centre - decades / 2.0),
            10f64.powf(centre + decades / 2.0),
        )
    }
}

/// A seeded source of trial settings over named log ranges.
#[derive(Debug)]
pub struct RandomSearch {
    ranges: Vec<(String, LogRange)>,
    rng: ChaCha8Rng,
}

impl RandomSearch {
    /// A search over `ranges`, reproducible from `seed`.
    pub fn new(ranges: Vec<(String, LogRange)>, seed: u64) -> Self {
        Self {
            ranges,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The next trial's values, in the order of the ranges.
    pub fn next_trial(&mut self) -> Vec<(String, f64)> {
        self.ranges
            .iter()
            .map(|(name, r)| (name.clone(), r.sample(&mut self.rng)))
            .collect()
    }
}

/// The best `count` entries by `score` (highest first), ignoring NaN scores.
pub fn top_by<T: Clone>(items: &[T], count: usize, score: impl Fn(&T) -> f64) -> Vec<T> {
    let mut sorted: Vec<&T> = items.iter().filter(|t| !score(t).is_nan()).collect();
    sorted.sort_by(|a, b| score(b).total_cmp(&score(a)));
    sorted.into_iter().take(count).cloned().collect()
}

/// The `[search]` table of a training config: learning rate and weight decay drawn
/// log-uniformly, a coarse stage of short trials, then a fine stage around the best ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchSpec {
    /// Learning-rate range `[low, high]`.
    pub learning_rate: [f64; 2],
    /// Weight-decay range `[low, high]`.
    pub weight_decay: [f64; 2],
    /// Coarse trials.
    pub coarse_trials: usize,
    /// Epochs of a coarse trial.
    pub coarse_epochs: usize,
    /// Fine trials.
    pub fine_trials: usize,
    /// Epochs of a fine trial.
    pub fine_epochs: usize,
    /// Best coarse trials the fine ranges are centred on.
    pub keep: usize,
    /// Width of the fine ranges in decades.
    pub fine_width_decades: f64,
    /// Training images per trial (a stratified subset; 0 = all).
    pub train_images: usize,
}

impl Default for SearchSpec {
    fn default() -> Self {
        Self {
            learning_rate: [1e-3, 1.0],
            weight_decay: [1e-5, 1e-2],
            coarse_trials: 8,
            coarse_epochs: 1,
            fine_trials: 4,
            fine_epochs: 3,
            keep: 3,
            fine_width_decades: 0.6,
            train_images: 0,
        }
    }
}

/// One finished trial.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// `coarse` or `fine`.
    pub stage: String,
    /// Learning rate.
    pub learning_rate: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Epochs trained.
    pub epochs: usize,
    /// Final validation accuracy (0 for a failed trial).
    pub val_accuracy: f64,
}

/// Runs the coarse and fine stages of `spec`. `train(learning_rate, weight_decay, epochs,
/// trial_dir)` trains one trial and returns its validation accuracy; a failing trial scores 0
/// and the search goes on. Each trial is appended to `run`'s `metrics.jsonl`; the table is
/// printed with the best settings, and `trials.json` and `search.png` written at the end.
/// Returns the trials, best first.
pub fn lr_weight_decay_search(
    spec: &SearchSpec,
    seed: u64,
    run: &RunDir,
    mut train: impl FnMut(f64, f64, usize, &std::path::Path) -> Result<f64>,
) -> Result<Vec<Trial>> {
    let mut trials: Vec<Trial> = Vec::new();
    let mut stage = |name: &str,
                     lr: LogRange,
                     wd: LogRange,
                     count: usize,
                     epochs: usize,
                     seed: u64,
                     trials: &mut Vec<Trial>|
     -> Result<()> {
        let mut sampler = RandomSearch::new(vec![("lr".into(), lr), ("wd".into(), wd)], seed);
        for _ in 0..count {
            let values = sampler.next_trial();
            let (lr, wd) = (values[0].1, values[1].1);
            let dir = run.path().join(format!("{name}-{:02}", trials.len()));
            eprintln!(
                "{name} trial {}: lr {lr:.3e}, weight decay {wd:.3e}",
                trials.len()
            );
            let val_accuracy = train(lr, wd, epochs, &dir).unwrap_or_else(|e| {
                eprintln!("  trial failed: {e}");
                0.0
            });
            let trial = Trial {
                stage: name.to_string(),
                learning_rate: lr,
                weight_decay: wd,
                epochs,
                val_accuracy,
            };
            run.metrics().append(&trial)?;
            trials.push(trial);
        }
        Ok(())
    };
    stage(
        "coarse",
        LogRange::new(spec.learning_rate[0], spec.learning_rate[1])?,
        LogRange::new(spec.weight_decay[0], spec.weight_decay[1])?,
        spec.coarse_trials,
        spec.coarse_epochs,
        seed,
        &mut trials,
    )?;
    let best = top_by(&trials, spec.keep.max(1), |t| t.val_accuracy);
    let lrs: Vec<f64> = best.iter().map(|t| t.learning_rate).collect();
    let wds: Vec<f64> = best.iter().map(|t| t.weight_decay).collect();
    if !lrs.is_empty() {
        stage(
            "fine",
            LogRange::around(&lrs, spec.fine_width_decades)?,
            LogRange::around(&wds, spec.fine_width_decades)?,
            spec.fine_trials,
            spec.fine_epochs,
            seed.wrapping_add(1),
            &mut trials,
        )?;
    }
    let mut ranked = trials.clone();
    ranked.sort_by(|a, b| b.val_accuracy.total_cmp(&a.val_accuracy));
    println!("stage   epochs  learning rate  weight decay  validation");
    for t in &ranked {
        println!(
            "{:<6} {:>7}  {:>13.3e}  {:>12.3e}  {:>9.2} %",
            t.stage,
            t.epochs,
            t.learning_rate,
            t.weight_decay,
            100.0 * t.val_accuracy
        );
    }
    ScatterPlot {
        title: "validation accuracy".into(),
        x_label: "log10 learning rate".into(),
        y_label: "log10 weight decay".into(),
        points: trials
            .iter()
            .map(|t| {
                (
                    t.learning_rate.log10(),
                    t.weight_decay.log10(),
                    t.val_accuracy,
                )
            })
            .collect(),
    }
    .save_png(&run.file("search.png"))?;
    if let Some(top) = ranked.first() {
        println!(
            "best: learning_rate = {:.3e}, weight_decay = {:.3e} ({:.2} % after {} epochs); run directory {}",
            top.learning_rate,
            top.weight_decay,
            100.0 * top.val_accuracy,
            top.epochs,
            run.path().display()
        );
    }
    run.write(
        "trials.json",
        serde_json::to_string_pretty(&trials)
            .expect("trials serialise")
            .as_bytes(),
    )?;
    Ok(ranked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_stay_in_range_and_cover_decades() {
        let range = LogRange::new(1e-7, 1e-3).unwrap();
        let mut search = RandomSearch::new(vec![("lr".into(), range)], 1);
        let draws: Vec<f64> = (0..400).map(|_| search.next_trial()[0].1).collect();
        assert!(draws.iter().all(|&v| (1e-7..=1e-3).contains(&v)));
        for decade in [-7, -6, -5, -4] {
            let lo = 10f64.powi(decade);
            let n = draws.iter().filter(|&&v| v >= lo && v < lo * 10.0).count();
            assert!((60..140).contains(&n), "decade {decade}: {n}");
        }
        let again: Vec<f64> = {
            let mut s = RandomSearch::new(vec![("lr".into(), range)], 1);
            (0..400).map(|_| s.next_trial()[0].1).collect()
        };
        assert_eq!(draws, again);
        assert!(LogRange::new(0.0, 1.0).is_err());
    }

    #[test]
    fn narrowing_and_ranking() {
        let r = LogRange::around(&[1e-4, 1e-2], 1.0).unwrap();
        assert!(
            (r.min - 10f64.powf(-3.5)).abs() < 1e-12 && (r.max - 10f64.powf(-2.5)).abs() < 1e-12
        );
        let best = top_by(&[(1, 0.3), (2, f64::NAN), (3, 0.9), (4, 0.5)], 2, |t| t.1);
        assert_eq!(best.iter().map(|t| t.0).collect::<Vec<_>>(), vec![3, 4]);
    }

    #[test]
    fn coarse_then_fine_around_the_best() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(&dir.path().join("s"), "x = 1\n").unwrap();
        let spec = SearchSpec {
            coarse_trials: 12,
            fine_trials: 6,
            keep: 2,
            fine_width_decades: 0.2,
            ..Default::default()
        };
        // Accuracy peaks at lr 0.03, whatever the decay; one trial fails.
        let mut calls = 0;
        let ranked = lr_weight_decay_search(&spec, 3, &run, |lr, _, _, _| {
            calls += 1;
            if calls == 2 {
                return Err(TrainError::Invalid("diverged".into()));
            }
            Ok(1.0 - (lr.log10() - 0.03f64.log10()).abs() / 4.0)
        })
        .unwrap();
        assert_eq!(ranked.len(), 18);
        assert!(ranked.iter().any(|t| t.val_accuracy == 0.0));
        let best_coarse = ranked.iter().find(|t| t.stage == "coarse").unwrap();
        let fine: Vec<&Trial> = ranked.iter().filter(|t| t.stage == "fine").collect();
        assert!(fine.iter().all(|t| t.epochs == spec.fine_epochs));
        // Fine trials sit within 0.1 decade of the kept coarse trials' centre.
        let spread = fine
            .iter()
            .map(|t| t.learning_rate.log10())
            .fold(f64::NEG_INFINITY, f64::max)
            - fine
                .iter()
                .map(|t| t.learning_rate.log10())
                .fold(f64::INFINITY, f64::min);
        assert!(spread <= 0.2, "{spread}");
        assert!(ranked[0].val_accuracy >= best_coarse.val_accuracy);
        assert!(run.file("search.png").is_file() && run.file("trials.json").is_file());
    }
}
