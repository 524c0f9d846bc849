//! How fast the augmentation pipeline runs on one thread: the number that says whether data
//! loading can keep a training step fed.

use std::time::Instant;

use crate::augment::{Pipeline, Sample, Target};
use crate::{ClassificationBatcher, ImageSet};

/// Images per second of a pipeline on one thread.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PipelineThroughput {
    /// Augmenting alone.
    pub augment: f64,
    /// Augmenting, then normalising into NCHW batches of 256 as the batcher does.
    pub augment_and_normalise: f64,
    /// A sum of output values, so that no work is optimised away (and runs can be compared).
    pub checksum: u64,
}

/// Runs `pipeline` over `images` images of `set` (cycling through it) on the calling thread,
/// first alone, then with `batcher`'s normalisation; `progress` hears of every 1,024 images of
/// the first pass.
pub fn pipeline_throughput(
    set: &ImageSet,
    pipeline: &Pipeline,
    batcher: &ClassificationBatcher,
    images: usize,
    mut progress: impl FnMut(usize),
) -> PipelineThroughput {
    let n = images.max(1);
    let sample = |k: usize| {
        let i = k % set.len();
        Sample {
            image: set.image(i),
            target: Target::Label(set.labels[i]),
        }
    };
    let started = Instant::now();
    let mut checksum = 0u64;
    for k in 0..n {
        let out = pipeline.apply(sample(k), 0, k as u64);
        checksum = checksum.wrapping_add(out.image.data[0] as u64);
        if k % 1024 == 0 {
            progress(1024.min(n - k));
        }
    }
    let augment_secs = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut batch = Vec::with_capacity(256);
    for k in 0..n {
        batch.push(pipeline.apply(sample(k), 0, k as u64));
        if batch.len() == 256 || k + 1 == n {
            let (values, _) = batcher.images_to_nchw(&batch);
            checksum = checksum.wrapping_add(values[0].to_bits() as u64);
            batch.clear();
        }
    }
    let with_normalise_secs = started.elapsed().as_secs_f64();
    PipelineThroughput {
        augment: n as f64 / augment_secs.max(1e-9),
        augment_and_normalise: n as f64 / with_normalise_secs.max(1e-9),
        checksum,
    }
}
