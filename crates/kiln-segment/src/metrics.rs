//! Segmentation metrics from one confusion matrix (FCN's Table 1): pixel accuracy, mean class
//! accuracy, per-class and mean IoU, and frequency-weighted IoU. Ignored pixels count nowhere.

use kiln_data::augment::Mask;
use serde::Serialize;

/// Counts of (true class, predicted class) pixel pairs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfusionMatrix {
    classes: usize,
    /// Row-major `classes × classes`: row = true class, column = predicted class.
    counts: Vec<u64>,
}

/// The metrics of a confusion matrix.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SegmentationMetrics {
    /// Correct pixels / scored pixels.
    pub pixel_accuracy: f64,
    /// Mean over the classes present in the ground truth of their recall.
    pub mean_class_accuracy: f64,
    /// Mean IoU over the classes present in the ground truth or the predictions.
    pub mean_iou: f64,
    /// IoU of each class weighted by its share of the ground-truth pixels.
    pub frequency_weighted_iou: f64,
    /// IoU of each class (`None` when it is neither in the ground truth nor predicted).
    pub class_iou: Vec<Option<f64>>,
}

impl ConfusionMatrix {
    /// An empty matrix over `classes` classes.
    pub fn new(classes: usize) -> Self {
        Self {
            classes,
            counts: vec![0; classes * classes],
        }
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Pixels of true class `truth` predicted as `predicted`.
    pub fn count(&self, truth: usize, predicted: usize) -> u64 {
        self.counts[truth * self.classes + predicted]
    }

    /// Adds a label and a prediction of the same size; pixels whose label is not a class
    /// (ignored) are skipped.
    ///
    /// # Panics
    /// When the two differ in size or a prediction is not a class.
    pub fn add(&mut self, truth: &Mask, predicted: &[u8]) {
        assert_eq!(
            truth.data.len(),
            predicted.len(),
            "label and prediction sizes differ"
        );
        for (&t, &p) in truth.data.iter().zip(predicted) {
            let (t, p) = (usize::from(t), usize::from(p));
            if t < self.classes {
                assert!(
                    p < self.classes,
                    "prediction {p} is not one of {} classes",
                    self.classes
                );
                self.counts[t * self.classes + p] += 1;
            }
        }
    }

    /// Adds another matrix's counts.
    pub fn merge(&mut self, other: &ConfusionMatrix) {
        assert_eq!(self.classes, other.classes);
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    /// The metrics; all 0 for an empty matrix.
    pub fn metrics(&self) -> SegmentationMetrics {
        let k = self.classes;
        let row = |c: usize| (0..k).map(|p| self.count(c, p)).sum::<u64>();
        let col = |c: usize| (0..k).map(|t| self.count(t, c)).sum::<u64>();
        let total: u64 = self.counts.iter().sum();
        let correct: u64 = (0..k).map(|c| self.count(c, c)).sum();
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let mean = |v: &[f64]| {
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        let recalls: Vec<f64> = (0..k)
            .filter(|&c| row(c) > 0)
            .map(|c| ratio(self.count(c, c), row(c)))
            .collect();
        let class_iou: Vec<Option<f64>> = (0..k)
            .map(|c| {
                let union = row(c) + col(c) - self.count(c, c);
                (union > 0).then(|| ratio(self.count(c, c), union))
            })
            .collect();
        let ious: Vec<f64> = class_iou.iter().flatten().copied().collect();
        let fw = (0..k)
            .map(|c| ratio(row(c), total) * class_iou[c].unwrap_or(0.0))
            .sum();
        SegmentationMetrics {
            pixel_accuracy: ratio(correct, total),
            mean_class_accuracy: mean(&recalls),
            mean_iou: mean(&ious),
            frequency_weighted_iou: fw,
            class_iou,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_of_a_hand_counted_matrix() {
        let truth = Mask {
            width: 6,
            height: 1,
            data: vec![0, 0, 0, 1, 1, Mask::IGNORE],
        };
        // Pixels: (0→0) ×2, (0→1) ×1, (1→1) ×1, (1→2) ×1; the ignored one is skipped.
        let mut m = ConfusionMatrix::new(3);
        m.add(&truth, &[0, 0, 1, 1, 2, 0]);
        assert_eq!((m.count(0, 0), m.count(0, 1), m.count(1, 2)), (2, 1, 1));
        let s = m.metrics();
        assert!((s.pixel_accuracy - 3.0 / 5.0).abs() < 1e-12);
        // Recalls 2/3 and 1/2 (class 2 has no ground truth).
        assert!((s.mean_class_accuracy - (2.0 / 3.0 + 0.5) / 2.0).abs() < 1e-12);
        // IoU: class 0 = 2 / (3 + 2 − 2) = 2/3; class 1 = 1 / (2 + 2 − 1) = 1/3; class 2 = 0 / 1.
        let expected = [2.0 / 3.0, 1.0 / 3.0, 0.0];
        for (got, want) in s.class_iou.iter().zip(expected) {
            assert!((got.unwrap() - want).abs() < 1e-12);
        }
        assert!((s.mean_iou - 1.0 / 3.0).abs() < 1e-12);
        // Frequency-weighted: 3/5 · 2/3 + 2/5 · 1/3.
        assert!((s.frequency_weighted_iou - (0.4 + 2.0 / 15.0)).abs() < 1e-12);
        // Merging doubles every count and keeps the ratios.
        let mut twice = m.clone();
        twice.merge(&m);
        assert_eq!(twice.count(0, 0), 4);
        assert_eq!(twice.metrics(), s);
        assert_eq!(ConfusionMatrix::new(2).metrics().mean_iou, 0.0);
    }
}
