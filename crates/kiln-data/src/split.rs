//! Seeded, stratified splits: train/validation(/test) and k-fold cross-validation indices.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::{DataError, Result};

/// Indices of one split of a dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// Indices used for training.
    pub train: Vec<usize>,
    /// Indices held out for validation.
    pub val: Vec<usize>,
}

/// Indices of each class, shuffled by `seed`, classes in label order.
fn shuffled_by_class(labels: &[usize], seed: u64) -> Vec<Vec<usize>> {
    let classes = labels.iter().max().map_or(0, |m| m + 1);
    let mut by_class = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l].push(i);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for members in &mut by_class {
        members.shuffle(&mut rng);
    }
    by_class
}

/// How many of `total` items each class contributes so that the result follows the class
/// proportions (largest remainders, ties to the smaller label), summing exactly to `total`.
fn stratified_quota(class_sizes: &[usize], total: usize) -> Vec<usize> {
    let n: usize = class_sizes.iter().sum();
    if n == 0 {
        return vec![0; class_sizes.len()];
    }
    let mut quota: Vec<usize> = class_sizes.iter().map(|&c| c * total / n).collect();
    let mut order: Vec<usize> = (0..class_sizes.len()).collect();
    order.sort_by_key(|&c| std::cmp::Reverse((class_sizes[c] * total) % n));
    let mut missing = total - quota.iter().sum::<usize>();
    for c in order {
        if missing == 0 {
            break;
        }
        if quota[c] < class_sizes[c] {
            quota[c] += 1;
            missing -= 1;
        }
    }
    quota
}

/// Splits `labels` into train and validation, holding out `val_count` items spread over the
/// classes in proportion to their sizes. Both index lists come back sorted.
pub fn stratified_split(labels: &[usize], val_count: usize, seed: u64) -> Result<Split> {
    if val_count >= labels.len() {
        return Err(DataError::invalid(
            "validation size",
            format!(
                "{val_count} validation items leaves no training data out of {}",
                labels.len()
            ),
        ));
    }
    let by_class = shuffled_by_class(labels, seed);
    let sizes: Vec<usize> = by_class.iter().map(Vec::len).collect();
    let quota = stratified_quota(&sizes, val_count);
    let mut split = Split {
        train: Vec::with_capacity(labels.len() - val_count),
        val: Vec::with_capacity(val_count),
    };
    for (members, q) in by_class.iter().zip(quota) {
        split.val.extend_from_slice(&members[..q]);
        split.train.extend_from_slice(&members[q..]);
    }
    split.train.sort_unstable();
    split.val.sort_unstable();
    Ok(split)
}

/// Takes `per_class` items of every class (e.g. CIFAR-10 with 100 images a class).
pub fn per_class_subset(labels: &[usize], per_class: usize, seed: u64) -> Result<Vec<usize>> {
    let by_class = shuffled_by_class(labels, seed);
    let mut out = Vec::with_capacity(per_class * by_class.len());
    for (class, members) in by_class.iter().enumerate() {
        if members.len() < per_class {
            return Err(DataError::invalid(
                "per-class subset",
                format!(
                    "class {class} has {} items, fewer than {per_class}",
                    members.len()
                ),
            ));
        }
        out.extend_from_slice(&members[..per_class]);
    }
    out.sort_unstable();
    Ok(out)
}

/// `per_class` images of each class of `set` (seeded, stratified, in dataset order); the whole
/// set when `per_class` is 0. The same set, count and seed always give the same images.
pub fn subset_per_class(
    set: &crate::ImageSet,
    per_class: usize,
    seed: u64,
) -> Result<crate::ImageSet> {
    if per_class == 0 {
        return Ok(set.clone());
    }
    let keep = per_class_subset(&set.labels, per_class, seed)?;
    Ok(set.subset(&keep))
}

/// Stratified k-fold cross-validation: `k` splits whose validation parts are disjoint, cover
/// every index once, and each keep the class proportions.
pub fn stratified_k_fold(labels: &[usize], k: usize, seed: u64) -> Result<Vec<Split>> {
    if k < 2 || k > labels.len() {
        return Err(DataError::invalid(
            "number of folds",
            format!("k = {k} must be between 2 and the {} items", labels.len()),
        ));
    }
    let by_class = shuffled_by_class(labels, seed);
    let mut fold_of = vec![0usize; labels.len()];
    // Deal each class's shuffled members round-robin, continuing where the previous class
    // stopped so that fold sizes differ by at most one.
    let mut next = 0;
    for members in &by_class {
        for &i in members {
            fold_of[i] = next % k;
            next += 1;
        }
    }
    Ok((0..k)
        .map(|f| {
            let (val, train): (Vec<usize>, Vec<usize>) =
                (0..labels.len()).partition(|&i| fold_of[i] == f);
            Split { train, val }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<usize> {
        // 60 of class 0, 30 of class 1, 10 of class 2.
        (0..100)
            .map(|i| {
                if i < 60 {
                    0
                } else if i < 90 {
                    1
                } else {
                    2
                }
            })
            .collect()
    }

    fn counts(indices: &[usize], labels: &[usize]) -> Vec<usize> {
        let mut c = vec![0; 3];
        for &i in indices {
            c[labels[i]] += 1;
        }
        c
    }

    #[test]
    fn split_is_stratified_disjoint_and_complete() {
        let l = labels();
        let s = stratified_split(&l, 20, 7).unwrap();
        assert_eq!(counts(&s.val, &l), vec![12, 6, 2]);
        let mut all: Vec<usize> = s.train.iter().chain(&s.val).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_eq!(s, stratified_split(&l, 20, 7).unwrap());
        assert_ne!(s.val, stratified_split(&l, 20, 8).unwrap().val);
    }

    #[test]
    fn quotas_sum_exactly_with_remainders() {
        let l = labels();
        let s = stratified_split(&l, 7, 1).unwrap();
        assert_eq!(s.val.len(), 7);
        assert!(stratified_split(&l, 100, 1).is_err());
    }

    #[test]
    fn k_folds_partition_the_data_and_keep_proportions() {
        let l = labels();
        let folds = stratified_k_fold(&l, 5, 3).unwrap();
        let mut seen = vec![0; 100];
        for f in &folds {
            assert_eq!(f.val.len(), 20);
            assert_eq!(counts(&f.val, &l), vec![12, 6, 2]);
            assert_eq!(f.train.len() + f.val.len(), 100);
            for &i in &f.val {
                seen[i] += 1;
                assert!(!f.train.contains(&i));
            }
        }
        assert!(seen.iter().all(|&s| s == 1));
        assert!(stratified_k_fold(&l, 1, 0).is_err());
    }

    #[test]
    fn per_class_subset_takes_equal_counts() {
        let l = labels();
        let s = per_class_subset(&l, 10, 0).unwrap();
        assert_eq!(counts(&s, &l), vec![10, 10, 10]);
        assert!(per_class_subset(&l, 11, 0).is_err());
    }
}

/// A dataset divided into the splits a training run uses.
///
/// Normalisation statistics can only be fitted through [`Splits::fit_normalization`], which
/// reads the training split alone, so nothing about validation or test images leaks into them.
#[derive(Clone, Debug)]
pub struct Splits {
    /// Training images.
    pub train: crate::ImageSet,
    /// Validation images held out of the published training split (stratified, seeded).
    pub val: Option<crate::ImageSet>,
    /// The published test split, if the dataset has one.
    pub test: Option<crate::ImageSet>,
}

impl Splits {
    /// Holds `val_count` stratified training images out for validation (none when 0).
    pub fn new(data: crate::TrainTest, val_count: usize, seed: u64) -> Result<Self> {
        if data.train.is_empty() {
            return Err(DataError::invalid("dataset", "the training split is empty"));
        }
        let (train, val) = if val_count == 0 {
            (data.train, None)
        } else {
            let split = stratified_split(&data.train.labels, val_count, seed)?;
            (
                data.train.subset(&split.train),
                Some(data.train.subset(&split.val)),
            )
        };
        Ok(Self {
            train,
            val,
            test: data.test,
        })
    }

    /// Fits `kind` on the training split only.
    pub fn fit_normalization(
        &self,
        kind: crate::NormalizationKind,
    ) -> Result<crate::Normalization> {
        crate::Normalization::fit(kind, &self.train)
    }
}
