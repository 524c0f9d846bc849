//! The config of a `kiln-linear` run and its data as the linear classifiers take it:
//! normalised pixel rows with the bias column, as device tensors.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use kiln_classic::linear::{GradMode, LossKind, SgdSettings, with_bias_column};
use kiln_data::{ImageSet, Normalization, NormalizationKind, Splits};
use kiln_train::search::SearchPlan;

/// A `kiln-linear` run, as written in TOML.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinearConfig {
    /// Dataset path (overridden by `--data`).
    pub data: Option<PathBuf>,
    /// Training images held out for validation (must be positive).
    pub val_images: usize,
    /// Seed of the split, initialisation and minibatches.
    pub seed: u64,
    /// Input normalisation, fitted on the training split.
    pub normalization: NormalizationKind,
    /// Standard deviation of the initial weights.
    pub init_std: f64,
    /// Which loss trains (and which of `svm` / `softmax` applies).
    pub loss: LossKind,
    /// SGD settings of the SVM.
    pub svm: SgdSettings,
    /// SGD settings of softmax.
    pub softmax: SgdSettings,
    /// `kiln-linear search` ranges.
    pub search: SearchConfig,
}

/// The `[search]` table of `kiln-linear search`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    /// Coarse trials.
    pub coarse_trials: usize,
    /// SGD iterations of a coarse trial.
    pub coarse_iterations: usize,
    /// Fine trials.
    pub fine_trials: usize,
    /// SGD iterations of a fine trial.
    pub fine_iterations: usize,
    /// Width of the fine ranges in decades.
    pub fine_width_decades: f64,
    /// Learning-rate range.
    pub learning_rate: [f64; 2],
    /// Regularisation range.
    pub reg: [f64; 2],
}

fn course_sgd() -> SgdSettings {
    SgdSettings {
        learning_rate: 1e-7,
        reg: 2.5e4,
        iterations: 1500,
        batch_size: 200,
        grad: GradMode::Analytic,
        lr_decay: 1.0,
    }
}

impl Default for LinearConfig {
    fn default() -> Self {
        Self {
            data: None,
            val_images: 1000,
            seed: 0,
            normalization: NormalizationKind::MeanImage,
            init_std: 1e-4,
            loss: LossKind::Svm,
            svm: course_sgd(),
            softmax: course_sgd(),
            search: SearchConfig::default(),
        }
    }
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            coarse_trials: 24,
            coarse_iterations: 400,
            fine_trials: 16,
            fine_iterations: 1500,
            fine_width_decades: 1.0,
            learning_rate: [1e-8, 1e-5],
            reg: [1e2, 1e5],
        }
    }
}

impl LinearConfig {
    /// The SGD settings of the configured loss.
    pub fn settings(&self) -> &SgdSettings {
        match self.loss {
            LossKind::Svm => &self.svm,
            LossKind::Softmax => &self.softmax,
        }
    }

    /// The SGD settings of the configured loss, to override.
    pub fn settings_mut(&mut self) -> &mut SgdSettings {
        match self.loss {
            LossKind::Svm => &mut self.svm,
            LossKind::Softmax => &mut self.softmax,
        }
    }

    /// Checks the settings of the configured loss.
    pub fn validate(&self) -> Result<()> {
        let s = self.settings();
        let rates_ok = s.learning_rate > 0.0
            && s.learning_rate.is_finite()
            && s.reg >= 0.0
            && s.reg.is_finite();
        if !rates_ok
            || s.batch_size == 0
            || s.iterations == 0
            || !(s.lr_decay > 0.0 && s.lr_decay <= 1.0)
        {
            bail!(
                "learning_rate must be positive, reg non-negative, batch_size and iterations positive and lr_decay in (0, 1]"
            );
        }
        Ok(())
    }

    /// The coarse-to-fine search of learning rate and regularisation, budgets in iterations.
    pub fn search_plan(&self) -> SearchPlan {
        let s = &self.search;
        SearchPlan {
            names: ["learning_rate", "reg"],
            ranges: [s.learning_rate, s.reg],
            budget_name: "iterations",
            coarse: (s.coarse_trials, s.coarse_iterations),
            fine: (s.fine_trials, s.fine_iterations),
            keep: 3,
            fine_width_decades: s.fine_width_decades,
        }
    }
}

/// The best known settings per dataset (the searches in BENCHMARKS.md), used without --config.
const BEST_KNOWN: [(&str, &str); 2] = [
    (
        "fashion-mnist",
        include_str!("../configs/fashion-mnist-linear.toml"),
    ),
    ("cifar10", include_str!("../configs/cifar10-linear.toml")),
];

/// The best known settings for `dataset` (CIFAR-10's for any other dataset).
pub fn best_known(dataset: &str) -> Result<LinearConfig> {
    let text = BEST_KNOWN
        .iter()
        .find(|(name, _)| *name == dataset)
        .unwrap_or(&BEST_KNOWN[1])
        .1;
    Ok(toml::from_str(text)?)
}

/// One split as device tensors: features with the bias column, and labels.
pub struct Matrix {
    /// `[n, pixels + 1]` normalised rows with the bias column.
    pub x: Tensor<2>,
    /// Labels as a tensor.
    pub y: Tensor<1, Int>,
    /// Labels on the host.
    pub labels: Vec<usize>,
}

impl Matrix {
    fn of(set: &ImageSet, norm: &Normalization, device: &Device) -> Result<Self> {
        let values = norm.apply_set(set);
        if values.iter().any(|v| !v.is_finite()) {
            bail!("the data contain NaN or infinite values after normalisation");
        }
        let x = Tensor::<2>::from_data(
            TensorData::new(values, [set.len(), set.image_len()]),
            device,
        );
        let labels_i64: Vec<i64> = set.labels.iter().map(|&l| l as i64).collect();
        Ok(Self {
            x: with_bias_column(x),
            y: Tensor::from_data(TensorData::new(labels_i64, [set.len()]), device),
            labels: set.labels.clone(),
        })
    }
}

/// The three splits of a run as [`Matrix`]es, with what describes them.
pub struct LinearData {
    /// Training rows.
    pub train: Matrix,
    /// Validation rows.
    pub val: Matrix,
    /// Test rows.
    pub test: Matrix,
    /// The normalisation fitted on the training split.
    pub norm: Normalization,
    /// Channels, height and width of the images.
    pub geometry: [usize; 3],
    /// Class names.
    pub classes: Vec<String>,
}

impl LinearData {
    /// Holds out `config.val_images` (stratified, seeded), fits the normalisation on the rest
    /// and puts every split on `device`.
    pub fn prepare(
        data: kiln_data::TrainTest,
        test: &ImageSet,
        config: &LinearConfig,
        device: &Device,
    ) -> Result<Self> {
        let splits = Splits::new(data, config.val_images, config.seed)?;
        let val = splits
            .val
            .clone()
            .context("val_images must be positive: validation accuracy is reported")?;
        let norm = splits.fit_normalization(config.normalization)?;
        let t = &splits.train;
        eprintln!(
            "splits: {} train / {} validation (stratified, seed {}) / {} test; {:?} statistics from the training split",
            t.len(),
            val.len(),
            config.seed,
            test.len(),
            config.normalization
        );
        Ok(Self {
            train: Matrix::of(t, &norm, device)?,
            val: Matrix::of(&val, &norm, device)?,
            test: Matrix::of(test, &norm, device)?,
            geometry: [t.channels, t.height, t.width],
            classes: t.classes.clone(),
            norm,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_known_configs_parse_and_differ_per_dataset() {
        let cifar = best_known("cifar10").unwrap();
        let fashion = best_known("fashion-mnist").unwrap();
        assert_ne!(cifar.softmax, fashion.softmax);
        assert_eq!(best_known("my-photos").unwrap().softmax, cifar.softmax);
        cifar.validate().unwrap();
        assert_eq!(cifar.search_plan().names, ["learning_rate", "reg"]);
        let mut none = cifar.clone();
        none.settings_mut().iterations = 0;
        assert!(
            none.validate()
                .unwrap_err()
                .to_string()
                .contains("iterations positive")
        );
    }
}
