//! The `[rcnn]` table of a `kiln-detect train` config: proposals, warps, the SVMs' hard-negative
//! mining, the ridge box regressor, test-time NMS and where the caches live.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::proposals::SelectiveSearchConfig;
use crate::{DetectError, Result};

/// How proposals are warped to the backbone's input.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarpConfig {
    /// Side of the square every proposal is warped to (a multiple of 32, the backbone's stride).
    pub size: usize,
    /// Pixels of context around the proposal at the warped size (R-CNN's `p = 16`): the box
    /// fills the central `size − 2·padding` square and its surroundings the border.
    pub padding: usize,
}

impl Default for WarpConfig {
    fn default() -> Self {
        Self {
            size: 224,
            padding: 16,
        }
    }
}

/// The per-class linear SVMs and their hard-negative mining.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SvmConfig {
    /// The hinge loss's weight `C` (liblinear's, as R-CNN used it): the objective is
    /// `½‖w‖² + C Σ wᵢ max(0, 1 − yᵢ f(xᵢ))`.
    pub c: f64,
    /// Values of `C` to choose from by cross-validation on the training images (empty: `c`).
    pub c_grid: Vec<f64>,
    /// Positives' loss weight relative to negatives' (R-CNN: 2).
    pub positive_weight: f64,
    /// Value of the constant feature that carries the bias (R-CNN's `bias_mult`, 10): a larger
    /// value regularises the bias less.
    pub bias_feature: f64,
    /// A proposal is a negative of a class when its IoU with every ground-truth box of that
    /// class is below this (R-CNN: 0.3).
    pub negative_iou: f32,
    /// Negative thresholds to choose from by cross-validation (empty: `negative_iou`).
    pub negative_iou_grid: Vec<f32>,
    /// Folds of the cross-validation over the training images that picks `C` and the negative
    /// threshold from their grids by pooled VOC AP50 (used only when a grid offers a choice).
    pub folds: usize,
    /// Negatives drawn at random (seeded) to start the mining.
    pub initial_negatives: usize,
    /// Rounds of mining after the first training: each adds every negative scoring above
    /// `hard_margin` and retrains.
    pub mining_rounds: usize,
    /// Negatives scoring above this are margin violators (−1: inside the margin).
    pub hard_margin: f64,
    /// Passes of dual coordinate descent at most, per training.
    pub max_epochs: usize,
    /// Dual coordinate descent stops when the largest projected gradient is below this.
    pub tolerance: f64,
}

impl Default for SvmConfig {
    fn default() -> Self {
        Self {
            c: 1e-3,
            c_grid: Vec::new(),
            positive_weight: 2.0,
            bias_feature: 10.0,
            negative_iou: 0.3,
            negative_iou_grid: Vec::new(),
            folds: 4,
            initial_negatives: 5000,
            mining_rounds: 3,
            hard_margin: -1.0,
            max_epochs: 500,
            tolerance: 1e-3,
        }
    }
}

/// The class-specific ridge box regressors.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegressionConfig {
    /// Proposals whose IoU with a ground-truth box of the class exceeds this train the
    /// regressor (R-CNN: 0.6).
    pub min_iou: f32,
    /// Ridge penalty λ on the weights (R-CNN: 1000); the bias is not penalised.
    pub lambda: f64,
}

impl Default for RegressionConfig {
    fn default() -> Self {
        Self {
            min_iou: 0.6,
            lambda: 1000.0,
        }
    }
}

/// R-CNN's settings (`[rcnn]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RcnnConfig {
    /// Selective search (`[rcnn.proposals]`; default: the paper's fast mode).
    pub proposals: SelectiveSearchConfig,
    /// Proposals per training (and validation) image, best first.
    pub train_proposals: usize,
    /// Proposals per test image, best first.
    pub test_proposals: usize,
    /// Warping (`[rcnn.warp]`).
    pub warp: WarpConfig,
    /// Features: the backbone's last map averaged over the whole warp and, above 1, over each
    /// cell of a `grid`×`grid` layout too (R-CNN's `pool5` keeps the layout; a global average
    /// alone scores a part of an object much like the whole). At most the map's side
    /// (`warp.size / 32`).
    pub grid: usize,
    /// Warped proposals per backbone pass.
    pub batch: usize,
    /// Features are L2-normalised, then multiplied by this (R-CNN's "feature norm" of 20).
    pub feature_norm: f64,
    /// The SVMs (`[rcnn.svm]`).
    pub svm: SvmConfig,
    /// The box regressors (`[rcnn.regression]`).
    pub regression: RegressionConfig,
    /// Per-class NMS IoU threshold at test time (R-CNN: 0.3).
    pub nms_iou: f32,
    /// Detections kept per image, best first.
    pub max_detections: usize,
    /// Threads for selective search (0: one per core).
    pub threads: usize,
    /// Where the proposal and feature caches go (default: `$KILN_DATA/rcnn`).
    pub cache_dir: Option<PathBuf>,
}

impl Default for RcnnConfig {
    fn default() -> Self {
        Self {
            proposals: SelectiveSearchConfig::default(),
            train_proposals: 500,
            test_proposals: 500,
            warp: WarpConfig::default(),
            grid: 1,
            batch: 32,
            feature_norm: 20.0,
            svm: SvmConfig::default(),
            regression: RegressionConfig::default(),
            nms_iou: 0.3,
            max_detections: 100,
            threads: 0,
            cache_dir: None,
        }
    }
}

impl RcnnConfig {
    /// Checks every setting, naming the first one out of range.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, reason: String| {
            Err(DetectError::invalid(format!("[rcnn] {what}"), reason))
        };
        self.proposals
            .validate()
            .map_err(|e| DetectError::invalid("[rcnn.proposals]", e.to_string()))?;
        if self.train_proposals == 0 || self.test_proposals == 0 {
            return bad(
                "train_proposals / test_proposals",
                "must be positive".into(),
            );
        }
        let w = &self.warp;
        if w.size < 32 || !w.size.is_multiple_of(32) {
            return bad(
                "warp.size",
                format!(
                    "{} is not a positive multiple of 32 (the backbone's stride)",
                    w.size
                ),
            );
        }
        if 2 * w.padding >= w.size {
            return bad(
                "warp.padding",
                format!(
                    "{} leaves no room for the box in a {}-pixel warp",
                    w.padding, w.size
                ),
            );
        }
        if self.grid == 0 || self.grid > w.size / 32 {
            return bad(
                "grid",
                format!(
                    "{} is not in 1..={} (the side of the backbone's last map)",
                    self.grid,
                    w.size / 32
                ),
            );
        }
        if self.batch == 0 {
            return bad("batch", "must be positive".into());
        }
        if !(self.feature_norm.is_finite() && self.feature_norm > 0.0) {
            return bad(
                "feature_norm",
                format!("{} must be a positive number", self.feature_norm),
            );
        }
        let s = &self.svm;
        for (name, v) in [
            ("svm.c", s.c),
            ("svm.positive_weight", s.positive_weight),
            ("svm.tolerance", s.tolerance),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(name, format!("{v} must be a positive number"));
            }
        }
        if let Some(bad_c) = s.c_grid.iter().find(|c| !(c.is_finite() && **c > 0.0)) {
            return bad("svm.c_grid", format!("{bad_c} must be a positive number"));
        }
        if !(s.bias_feature.is_finite() && s.bias_feature >= 0.0) {
            return bad(
                "svm.bias_feature",
                format!("{} must be ≥ 0", s.bias_feature),
            );
        }
        if !(s.negative_iou > 0.0 && s.negative_iou <= 1.0) {
            return bad(
                "svm.negative_iou",
                format!("{} is not in (0, 1]", s.negative_iou),
            );
        }
        if let Some(t) = s
            .negative_iou_grid
            .iter()
            .find(|t| !(**t > 0.0 && **t <= 1.0))
        {
            return bad("svm.negative_iou_grid", format!("{t} is not in (0, 1]"));
        }
        if s.folds < 2 && (s.c_grid.len() > 1 || s.negative_iou_grid.len() > 1) {
            return bad(
                "svm.folds",
                format!(
                    "{} folds cannot cross-validate the grids: use 2 or more",
                    s.folds
                ),
            );
        }
        if s.initial_negatives == 0 || s.max_epochs == 0 {
            return bad(
                "svm.initial_negatives / svm.max_epochs",
                "must be positive".into(),
            );
        }
        if !s.hard_margin.is_finite() {
            return bad(
                "svm.hard_margin",
                format!("{} is not a number", s.hard_margin),
            );
        }
        let r = &self.regression;
        if !(r.min_iou > 0.0 && r.min_iou < 1.0) {
            return bad(
                "regression.min_iou",
                format!("{} is not in (0, 1)", r.min_iou),
            );
        }
        if !(r.lambda.is_finite() && r.lambda > 0.0) {
            return bad(
                "regression.lambda",
                format!("{} must be a positive number", r.lambda),
            );
        }
        if !(self.nms_iou > 0.0 && self.nms_iou <= 1.0) {
            return bad("nms_iou", format!("{} is not in (0, 1]", self.nms_iou));
        }
        if self.max_detections == 0 {
            return bad("max_detections", "must be positive".into());
        }
        Ok(())
    }

    /// The cache folder: `cache_dir`, else `$KILN_DATA/rcnn`.
    pub fn cache_root(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| kiln_data::download::cache_dir().join("rcnn"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DetectConfig, Method};

    #[test]
    fn the_shipped_config_parses_and_validates() {
        let text = include_str!("../../../../configs/raccoon-rcnn.toml");
        let config: DetectConfig = toml::from_str(text).unwrap();
        assert_eq!(config.method, Method::Rcnn);
        config.validate().unwrap();
        assert_eq!(
            config.rcnn.warp,
            WarpConfig {
                size: 224,
                padding: 16
            }
        );
        assert_eq!(config.rcnn.proposals, SelectiveSearchConfig::default());
    }

    /// A setting's name and a change that makes it invalid.
    type BadCase = (&'static str, fn(&mut RcnnConfig));

    #[test]
    fn bad_settings_are_errors_naming_the_setting() {
        let cases: Vec<BadCase> = vec![
            ("warp.size", |c| c.warp.size = 100),
            ("warp.padding", |c| c.warp.padding = 112),
            ("train_proposals", |c| c.test_proposals = 0),
            ("batch", |c| c.batch = 0),
            ("grid", |c| c.grid = 8),
            ("feature_norm", |c| c.feature_norm = f64::NAN),
            ("svm.c", |c| c.svm.c = -1.0),
            ("svm.c_grid", |c| c.svm.c_grid = vec![0.1, 0.0]),
            ("svm.negative_iou", |c| c.svm.negative_iou = 1.5),
            ("svm.negative_iou_grid", |c| {
                c.svm.negative_iou_grid = vec![0.3, 0.0]
            }),
            ("svm.folds", |c| {
                c.svm.c_grid = vec![0.1, 1.0];
                c.svm.folds = 1;
            }),
            ("svm.initial_negatives", |c| c.svm.initial_negatives = 0),
            ("regression.min_iou", |c| c.regression.min_iou = 1.0),
            ("regression.lambda", |c| c.regression.lambda = 0.0),
            ("nms_iou", |c| c.nms_iou = 0.0),
            ("max_detections", |c| c.max_detections = 0),
            ("[rcnn.proposals]", |c| c.proposals.ks.clear()),
        ];
        for (name, spoil) in cases {
            let mut config = RcnnConfig::default();
            spoil(&mut config);
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(name), "{name}: {err}");
        }
        // Only an R-CNN config is held to its [rcnn] table; unknown keys are refused.
        let mut other = DetectConfig::default();
        other.rcnn.batch = 0;
        other.validate().unwrap();
        other.method = Method::Rcnn;
        assert!(
            other
                .validate()
                .unwrap_err()
                .to_string()
                .contains("[rcnn] batch")
        );
        let typo = toml::from_str::<DetectConfig>("method = \"rcnn\"\n[rcnn]\ntest_proposal = 5\n");
        assert!(typo.unwrap_err().to_string().contains("test_proposal"));
    }
}
