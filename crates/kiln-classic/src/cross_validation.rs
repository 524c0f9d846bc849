//! Choosing kNN's hyperparameters by k-fold cross-validation: for every fold, store its
//! training part, find the neighbours of its validation part once (up to the largest k), and
//! score every k and distance metric from those lists.

use std::time::Instant;

use burn::tensor::Device;

use crate::knn::{KnnClassifier, KnnOptions, Metric, accuracy};
use crate::{ClassicError, Result};

/// Rows of byte images with their labels.
#[derive(Clone, Copy, Debug)]
pub struct LabelledRows<'a> {
    /// Row-major pixels, `labels.len()` rows of `dims` bytes.
    pub pixels: &'a [u8],
    /// Bytes per row.
    pub dims: usize,
    /// Class of each row.
    pub labels: &'a [usize],
    /// Number of classes.
    pub classes: usize,
}

impl LabelledRows<'_> {
    fn gather(&self, indices: &[usize]) -> (Vec<u8>, Vec<usize>) {
        let mut pixels = Vec::with_capacity(indices.len() * self.dims);
        for &i in indices {
            pixels.extend_from_slice(&self.pixels[i * self.dims..(i + 1) * self.dims]);
        }
        (pixels, indices.iter().map(|&i| self.labels[i]).collect())
    }
}

/// One fold: indices of its training part and of its validation part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fold {
    /// Rows the classifier stores.
    pub train: Vec<usize>,
    /// Rows it is scored on.
    pub val: Vec<usize>,
}

/// Validation accuracies of every (metric, k) on every fold.
#[derive(Clone, Debug, PartialEq)]
pub struct CrossValidation {
    /// The metrics tried.
    pub metrics: Vec<Metric>,
    /// The k tried, rising.
    pub ks: Vec<usize>,
    /// `accuracy[metric][k][fold]`.
    pub accuracy: Vec<Vec<Vec<f64>>>,
}

impl CrossValidation {
    /// Mean and (population) standard deviation over folds of metric `mi`, k `ki`.
    pub fn mean_std(&self, mi: usize, ki: usize) -> (f64, f64) {
        let values = &self.accuracy[mi][ki];
        let n = values.len().max(1) as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt())
    }

    /// The metric and k of the highest mean accuracy, with that mean (the first on ties).
    pub fn best(&self) -> (Metric, usize, f64) {
        let mut best = (self.metrics[0], self.ks[0], f64::NEG_INFINITY);
        for (mi, &metric) in self.metrics.iter().enumerate() {
            for (ki, &k) in self.ks.iter().enumerate() {
                let (mean, _) = self.mean_std(mi, ki);
                if mean > best.2 {
                    best = (metric, k, mean);
                }
            }
        }
        best
    }
}

/// What [`cross_validate`] reports as it goes.
pub trait CvProgress {
    /// `queries` more validation rows have their neighbours.
    fn queries_done(&mut self, queries: usize);
    /// Fold `fold` with `metric` is finished after `seconds`; `scores` are its `(k, accuracy)`.
    fn fold_done(&mut self, fold: usize, metric: Metric, seconds: f64, scores: &[(usize, f64)]);
}

/// Checks a cross-validation plan before any work: metrics and folds given, every k positive
/// and no larger than the smallest training fold. Returns the k rising, without repeats.
pub fn check_plan(folds: &[Fold], ks: &[usize], metrics: &[Metric]) -> Result<Vec<usize>> {
    let mut ks = ks.to_vec();
    ks.sort_unstable();
    ks.dedup();
    let k_max = *ks
        .last()
        .ok_or_else(|| ClassicError::invalid("ks", "no k to try"))?;
    if metrics.is_empty() || folds.is_empty() {
        return Err(ClassicError::invalid(
            "cross-validation",
            "needs metrics and folds",
        ));
    }
    if ks[0] == 0 {
        return Err(ClassicError::invalid("ks", "k must be positive"));
    }
    let smallest = folds.iter().map(|f| f.train.len()).min().unwrap_or(0);
    if k_max > smallest {
        return Err(ClassicError::invalid(
            "ks",
            format!(
                "k = {k_max}, the largest k to try, exceeds the {smallest} images of a training \
                 fold; try smaller k (kiln-knn: [cv] ks) or more images"
            ),
        ));
    }
    Ok(ks)
}

/// Cross-validates k ∈ `ks` and `metrics` on `rows` over `folds` (see
/// `kiln_data::split::stratified_k_fold` for stratified folds).
pub fn cross_validate(
    rows: LabelledRows<'_>,
    folds: &[Fold],
    ks: &[usize],
    metrics: &[Metric],
    options: &KnnOptions,
    device: &Device,
    progress: &mut dyn CvProgress,
) -> Result<CrossValidation> {
    let ks = check_plan(folds, ks, metrics)?;
    let k_max = *ks.last().expect("check_plan keeps at least one k");
    let mut table = vec![vec![Vec::new(); ks.len()]; metrics.len()];
    for (fi, fold) in folds.iter().enumerate() {
        let (train_pixels, train_labels) = rows.gather(&fold.train);
        let (val_pixels, val_labels) = rows.gather(&fold.val);
        let knn = KnnClassifier::fit(train_pixels, rows.dims, train_labels, rows.classes, device)?;
        for (mi, &metric) in metrics.iter().enumerate() {
            knn.prepare(metric, options);
            let started = Instant::now();
            let neighbours = knn.neighbours(&val_pixels, k_max, metric, options, |n| {
                progress.queries_done(n)
            })?;
            let seconds = started.elapsed().as_secs_f64();
            let mut scores = Vec::with_capacity(ks.len());
            for (ki, &k) in ks.iter().enumerate() {
                let a = accuracy(&knn.vote_k(&neighbours, k), &val_labels);
                table[mi][ki].push(a);
                scores.push((k, a));
            }
            progress.fold_done(fi, metric, seconds, &scores);
        }
    }
    Ok(CrossValidation {
        metrics: metrics.to_vec(),
        ks,
        accuracy: table,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Quiet(usize, usize);

    impl CvProgress for Quiet {
        fn queries_done(&mut self, queries: usize) {
            self.0 += queries;
        }
        fn fold_done(&mut self, _: usize, _: Metric, _: f64, scores: &[(usize, f64)]) {
            self.1 += scores.len();
        }
    }

    /// Twenty dark points (class 0) and twenty bright ones (class 1), interleaved; one bright
    /// point (index 21, value 191) is labelled dark. k = 1 copies that noise onto its bright
    /// neighbour 194 (index 23, another fold); k = 7 votes it away, so only the noisy point
    /// itself is missed.
    fn clusters() -> (Vec<u8>, Vec<usize>) {
        let mut pixels = Vec::new();
        let mut labels = Vec::new();
        for i in 0..20u8 {
            pixels.extend([2 * i, 2 * i]);
            labels.push(0);
            let noisy = i == 10;
            let bright = 150 + 4 * i + u8::from(noisy);
            pixels.extend([bright, bright]);
            labels.push(if noisy { 0 } else { 1 });
        }
        (pixels, labels)
    }

    fn folds(n: usize, k: usize) -> Vec<Fold> {
        (0..k)
            .map(|f| Fold {
                train: (0..n).filter(|i| i % k != f).collect(),
                val: (0..n).filter(|i| i % k == f).collect(),
            })
            .collect()
    }

    #[test]
    fn larger_k_votes_label_noise_away() {
        let (pixels, labels) = clusters();
        let rows = LabelledRows {
            pixels: &pixels,
            dims: 2,
            labels: &labels,
            classes: 2,
        };
        let mut progress = Quiet(0, 0);
        let cv = cross_validate(
            rows,
            &folds(40, 4),
            &[7, 1, 7],
            &[Metric::L1, Metric::L2],
            &KnnOptions::default(),
            &Device::flex(),
            &mut progress,
        )
        .unwrap();
        assert_eq!(cv.ks, vec![1, 7]);
        assert_eq!(progress.0, 40 * 2, "every validation row, once per metric");
        assert_eq!(progress.1, 4 * 2 * 2);
        let (best_metric, best_k, best) = cv.best();
        assert_eq!((best_metric, best_k), (Metric::L1, 7));
        // Folds of 10: the noisy point's fold scores 0.9, the others 1.
        assert!((best - 0.975).abs() < 1e-9, "{best}");
        let (mean, std) = cv.mean_std(1, 1);
        assert!(
            (mean - 0.975).abs() < 1e-9 && (std - 0.0433).abs() < 1e-3,
            "{std}"
        );
        for mi in 0..2 {
            assert!(
                cv.mean_std(mi, 0).0 <= 0.95 + 1e-9,
                "k = 1 copies the noise"
            );
        }
        let too_big = cross_validate(
            rows,
            &folds(40, 4),
            &[31],
            &[Metric::L1],
            &KnnOptions::default(),
            &Device::flex(),
            &mut progress,
        );
        assert!(too_big.unwrap_err().to_string().contains("k = 31"));
    }
}
