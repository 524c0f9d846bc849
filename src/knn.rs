//! The config of a `kiln-knn` run: metric, k, memory budget, cross-validation and the
//! course's smaller subsets.

use std::path::PathBuf;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use kiln_classic::knn::Metric;
use kiln_data::ImageSet;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// A `kiln-knn` run, as written in TOML.
pub struct KnnConfig {
    /// Dataset path (overridden by `--data`).
    pub data: Option<PathBuf>,
    /// Distance.
    pub metric: Metric,
    /// Neighbours that vote.
    pub k: usize,
    /// Largest distance block held at once, in MiB.
    pub memory_budget_mb: usize,
    /// Seed of the folds and subsets.
    pub seed: u64,
    /// Whether the `[subset]` sizes are used.
    pub subset_used: bool,
    /// Cross-validation.
    pub cv: CvConfig,
    /// Subset sizes.
    pub subset: SubsetConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// The `[cv]` table of `kiln-knn cv`.
pub struct CvConfig {
    /// Folds.
    pub folds: usize,
    /// The k to try.
    pub ks: Vec<usize>,
    /// The distances to try.
    pub metrics: Vec<Metric>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
/// The `[subset]` table: the course's smaller splits (`--subset`).
pub struct SubsetConfig {
    /// Training images kept (stratified).
    pub train: usize,
    /// Test images kept (stratified).
    pub test: usize,
}

impl Default for KnnConfig {
    fn default() -> Self {
        Self {
            data: None,
            metric: Metric::L1,
            k: 1,
            memory_budget_mb: 1024,
            seed: 0,
            subset_used: false,
            cv: CvConfig::default(),
            subset: SubsetConfig::default(),
        }
    }
}

impl Default for CvConfig {
    fn default() -> Self {
        Self {
            folds: 5,
            ks: vec![1, 3, 5, 8, 10, 12, 15, 20, 50, 100],
            metrics: vec![Metric::L1, Metric::L2],
        }
    }
}

impl Default for SubsetConfig {
    fn default() -> Self {
        Self {
            train: 5000,
            test: 500,
        }
    }
}

/// About `n` images of `set`, the same number of each class (stratified, seeded).
pub fn sample(set: &ImageSet, n: usize, seed: u64) -> Result<ImageSet> {
    let per_class = (n / set.classes.len()).max(1);
    let indices = kiln_data::split::per_class_subset(&set.labels, per_class, seed)?;
    Ok(set.subset(&indices))
}
