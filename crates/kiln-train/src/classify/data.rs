//! The data of a classification run: validation held out (seeded), an optional per-class
//! subset, normalisation fitted on the training split.

use std::sync::Arc;

use kiln_data::augment::{Pipeline, TransformConfig};
use kiln_data::{
    AugmentedImages, ClassificationBatcher, ImageSet, Normalization, NormalizationKind, Splits,
};

use crate::{Result, TrainError};

/// How a labelled image set is split for training.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitSpec {
    /// Training images held out for validation. 0 trains on every training image and
    /// monitors each epoch on the test set (airbench's and torchvision's references'
    /// practice): only for fixed schedules, and the result to report is the last epoch's.
    pub val_images: usize,
    /// Training images kept per class after the validation split (a seeded stratified
    /// subset; 0 keeps all).
    pub train_per_class: usize,
    /// Input normalisation, fitted on the training split.
    pub normalization: NormalizationKind,
    /// Seed of the split and the subset.
    pub seed: u64,
}

/// Splits, the training split's normalisation, and whether validation is the test set.
pub struct PreparedData {
    /// Training, validation and test images.
    pub splits: Splits,
    /// Whether the validation split is the test set (`val_images = 0`).
    pub val_is_test: bool,
    /// Normalisation fitted on the training split.
    pub normalization: Normalization,
}

impl PreparedData {
    /// Splits `data` as `spec` says and fits the normalisation. `plateau` says whether the
    /// run's schedule watches validation, which must then not be the test set.
    pub fn new(data: kiln_data::TrainTest, spec: &SplitSpec, plateau: bool) -> Result<Self> {
        let val_is_test = spec.val_images == 0;
        if val_is_test && plateau {
            return Err(TrainError::Invalid(
                "val_images = 0 monitors on the test set, which must not steer the plateau schedule; hold out validation images (e.g. val_images = 1000) or use a fixed schedule".into(),
            ));
        }
        let mut splits = Splits::new(data, spec.val_images, spec.seed)?;
        if val_is_test {
            splits.val = Some(splits.test.clone().ok_or_else(|| {
                TrainError::Invalid(
                    "val_images = 0 monitors on the test set, but the dataset has no test split; set val_images > 0".into(),
                )
            })?);
        }
        splits.train =
            kiln_data::split::subset_per_class(&splits.train, spec.train_per_class, spec.seed)?;
        let normalization = splits.fit_normalization(spec.normalization)?;
        Ok(Self {
            splits,
            val_is_test,
            normalization,
        })
    }

    /// The validation images.
    pub fn val(&self) -> Result<&ImageSet> {
        self.splits
            .val
            .as_ref()
            .ok_or_else(|| TrainError::Invalid("no validation split".into()))
    }

    /// About `count` training images (a stratified, seeded subset: folders are sorted by
    /// class), normalised, as NCHW values (for airbench's whitening).
    pub fn init_images(&self, count: usize, seed: u64) -> Result<Option<(Vec<f32>, [usize; 4])>> {
        if count == 0 {
            return Ok(None);
        }
        let t = &self.splits.train;
        let smallest = t.class_counts().into_iter().min().unwrap_or(0);
        let per_class = count.div_ceil(t.classes.len()).clamp(1, smallest.max(1));
        let indices = kiln_data::split::per_class_subset(&t.labels, per_class, seed)?;
        let subset = t.subset(&indices);
        let values = self.normalization.apply_set(&subset);
        Ok(Some((
            values,
            [subset.len(), t.channels, t.height, t.width],
        )))
    }

    /// Training items with `augment` applied (seeded).
    pub fn train_set(&self, augment: &[TransformConfig], seed: u64) -> Result<AugmentedImages> {
        let pipeline = Pipeline::for_class_labels(augment, seed)?;
        Ok(AugmentedImages::new(
            Arc::new(self.splits.train.clone()),
            Arc::new(pipeline),
        ))
    }

    /// The batcher with the training normalisation.
    pub fn batcher(&self) -> ClassificationBatcher {
        ClassificationBatcher::new(self.normalization.clone())
    }
}

/// The training split cut to `train_images` (stratified, seeded) for search trials; all of it
/// when `train_images` is 0 or at least its size.
pub fn subset_for_search(train: &ImageSet, train_images: usize, seed: u64) -> Result<ImageSet> {
    if train_images == 0 || train_images >= train.len() {
        return Ok(train.clone());
    }
    let per_class = (train_images / train.classes.len()).max(1);
    Ok(kiln_data::split::subset_per_class(train, per_class, seed)?)
}
