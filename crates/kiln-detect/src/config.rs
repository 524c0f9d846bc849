//! `kiln-detect train` configs (`configs/raccoon-*.toml`): the method, the data split, the
//! backbone, the method's own table, the `[train]` table of kiln-train and `[[augment]]` steps.

use std::path::PathBuf;

use kiln_data::augment::TransformConfig;
use kiln_train::trainer::TrainSettings;
use serde::{Deserialize, Serialize};

use crate::localize::{BoxLoss, WindowSearch};
use crate::{DetectError, Result};

/// Which detector a config trains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// One box per image regressed from pooled features.
    #[default]
    Localize,
    /// The localization network run over windows at several scales.
    Overfeat,
    /// Selective-search proposals, CNN features, per-class SVMs and box regression.
    Rcnn,
    /// Selective-search proposals classified and refined from one shared feature map.
    FastRcnn,
    /// Fast R-CNN with its own region proposal network.
    FasterRcnn,
    /// A single network regressing boxes and scoring classes on a grid in one pass.
    Yolo,
    /// Faster R-CNN with a mask branch: instance segmentation.
    MaskRcnn,
}

/// Where the data comes from and how it is split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// The dataset (a VOC folder or its `.tar.gz`); `--data` overrides it.
    pub path: Option<PathBuf>,
    /// Test share of a folder without split files (seeded shuffle).
    pub test_fraction: f32,
    /// Share of the training images held out to pick the best checkpoint (0: none).
    pub val_fraction: f32,
    /// Classes to keep, in this order (empty: every class found, sorted).
    pub classes: Vec<String>,
    /// Images are downscaled on decoding so their long side is at most this.
    pub max_side: usize,
    /// Training batches drawn from one aspect-ratio group at a time, so a batch pads little:
    /// torchvision's `--aspect-ratio-group-factor` (its references use 3; `2 · k + 2` groups,
    /// see [`kiln_data::order::aspect_ratio_groups`]). 0 draws batches from one shuffle of all
    /// images.
    pub aspect_ratio_groups: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            path: None,
            test_fraction: 0.2,
            val_fraction: 0.1,
            classes: Vec::new(),
            max_side: 800,
            aspect_ratio_groups: 0,
        }
    }
}

pub use kiln_nets::download::BackboneConfig;

/// Localization and OverFeat training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalizeConfig {
    /// Input side: images (localization) or windows (OverFeat) are warped to this square.
    pub input_size: usize,
    /// The box head's loss.
    pub box_loss: BoxLoss,
    /// Weight of the box loss against the class loss.
    pub box_weight: f32,
    /// An input whose largest object covers less than this share of it is background.
    pub min_object_fraction: f32,
    /// Images per evaluation step.
    pub eval_batch: usize,
    /// Channels a 1×1 convolution narrows the backbone's last map to.
    pub reduced: usize,
    /// Width of the fully connected layer over the window (a window-sized convolution).
    pub hidden: usize,
    /// Dropout before the class and box heads.
    pub dropout: f64,
}

impl Default for LocalizeConfig {
    fn default() -> Self {
        Self {
            input_size: 224,
            box_loss: BoxLoss::SmoothL1 { beta: 0.05 },
            box_weight: 5.0,
            min_object_fraction: 0.0,
            eval_batch: 16,
            reduced: 64,
            hidden: 256,
            dropout: 0.3,
        }
    }
}

/// A whole `kiln-detect train` config.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// The detector.
    pub method: Method,
    /// Seed of the split, initialisation and augmentation.
    pub seed: u64,
    /// Data and split.
    pub data: DataConfig,
    /// The backbone.
    pub backbone: BackboneConfig,
    /// Localization / OverFeat network and training.
    pub localize: LocalizeConfig,
    /// OverFeat's test-time window search.
    pub overfeat: WindowSearch,
    /// R-CNN's proposals, warps, SVMs, box regressors and test settings.
    #[serde(default)]
    pub rcnn: crate::rcnn::RcnnConfig,
    /// Fast R-CNN's proposals, box head, region sampling and test rule.
    #[serde(default)]
    pub fast_rcnn: crate::two_stage::FastRcnnConfig,
    /// Faster R-CNN's RPN, box head, region sampling and test rule.
    #[serde(default)]
    pub faster_rcnn: crate::two_stage::FasterRcnnConfig,
    /// YOLO's head, input size, loss and test rule.
    #[serde(default)]
    pub yolo: crate::yolo::YoloConfig,
    /// Mask R-CNN's mask branch (with `[faster_rcnn]` for the rest of the network).
    #[serde(default)]
    pub mask_rcnn: crate::two_stage::MaskHeadConfig,
    /// kiln-train's loop settings.
    pub train: TrainSettings,
    /// Training augmentation (box-aware).
    pub augment: Vec<TransformConfig>,
}

impl DetectConfig {
    /// The detector's name: the method, and for YOLO its head (`yolo-v1`, `yolo-anchor`).
    pub fn detector_name(&self) -> String {
        let method = serde_json::to_value(self.method)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        match self.method {
            Method::Yolo => match self.yolo.head {
                crate::yolo::YoloHead::V1 => "yolo-v1".into(),
                crate::yolo::YoloHead::Anchor => "yolo-anchor".into(),
            },
            _ => method,
        }
    }

    /// Sets the images per test step of every method that batches its test images.
    pub fn set_eval_batch(&mut self, batch: usize) {
        let batch = batch.max(1);
        self.localize.eval_batch = batch;
        self.fast_rcnn.eval_batch = batch;
        self.faster_rcnn.eval_batch = batch;
        self.yolo.eval_batch = batch;
    }

    /// Checks what can be checked before reading data.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, reason: String| Err(DetectError::invalid(what, reason));
        if !(0.0..1.0).contains(&self.data.val_fraction) {
            return bad(
                "[data] val_fraction",
                format!("{} is not in [0, 1)", self.data.val_fraction),
            );
        }
        if !(self.data.test_fraction > 0.0 && self.data.test_fraction < 1.0) {
            return bad(
                "[data] test_fraction",
                format!("{} is not in (0, 1)", self.data.test_fraction),
            );
        }
        if self.data.max_side < 32 {
            return bad("[data] max_side", "must be at least 32".into());
        }
        let l = &self.localize;
        if l.input_size < 32 || !l.input_size.is_multiple_of(32) {
            return bad(
                "[localize] input_size",
                format!(
                    "{} is not a multiple of 32 (the backbone's stride)",
                    l.input_size
                ),
            );
        }
        if !(l.box_weight >= 0.0
            && l.box_weight.is_finite()
            && (0.0..1.0).contains(&l.min_object_fraction))
        {
            return bad(
                "[localize]",
                "box_weight must be ≥ 0 and min_object_fraction in [0, 1)".into(),
            );
        }
        if let BoxLoss::SmoothL1 { beta } = l.box_loss
            && beta.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
        {
            return bad(
                "[localize] box_loss",
                format!("beta {beta} must be positive"),
            );
        }
        if l.eval_batch == 0 || l.reduced == 0 || l.hidden == 0 || !(0.0..1.0).contains(&l.dropout)
        {
            return bad(
                "[localize]",
                "eval_batch, reduced and hidden must be positive and dropout in [0, 1)".into(),
            );
        }
        if self.method == Method::Overfeat {
            self.overfeat.validate()?;
            if self.overfeat.window != l.input_size {
                return bad(
                    "[overfeat] window",
                    format!(
                        "{} differs from [localize] input_size {}: the windows must be what the network was trained on",
                        self.overfeat.window, l.input_size
                    ),
                );
            }
        }
        if self.method == Method::Rcnn {
            self.rcnn.validate()?;
        }
        if self.method == Method::FastRcnn {
            self.fast_rcnn.validate()?;
        }
        if matches!(self.method, Method::FasterRcnn | Method::MaskRcnn) {
            self.faster_rcnn.validate()?;
        }
        if self.method == Method::MaskRcnn {
            self.mask_rcnn.validate()?;
        }
        if self.method == Method::Yolo {
            self.yolo.validate()?;
        }
        self.train.validate()?;
        TransformConfig::validate_steps(&self.augment)?;
        Ok(())
    }
}
