//! Ensembles of trained classifiers: average their class probabilities on a test set.

use burn::data::dataloader::DataLoaderBuilder;
use burn::tensor::Device;
use burn::tensor::activation::softmax;
use kiln_data::{AugmentedImages, ClassificationBatcher, ImageSet};
use kiln_nets::ImageClassifier;

use super::task::{Tta, tta_scores};
use crate::{Result, TrainError};

/// Class probabilities `[images × classes]`, row-major, of `model` (switched to evaluation
/// mode) on `images`, with test-time augmentation `tta`.
pub fn probabilities<M: ImageClassifier>(
    model: &M,
    images: &ImageSet,
    batcher: &ClassificationBatcher,
    tta: Tta,
    device: &Device,
) -> Result<Vec<f32>> {
    let model = model.valid();
    let loader = DataLoaderBuilder::new(batcher.clone())
        .batch_size(500)
        .set_device(device.clone())
        .build(AugmentedImages::plain(images));
    let mut out = Vec::with_capacity(images.len() * images.classes.len());
    for batch in loader.iter() {
        let batch = batch.map_err(|e| TrainError::Invalid(format!("reading a batch: {e}")))?;
        let p = softmax(tta_scores(&model, batch.images, tta), 1);
        out.extend(
            p.into_data()
                .try_to_vec_as::<f32>()
                .map_err(|e| TrainError::Invalid(format!("reading probabilities: {e:?}")))?,
        );
    }
    Ok(out)
}

/// Fraction of rows of `probabilities` (`classes` wide) whose largest entry is the label.
pub fn accuracy(probabilities: &[f32], labels: &[usize], classes: usize) -> f64 {
    let hits = probabilities
        .chunks_exact(classes)
        .zip(labels)
        .filter(|(p, l)| {
            let best = p
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i);
            best == **l
        })
        .count();
    hits as f64 / labels.len().max(1) as f64
}

/// Accumulates members' probabilities; the ensemble predicts the class of highest mean.
#[derive(Clone, Debug, Default)]
pub struct Ensemble {
    sum: Vec<f32>,
    members: usize,
}

impl Ensemble {
    /// Adds one member's [`probabilities`].
    pub fn add(&mut self, probabilities: &[f32]) -> Result<()> {
        if self.members > 0 && probabilities.len() != self.sum.len() {
            return Err(TrainError::Invalid(format!(
                "an ensemble member gave {} probabilities where the others gave {}",
                probabilities.len(),
                self.sum.len()
            )));
        }
        if self.members == 0 {
            self.sum = vec![0.0; probabilities.len()];
        }
        for (s, p) in self.sum.iter_mut().zip(probabilities) {
            *s += p;
        }
        self.members += 1;
        Ok(())
    }

    /// Members added so far.
    pub fn members(&self) -> usize {
        self.members
    }

    /// The ensemble's accuracy on `labels`.
    pub fn accuracy(&self, labels: &[usize], classes: usize) -> f64 {
        accuracy(&self.sum, labels, classes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averaging_can_fix_what_members_get_wrong() {
        let labels = [0, 1];
        // Member a: confident and wrong on image 1; member b: right on both, less sure.
        let a = [0.9, 0.1, 0.6, 0.4];
        let b = [0.6, 0.4, 0.1, 0.9];
        assert_eq!(accuracy(&a, &labels, 2), 0.5);
        assert_eq!(accuracy(&b, &labels, 2), 1.0);
        let mut ensemble = Ensemble::default();
        ensemble.add(&a).unwrap();
        ensemble.add(&b).unwrap();
        assert_eq!(ensemble.members(), 2);
        assert_eq!(ensemble.accuracy(&labels, 2), 1.0);
        assert!(ensemble.add(&[0.5, 0.5]).is_err());
    }
}
