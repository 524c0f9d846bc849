//! Burn datasets and batchers: in-memory images, augmented on access, batched to tensors.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, DatasetError};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::augment::{Partners, Pipeline, Sample, Target, TransformConfig};
use crate::{ImageSet, Normalization};

/// Shared epoch number that makes augmentation differ between epochs while staying seeded.
#[derive(Clone, Debug, Default)]
pub struct EpochCounter(Arc<AtomicU64>);

impl EpochCounter {
    /// Sets the epoch the next items are drawn for.
    pub fn set(&self, epoch: u64) {
        self.0.store(epoch, Ordering::Relaxed);
    }

    /// The current epoch.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A Burn [`Dataset`] over an in-memory [`ImageSet`] that augments each item as it is read.
///
/// Item `i` of epoch `e` is always augmented the same way for a given pipeline seed, whatever
/// worker thread reads it.
#[derive(Clone, Debug)]
pub struct AugmentedImages {
    images: Arc<ImageSet>,
    pipeline: Arc<Pipeline>,
    epoch: EpochCounter,
}

impl AugmentedImages {
    /// Wraps `images` with `pipeline` (use `Pipeline::default()` for none).
    pub fn new(images: Arc<ImageSet>, pipeline: Arc<Pipeline>) -> Self {
        Self {
            images,
            pipeline,
            epoch: EpochCounter::default(),
        }
    }

    /// The images of `set` as they are, without augmentation (validation and test sets).
    pub fn plain(set: &ImageSet) -> Self {
        Self::new(Arc::new(set.clone()), Arc::new(Pipeline::default()))
    }

    /// A handle to set the epoch after the dataset has moved into a data loader.
    pub fn epoch_counter(&self) -> EpochCounter {
        self.epoch.clone()
    }
}

impl Dataset<Sample> for AugmentedImages {
    fn get(&self, index: usize) -> Result<Sample, DatasetError> {
        let sample = Sample {
            image: self.images.image(index),
            target: Target::Label(self.images.labels[index]),
        };
        Ok(self.pipeline.apply(sample, self.epoch.get(), index as u64))
    }

    fn len(&self) -> usize {
        self.images.len()
    }
}

/// An item that augmentation can take apart into a [`Sample`] (image and boxes or mask) and
/// put together again; `Rest` is what travels beside it unchanged (ids, names, sizes).
pub trait Augmentable: Clone + Send + Sync + std::fmt::Debug + 'static {
    /// What the sample does not hold.
    type Rest;
    /// The item as a sample and the rest.
    fn into_sample(self) -> (Sample, Self::Rest);
    /// The item again from an (augmented) sample and the rest.
    fn from_sample(sample: Sample, rest: Self::Rest) -> Self;
}

/// A Burn [`Dataset`] of in-memory items (detection images with boxes, photos with label masks)
/// augmented on access: item `i` in epoch `e` always gets the same augmentation for a seed,
/// whichever thread reads it.
#[derive(Clone, Debug)]
pub struct AugmentedItems<T> {
    items: Arc<Vec<T>>,
    pipeline: Arc<Pipeline>,
    epoch: EpochCounter,
}

impl<T: Augmentable> AugmentedItems<T> {
    /// `items` augmented by the `[[augment]]` steps with `seed`.
    pub fn new(items: Arc<Vec<T>>, steps: &[TransformConfig], seed: u64) -> crate::Result<Self> {
        Ok(Self {
            items,
            pipeline: Arc::new(Pipeline::from_config(steps, seed)?),
            epoch: EpochCounter::default(),
        })
    }

    /// `items` as they are (evaluation).
    pub fn plain(items: Arc<Vec<T>>) -> Self {
        Self {
            items,
            pipeline: Arc::new(Pipeline::default()),
            epoch: EpochCounter::default(),
        }
    }

    /// A handle to set the augmentation epoch after the dataset moved into a loader.
    pub fn epoch_counter(&self) -> EpochCounter {
        self.epoch.clone()
    }

    /// The items without augmentation.
    pub fn items(&self) -> &[T] {
        &self.items
    }
}

impl<T: Augmentable> Dataset<T> for AugmentedItems<T> {
    fn get(&self, index: usize) -> Result<T, DatasetError> {
        let item = self.items.get(index).cloned().ok_or_else(|| {
            DatasetError::new(std::io::Error::other(format!(
                "item {index} is out of range ({} items)",
                self.items.len()
            )))
        })?;
        if self.pipeline.is_identity() {
            return Ok(item);
        }
        let (sample, rest) = item.into_sample();
        let partners = ItemPartners(&self.items);
        let sample = self
            .pipeline
            .apply_mixing(sample, self.epoch.get(), index as u64, &partners);
        Ok(T::from_sample(sample, rest))
    }

    fn len(&self) -> usize {
        self.items.len()
    }
}

/// The items a mosaic draws partners from, unaugmented.
struct ItemPartners<'a, T>(&'a [T]);

impl<T: Augmentable> Partners for ItemPartners<'_, T> {
    fn count(&self) -> usize {
        self.0.len()
    }

    fn sample(&self, index: usize) -> Sample {
        self.0[index].clone().into_sample().0
    }
}

/// A batch for classification: images `[batch, channels, height, width]` and class indices.
#[derive(Clone, Debug)]
pub struct ClassificationBatch {
    /// Normalised images, NCHW.
    pub images: Tensor<4>,
    /// Class indices.
    pub targets: Tensor<1, Int>,
}

/// Turns labelled samples into a [`ClassificationBatch`], normalising with statistics fitted on
/// the training split.
#[derive(Clone, Debug)]
pub struct ClassificationBatcher {
    normalization: Normalization,
}

impl ClassificationBatcher {
    /// A batcher applying `normalization`.
    pub fn new(normalization: Normalization) -> Self {
        Self { normalization }
    }

    /// Normalises images (all of one size) into one NCHW `f32` buffer.
    pub fn images_to_nchw(&self, samples: &[Sample]) -> (Vec<f32>, [usize; 4]) {
        let first = &samples[0].image;
        let (c, h, w) = (first.channels, first.height, first.width);
        let per = c * h * w;
        let mut values = vec![0.0f32; samples.len() * per];
        for (s, out) in samples.iter().zip(values.chunks_exact_mut(per)) {
            assert!(
                (s.image.channels, s.image.height, s.image.width) == (c, h, w),
                "a batch needs images of one size; add a crop or resize to the pipeline"
            );
            self.normalization.apply(&s.image.data, c, out);
        }
        (values, [samples.len(), c, h, w])
    }
}

impl Batcher<Sample, ClassificationBatch> for ClassificationBatcher {
    fn batch(&self, items: Vec<Sample>, device: &Device) -> ClassificationBatch {
        let (values, shape) = self.images_to_nchw(&items);
        let labels: Vec<i64> = items
            .iter()
            .map(|s| match s.target {
                Target::Label(l) => l as i64,
                _ => panic!("ClassificationBatcher needs class-label targets"),
            })
            .collect();
        let n = labels.len();
        ClassificationBatch {
            images: Tensor::from_data(TensorData::new(values, shape), device),
            targets: Tensor::from_data(TensorData::new(labels, [n]), device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::TransformConfig;
    use burn::data::dataloader::DataLoaderBuilder;

    fn images() -> Arc<ImageSet> {
        let pixels: Vec<u8> = (0..6 * 4 * 4 * 3).map(|v| (v % 251) as u8).collect();
        Arc::new(
            ImageSet::new(
                4,
                4,
                3,
                pixels,
                vec![0, 1, 2, 0, 1, 2],
                vec!["a".into(), "b".into(), "c".into()],
            )
            .unwrap(),
        )
    }

    #[test]
    fn batches_are_nchw_with_labels() {
        let device = Device::flex();
        let data = AugmentedImages::new(images(), Arc::new(Pipeline::default()));
        let items = vec![data.get(1).unwrap(), data.get(2).unwrap()];
        let batch = ClassificationBatcher::new(Normalization::Unit).batch(items, &device);
        assert_eq!(batch.images.dims(), [2, 3, 4, 4]);
        let values = batch.images.into_data().try_to_vec_as::<f32>().unwrap();
        // Image 1 starts at byte 48; its first red value is 48, its first green 49.
        assert!((values[0] - 48.0 / 255.0).abs() < 1e-6);
        assert!((values[16] - 49.0 / 255.0).abs() < 1e-6);
        let labels = batch.targets.into_data().try_to_vec_as::<i64>().unwrap();
        assert_eq!(labels, vec![1, 2]);
    }

    #[test]
    fn data_loader_with_workers_is_reproducible_per_epoch() {
        let steps = [
            TransformConfig::HorizontalFlip { p: 0.5 },
            TransformConfig::Cutout { size: 2, p: 1.0 },
        ];
        let pipeline = Arc::new(Pipeline::from_config(&steps, 9).unwrap());
        let run = |epoch: u64| {
            let data = AugmentedImages::new(images(), pipeline.clone());
            data.epoch_counter().set(epoch);
            let loader = DataLoaderBuilder::new(ClassificationBatcher::new(Normalization::Unit))
                .batch_size(2)
                .num_workers(2)
                .set_device(Device::flex())
                .build(data);
            let mut all: Vec<(i64, Vec<f32>)> = Vec::new();
            for batch in loader.iter() {
                let batch = batch.unwrap();
                let labels = batch.targets.into_data().try_to_vec_as::<i64>().unwrap();
                let values = batch.images.into_data().try_to_vec_as::<f32>().unwrap();
                for (l, img) in labels.into_iter().zip(values.chunks(48)) {
                    all.push((l, img.to_vec()));
                }
            }
            all.sort_by(|a, b| a.partial_cmp(b).unwrap());
            all
        };
        assert_eq!(run(0), run(0));
        assert_ne!(run(0), run(1));
    }
}
