//! Random hyperparameter search (Bergstra & Bengio): log-uniform ranges, a coarse stage over
//! wide ranges, then a fine stage narrowed around the best coarse results.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{Result, TrainError};

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
}
