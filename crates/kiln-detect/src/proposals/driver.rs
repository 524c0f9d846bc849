//! Selective search over a whole data set: decoding, the proposal cache, a thread pool and
//! per-image timing.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use kiln_data::image_folder::decode_image;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{ProposalCache, SelectiveSearchConfig, selective_search};
use crate::data::{AnnotatedImage, BoundingBox, DetectionSet};
use crate::{DetectError, Result};

/// Proposals for every image of a set, with what each took.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProposalRun {
    /// Proposals per image, best first, in the set's image order.
    pub boxes: Vec<Vec<BoundingBox>>,
    /// Seconds selective search took on each image (resizing included, decoding not); 0 for
    /// images read from the cache.
    pub seconds: Vec<f64>,
    /// Whether each image's proposals came from the cache.
    pub cached: Vec<bool>,
    /// Wall-clock seconds of the whole run (decoding and cache included).
    pub wall_seconds: f64,
    /// Threads used.
    pub threads: usize,
}

impl ProposalRun {
    /// Mean seconds per image over the images that were computed (not cached); `None` when
    /// every image was cached.
    pub fn mean_seconds(&self) -> Option<f64> {
        let computed: Vec<f64> = self
            .seconds
            .iter()
            .zip(&self.cached)
            .filter(|(_, c)| !**c)
            .map(|(s, _)| *s)
            .collect();
        (!computed.is_empty()).then(|| computed.iter().sum::<f64>() / computed.len() as f64)
    }
}

/// Selective search proposals for every image of `set`, best first, in image order; see
/// [`propose_for_set_timed`].
pub fn propose_for_set(
    set: &DetectionSet,
    config: &SelectiveSearchConfig,
    cache_dir: &Path,
    threads: usize,
    progress: impl Fn(usize) + Sync,
) -> Result<Vec<Vec<BoundingBox>>> {
    Ok(propose_for_set_timed(set, config, cache_dir, threads, progress)?.boxes)
}

/// Runs [`selective_search`] on every image of `set` on `threads` threads (0: one per core),
/// one image per thread at a time. Each image is decoded, looked up in a [`ProposalCache`] in
/// `cache_dir` (keyed by the file's bytes and `config`), and computed and stored on a miss.
/// `progress` is called with the number of images finished after each one. Fails on the first
/// image that cannot be read or decoded, or whose proposals cannot be stored.
pub fn propose_for_set_timed(
    set: &DetectionSet,
    config: &SelectiveSearchConfig,
    cache_dir: &Path,
    threads: usize,
    progress: impl Fn(usize) + Sync,
) -> Result<ProposalRun> {
    config.validate()?;
    let cache = ProposalCache::new(cache_dir, config)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| DetectError::invalid("threads", e.to_string()))?;
    let done = AtomicUsize::new(0);
    let one = |image: &AnnotatedImage| -> Result<(Vec<BoundingBox>, f64, bool)> {
        let bytes = std::fs::read(&image.path).map_err(|e| DetectError::io(&image.path, e))?;
        let key = cache.key(&bytes);
        let result = match cache.load(key) {
            Some(boxes) => (boxes, 0.0, true),
            None => {
                let decoded = decode_image(&image.path, None)?;
                let start = Instant::now();
                let boxes = selective_search(&decoded, config);
                let seconds = start.elapsed().as_secs_f64();
                cache.store(key, &boxes)?;
                (boxes, seconds, false)
            }
        };
        progress(done.fetch_add(1, Ordering::Relaxed) + 1);
        Ok(result)
    };
    let start = Instant::now();
    let results = pool.install(|| {
        set.images
            .par_iter()
            .with_max_len(1)
            .map(one)
            .collect::<Result<Vec<_>>>()
    })?;
    let mut run = ProposalRun {
        wall_seconds: start.elapsed().as_secs_f64(),
        threads: pool.current_num_threads(),
        ..ProposalRun::default()
    };
    for (boxes, seconds, cached) in results {
        run.boxes.push(boxes);
        run.seconds.push(seconds);
        run.cached.push(cached);
    }
    Ok(run)
}
