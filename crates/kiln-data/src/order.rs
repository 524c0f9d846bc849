//! Batches of images of like shape: aspect-ratio groups (torchvision's
//! `create_aspect_ratio_groups`), a seeded epoch order whose batches each come from one group
//! (its `GroupedBatchSampler`), and a [`Dataset`] read in a given order.
//!
//! A batch of photos is padded to its largest width and height, so a portrait photo batched with
//! landscape ones makes every image of the batch nearly square: on the raccoon set, random
//! batches of four hold about 1.3× the pixels of their photos, batches of one group about 1.1×.

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::data::dataset::{Dataset, DatasetError};
use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::{DataError, Result};

/// The aspect-ratio group of each `[width, height]` in `sizes`, as torchvision's references
/// form them with `--aspect-ratio-group-factor factor`: the ratios width / height between ½ and
/// 2 are cut into `2 · factor` bins evenly spaced in log₂, with one more group below ½ and one
/// above 2 (`2 · factor + 2` groups in all; every image in group 0 when `factor` is 0).
pub fn aspect_ratio_groups(sizes: &[[usize; 2]], factor: usize) -> Vec<usize> {
    if factor == 0 {
        return vec![0; sizes.len()];
    }
    let edges: Vec<f64> = (0..=2 * factor)
        .map(|i| (-1.0 + i as f64 / factor as f64).exp2())
        .collect();
    sizes
        .iter()
        .map(|&[w, h]| {
            let ratio = w as f64 / h.max(1) as f64;
            edges.partition_point(|&edge| edge <= ratio)
        })
        .collect()
}

/// An order of `0..groups.len()` in which each run of `batch` items comes from one group,
/// seeded: the items are shuffled, dealt into per-group buffers, and each buffer is emptied into
/// the order whenever it holds a batch. What is left in the buffers at the end (fewer than a
/// batch per group) closes the order, group by group, so every item appears once and at most
/// one batch per group boundary there mixes groups. As torchvision's `GroupedBatchSampler`, but
/// nothing is repeated or dropped: an epoch keeps its length and its number of batches.
pub fn grouped_order(groups: &[usize], batch: usize, seed: u64) -> Vec<usize> {
    let mut shuffled: Vec<usize> = (0..groups.len()).collect();
    shuffled.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let batch = batch.max(1);
    let mut buffers: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut order = Vec::with_capacity(groups.len());
    for index in shuffled {
        let buffer = buffers.entry(groups[index]).or_default();
        buffer.push(index);
        if buffer.len() == batch {
            order.append(buffer);
        }
    }
    for buffer in buffers.into_values() {
        order.extend(buffer);
    }
    order
}

/// A [`Dataset`] that reads `inner` in a given order: item `i` is `inner`'s item `order[i]`
/// (so augmentation keyed by the item's index still sees the inner index).
#[derive(Clone, Debug)]
pub struct Reordered<D> {
    inner: D,
    order: Arc<Vec<usize>>,
}

impl<D> Reordered<D> {
    /// `inner` read in `order`, which must be a permutation of `inner`'s indices.
    pub fn new<I>(inner: D, order: Vec<usize>) -> Result<Self>
    where
        D: Dataset<I>,
    {
        let mut seen = vec![false; inner.len()];
        let is_permutation = order.len() == inner.len()
            && order
                .iter()
                .all(|&i| i < seen.len() && !std::mem::replace(&mut seen[i], true));
        if !is_permutation {
            return Err(DataError::Invalid {
                what: "batch order".into(),
                reason: format!(
                    "{} indices are not a permutation of the dataset's {} items",
                    order.len(),
                    inner.len()
                ),
            });
        }
        Ok(Self {
            inner,
            order: Arc::new(order),
        })
    }
}

impl<I, D: Dataset<I>> Dataset<I> for Reordered<D> {
    fn get(&self, index: usize) -> std::result::Result<I, DatasetError> {
        let inner = self.order.get(index).ok_or_else(|| {
            DatasetError::new(std::io::Error::other(format!(
                "item {index} is out of range ({} items)",
                self.order.len()
            )))
        })?;
        self.inner.get(*inner)
    }

    fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::data::dataset::InMemDataset;

    #[test]
    fn groups_follow_torchvisions_log_spaced_bins() {
        // factor 1: edges ½, 1, 2 → groups below ½, [½, 1), [1, 2), 2 and above.
        let sizes = [
            [10, 30],
            [50, 100],
            [60, 80],
            [100, 100],
            [150, 100],
            [300, 100],
        ];
        assert_eq!(aspect_ratio_groups(&sizes, 1), [0, 1, 1, 2, 2, 3]);
        // factor 3 splits [1, 2) at 2^⅓ ≈ 1.26 and 2^⅔ ≈ 1.59: 4:3 and 3:2 share a group,
        // 16:9 is in the next.
        let landscape = [[400, 300], [600, 400], [640, 360]];
        let groups = aspect_ratio_groups(&landscape, 3);
        assert_eq!(groups[0], groups[1]);
        assert_eq!(groups[2], groups[0] + 1);
        assert_eq!(aspect_ratio_groups(&sizes, 0), [0; 6]);
    }

    #[test]
    fn grouped_order_is_a_seeded_permutation_of_single_group_batches() {
        // 9 landscape (group 0) and 7 portrait (group 1) images, batches of 4.
        let groups: Vec<usize> = (0..16)
            .map(|i| usize::from(i % 7 == 0 || i % 3 == 0))
            .collect();
        let order = grouped_order(&groups, 4, 7);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..16).collect::<Vec<_>>());
        let full = groups.iter().filter(|&&g| g == 0).count() / 4
            + groups.iter().filter(|&&g| g == 1).count() / 4;
        for batch in order.chunks(4).take(full) {
            assert!(
                batch.iter().all(|&i| groups[i] == groups[batch[0]]),
                "{batch:?}"
            );
        }
        assert_eq!(order, grouped_order(&groups, 4, 7));
        // Group ids are labels, not sizes: any value works.
        let sparse: Vec<usize> = groups.iter().map(|&g| g * (usize::MAX / 2)).collect();
        assert_eq!(grouped_order(&sparse, 4, 7), order);
        assert_ne!(order, grouped_order(&groups, 4, 8));
    }

    #[test]
    fn reordered_reads_the_inner_items_in_order_and_refuses_a_bad_order() {
        let inner = Arc::new(InMemDataset::new(vec!["a", "b", "c"]));
        let read = Reordered::new(inner.clone(), vec![2, 0, 1]).unwrap();
        assert_eq!(read.len(), 3);
        let items: Vec<_> = (0..3).map(|i| read.get(i).unwrap()).collect();
        assert_eq!(items, ["c", "a", "b"]);
        assert!(read.get(3).is_err());
        for bad in [vec![0, 1], vec![0, 0, 1], vec![0, 1, 3]] {
            let Err(err) = Reordered::new(inner.clone(), bad) else {
                panic!("a bad order was accepted");
            };
            let err = err.to_string();
            assert!(err.contains("not a permutation"), "{err}");
        }
    }
}
