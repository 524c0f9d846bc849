//! `kiln-segment train` configs (`configs/camvid-fcn*.toml`): the data and its classes, the
//! backbone, the FCN head, where training starts from, class balancing, kiln-train's `[train]`
//! table and `[[augment]]` steps.

use std::path::PathBuf;

use kiln_data::augment::TransformConfig;
use kiln_nets::download::BackboneConfig;
use kiln_train::classify::Tta;
use kiln_train::trainer::TrainSettings;
use serde::{Deserialize, Serialize};

use crate::data::ClassList;
use crate::fcn::FcnConfig;
use crate::{Result, SegmentError};

/// Where the data is and how it is split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// A folder with `<split>/` and `<split>annot/` (or one level above it), or its `.tar.gz`;
    /// `--data` overrides it.
    pub path: Option<PathBuf>,
    /// The split trained on.
    pub train_split: String,
    /// The split scored after every epoch and reported (and, with `checkpoint = "best"`, the
    /// one that picks the checkpoint).
    pub val_split: String,
    /// The classes (id = position) and the ignored label value (default: CamVid's 11 and void).
    pub classes: ClassList,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            path: None,
            train_split: "train".into(),
            val_split: "val".into(),
            classes: ClassList::camvid(),
        }
    }
}

/// How classes are weighted in the loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    /// Every pixel counts the same.
    None,
    /// Median-frequency weights from the training labels (SegNet's CamVid setting).
    #[default]
    MedianFrequency,
}

/// Which of a run's checkpoints it reports, evaluates and predicts with, and hands to a run
/// that starts from it (`init`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Checkpoint {
    /// The weights of the final epoch. Nothing is chosen on the validation images, so their
    /// score estimates the score on unseen images (torchvision's references report this one).
    #[default]
    Last,
    /// The epoch with the highest validation mIoU: a choice made on the images it is then
    /// scored on, optimistic when no separate test split exists.
    Best,
}

/// A whole `kiln-segment train` config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SegmentConfig {
    /// Seed of the initialisation and augmentation.
    pub seed: u64,
    /// Data and classes.
    pub data: DataConfig,
    /// The pretrained backbone.
    pub backbone: BackboneConfig,
    /// The FCN head.
    pub fcn: FcnConfig,
    /// A trained FCN run directory this run starts from (FCN-16s from a 32s, 8s from a 16s),
    /// with that run's `checkpoint`; `--init` overrides it. Unset: the backbone's weights and
    /// new heads.
    pub init: Option<PathBuf>,
    /// The checkpoint the run reports and hands on.
    pub checkpoint: Checkpoint,
    /// Class weights of the loss.
    pub balance: Balance,
    /// Images per evaluation step.
    pub eval_batch: usize,
    /// Validation images drawn in `predictions.png`.
    pub pictured: usize,
    /// kiln-train's loop settings.
    pub train: TrainSettings,
    /// Training augmentation (mask-aware).
    pub augment: Vec<TransformConfig>,
}

impl Default for SegmentConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            data: DataConfig::default(),
            backbone: BackboneConfig::default(),
            fcn: FcnConfig::default(),
            init: None,
            checkpoint: Checkpoint::default(),
            balance: Balance::default(),
            eval_batch: 4,
            pictured: 6,
            train: TrainSettings::default(),
            augment: Vec::new(),
        }
    }
}

impl SegmentConfig {
    /// Whether evaluation and prediction average each photo with its mirror image
    /// (`[train] tta = "mirror"`).
    pub fn mirror_tta(&self) -> bool {
        self.train.tta == Tta::Mirror
    }

    /// Checks what can be checked before reading data.
    pub fn validate(&self) -> Result<()> {
        self.fcn.validate()?;
        if self.eval_batch == 0 {
            return Err(SegmentError::invalid("eval_batch", "must be positive"));
        }
        let classes = &self.data.classes;
        if classes.is_empty() || classes.len() > usize::from(u8::MAX) {
            return Err(SegmentError::invalid(
                "[data.classes]",
                format!("{} classes: give between 1 and 255", classes.len()),
            ));
        }
        if usize::from(classes.ignore) < classes.len() {
            return Err(SegmentError::invalid(
                "[data.classes] ignore",
                format!(
                    "{} is a class id (there are {} classes); the ignored value must be {} or above",
                    classes.ignore,
                    classes.len(),
                    classes.len()
                ),
            ));
        }
        if self.data.train_split == self.data.val_split {
            return Err(SegmentError::invalid(
                "[data] val_split",
                format!(
                    "is the training split `{}`: validation must be other images",
                    self.data.train_split
                ),
            ));
        }
        if self.train.tta == Tta::MirrorTranslate {
            return Err(SegmentError::invalid(
                "[train] tta",
                "segmentation averages the image with its mirror image only: use \"mirror\" or \"none\"",
            ));
        }
        self.train
            .validate()
            .map_err(|e| SegmentError::invalid("[train]", e.to_string()))?;
        TransformConfig::validate_steps(&self.augment)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_named() {
        let ok = SegmentConfig::default();
        ok.validate().unwrap();
        let mut c = ok.clone();
        c.data.classes.ignore = 3;
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("[data.classes] ignore") && err.contains("11 or above"),
            "{err}"
        );
        let mut c = ok.clone();
        c.data.val_split = "train".into();
        assert!(c.validate().unwrap_err().to_string().contains("val_split"));
        let mut c = ok.clone();
        c.train.tta = Tta::MirrorTranslate;
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("[train] tta") && err.contains("mirror"),
            "{err}"
        );
        let mut c = ok;
        c.fcn.dropout = 1.5;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("[fcn] dropout")
        );
    }

    #[test]
    fn configs_round_trip_through_toml() {
        let text = r#"
            seed = 3
            [fcn]
            variant = "16s"
            [data.classes]
            ignore = 2
            [[data.classes.classes]]
            name = "ground"
            colour = [0, 255, 0]
            [[data.classes.classes]]
            name = "sky"
            colour = [0, 0, 255]
        "#;
        let config: SegmentConfig = toml::from_str(text).unwrap();
        config.validate().unwrap();
        assert_eq!(config.fcn.variant, crate::fcn::FcnVariant::Fcn16s);
        assert_eq!(config.data.classes.len(), 2);
        assert_eq!(
            config.checkpoint,
            Checkpoint::Last,
            "the default reports the last epoch"
        );
        let best: SegmentConfig = toml::from_str("checkpoint = \"best\"").unwrap();
        assert_eq!(best.checkpoint, Checkpoint::Best);
        let again: SegmentConfig = toml::from_str(&toml::to_string(&config).unwrap()).unwrap();
        assert_eq!(again, config);
    }
}
