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

/// A coarse-to-fine random search over two log-uniform hyperparameters.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchPlan {
    /// Names of the two hyperparameters, as keys of the trial records and axis labels
    /// (e.g. `learning_rate`, `weight_decay`).
    pub names: [&'static str; 2],
    /// Their coarse ranges `[low, high]`.
    pub ranges: [[f64; 2]; 2],
    /// What a trial's budget counts (`epochs`, `iterations`).
    pub budget_name: &'static str,
    /// Coarse trials and the budget of each.
    pub coarse: (usize, usize),
    /// Fine trials and the budget of each.
    pub fine: (usize, usize),
    /// Best coarse trials the fine ranges are centred on.
    pub keep: usize,
    /// Width of the fine ranges in decades.
    pub fine_width_decades: f64,
}

impl SearchSpec {
    /// The plan of this `[search]` table: learning rate and weight decay, budgets in epochs.
    pub fn plan(&self) -> SearchPlan {
        SearchPlan {
            names: ["learning_rate", "weight_decay"],
            ranges: [self.learning_rate, self.weight_decay],
            budget_name: "epochs",
            coarse: (self.coarse_trials, self.coarse_epochs),
            fine: (self.fine_trials, self.fine_epochs),
            keep: self.keep,
            fine_width_decades: self.fine_width_decades,
        }
    }
}

/// What one trial measured: its validation accuracy (what trials are ranked by) and any other
/// numbers worth recording (e.g. `train_accuracy`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrialScore {
    /// Validation accuracy.
    pub val_accuracy: f64,
    /// Further named numbers, recorded beside it.
    pub extra: Vec<(&'static str, f64)>,
}

impl From<f64> for TrialScore {
    fn from(val_accuracy: f64) -> Self {
        Self {
            val_accuracy,
            extra: Vec::new(),
        }
    }
}

/// One finished trial.
#[derive(Clone, Debug, PartialEq)]
pub struct Trial {
    /// `coarse` or `fine`.
    pub stage: &'static str,
    /// The two hyperparameters, in the plan's order.
    pub values: [f64; 2],
    /// Its budget (epochs or iterations).
    pub budget: usize,
    /// What it measured (validation accuracy 0 for a failed trial).
    pub score: TrialScore,
}

impl Trial {
    /// The trial as a JSON object keyed by the plan's names.
    pub fn to_json(&self, plan: &SearchPlan) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        object.insert("stage".into(), self.stage.into());
        object.insert(plan.names[0].into(), self.values[0].into());
        object.insert(plan.names[1].into(), self.values[1].into());
        object.insert(plan.budget_name.into(), self.budget.into());
        object.insert("val_accuracy".into(), self.score.val_accuracy.into());
        for (name, value) in &self.score.extra {
            object.insert((*name).into(), (*value).into());
        }
        serde_json::Value::Object(object)
    }
}

/// Runs the coarse and fine stages of `plan`. `train(values, budget, trial_dir)` trains one
/// trial; a failing trial scores 0 and the search goes on. Each trial is appended to `run`'s
/// `metrics.jsonl`; the table is printed with the best settings, and `trials.json` and
/// `search.png` written at the end. Returns the trials, best first.
pub fn coarse_to_fine_search<S: Into<TrialScore>>(
    plan: &SearchPlan,
    seed: u64,
    run: &RunDir,
    mut train: impl FnMut([f64; 2], usize, &std::path::Path) -> Result<S>,
) -> Result<Vec<Trial>> {
    let mut trials: Vec<Trial> = Vec::new();
    let mut stage = |name: &'static str,
                     ranges: [LogRange; 2],
                     (count, budget): (usize, usize),
                     seed: u64,
                     trials: &mut Vec<Trial>|
     -> Result<()> {
        let named = plan
            .names
            .iter()
            .map(|n| n.to_string())
            .zip(ranges)
            .collect();
        let mut sampler = RandomSearch::new(named, seed);
        for _ in 0..count {
            let drawn = sampler.next_trial();
            let values = [drawn[0].1, drawn[1].1];
            let dir = run.path().join(format!("{name}-{:02}", trials.len()));
            eprintln!(
                "{name} trial {}: {} {:.3e}, {} {:.3e}",
                trials.len(),
                plan.names[0],
                values[0],
                plan.names[1],
                values[1]
            );
            let score = train(values, budget, &dir)
                .map(Into::into)
                .unwrap_or_else(|e| {
                    eprintln!("  trial failed: {e}");
                    TrialScore::from(0.0)
                });
            let trial = Trial {
                stage: name,
                values,
                budget,
                score,
            };
            run.metrics().append(&trial.to_json(plan))?;
            trials.push(trial);
        }
        Ok(())
    };
    let range = |r: [f64; 2]| LogRange::new(r[0], r[1]);
    stage(
        "coarse",
        [range(plan.ranges[0])?, range(plan.ranges[1])?],
        plan.coarse,
        seed,
        &mut trials,
    )?;
    let best = top_by(&trials, plan.keep.max(1), |t| t.score.val_accuracy);
    if !best.is_empty() {
        let around = |i: usize| {
            let values: Vec<f64> = best.iter().map(|t| t.values[i]).collect();
            LogRange::around(&values, plan.fine_width_decades)
        };
        stage(
            "fine",
            [around(0)?, around(1)?],
            plan.fine,
            seed.wrapping_add(1),
            &mut trials,
        )?;
    }
    let mut ranked = trials.clone();
    ranked.sort_by(|a, b| b.score.val_accuracy.total_cmp(&a.score.val_accuracy));
    print_table(plan, &ranked);
    ScatterPlot {
        title: "validation accuracy".into(),
        x_label: format!("log10 {}", plan.names[0]),
        y_label: format!("log10 {}", plan.names[1]),
        points: trials
            .iter()
            .map(|t| {
                (
                    t.values[0].log10(),
                    t.values[1].log10(),
                    t.score.val_accuracy,
                )
            })
            .collect(),
    }
    .save_png(&run.file("search.png"))?;
    if let Some(top) = ranked.first() {
        println!(
            "best: {} = {:.3e}, {} = {:.3e} ({:.2} % after {} {}); run directory {}",
            plan.names[0],
            top.values[0],
            plan.names[1],
            top.values[1],
            100.0 * top.score.val_accuracy,
            top.budget,
            plan.budget_name,
            run.path().display()
        );
    }
    let records: Vec<serde_json::Value> = trials.iter().map(|t| t.to_json(plan)).collect();
    run.write(
        "trials.json",
        serde_json::to_string_pretty(&records)
            .expect("trials serialise")
            .as_bytes(),
    )?;
    Ok(ranked)
}

fn print_table(plan: &SearchPlan, ranked: &[Trial]) {
    let extras: Vec<&str> = ranked
        .first()
        .map(|t| t.score.extra.iter().map(|(n, _)| *n).collect())
        .unwrap_or_default();
    let mut header = format!(
        "stage  {:>10}  {:>14}  {:>14}",
        plan.budget_name, plan.names[0], plan.names[1]
    );
    for name in extras.iter().chain(&["val_accuracy"]) {
        header += &format!("  {name:>14}");
    }
    println!("{header}");
    for t in ranked {
        let mut row = format!(
            "{:<6} {:>10}  {:>14.3e}  {:>14.3e}",
            t.stage, t.budget, t.values[0], t.values[1]
        );
        for (_, value) in &t.score.extra {
            row += &format!("  {:>12.2} %", 100.0 * value);
        }
        row += &format!("  {:>12.2} %", 100.0 * t.score.val_accuracy);
        println!("{row}");
    }
}

/// [`coarse_to_fine_search`] of learning rate and weight decay as `spec` says.
/// `train(learning_rate, weight_decay, epochs, trial_dir)` trains one trial and returns its
/// validation accuracy.
pub fn lr_weight_decay_search(
    spec: &SearchSpec,
    seed: u64,
    run: &RunDir,
    mut train: impl FnMut(f64, f64, usize, &std::path::Path) -> Result<f64>,
) -> Result<Vec<Trial>> {
    coarse_to_fine_search(&spec.plan(), seed, run, |[lr, wd], epochs, dir| {
        train(lr, wd, epochs, dir)
    })
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
        assert!(ranked.iter().any(|t| t.score.val_accuracy == 0.0));
        let best_coarse = ranked.iter().find(|t| t.stage == "coarse").unwrap();
        let fine: Vec<&Trial> = ranked.iter().filter(|t| t.stage == "fine").collect();
        assert!(fine.iter().all(|t| t.budget == spec.fine_epochs));
        // Fine trials sit within 0.1 decade of the kept coarse trials' centre.
        let spread = fine
            .iter()
            .map(|t| t.values[0].log10())
            .fold(f64::NEG_INFINITY, f64::max)
            - fine
                .iter()
                .map(|t| t.values[0].log10())
                .fold(f64::INFINITY, f64::min);
        assert!(spread <= 0.2, "{spread}");
        assert!(ranked[0].score.val_accuracy >= best_coarse.score.val_accuracy);
        assert!(run.file("search.png").is_file() && run.file("trials.json").is_file());
        // Records use the plan's names.
        let records = crate::read_metrics(&run.file("metrics.jsonl")).unwrap();
        assert_eq!(records.len(), 18);
        for key in [
            "stage",
            "learning_rate",
            "weight_decay",
            "epochs",
            "val_accuracy",
        ] {
            assert!(records[0].get(key).is_some(), "{key}");
        }
    }
}
