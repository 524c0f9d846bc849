//! Selective search (Uijlings et al., "Selective Search for Object Recognition", IJCV 2013) and
//! proposal recall.
//!
//! [`selective_search`] runs the paper's *fast* mode by default ([`SelectiveSearchConfig`]):
//!
//! 1. the image is resized to a long side of 500 pixels (boxes are mapped back to the original);
//! 2. for each colour space (HSV, Lab) and each scale `k` (50, 100), Felzenszwalb–Huttenlocher
//!    segmentation ([`felzenszwalb`]: Gaussian smoothing with sigma 0.8, 8-neighbour graph of
//!    colour distances, minimum region size `k`) gives the initial regions;
//! 3. for each similarity set (colour + texture + size + fill, texture + size + fill),
//!    hierarchical grouping merges the two most similar neighbouring regions (8-neighbour
//!    adjacency) until one is left; every region of the hierarchy is a proposal;
//! 4. the regions of all 8 strategies are ranked the paper's way — each region's position in its
//!    hierarchy (1 for the last merge, the whole image) times a seeded uniform random number,
//!    ascending — identical boxes are dropped, and the boxes are returned best first.
//!
//! Colour similarity is the histogram intersection of L1-normalised 25-bin-per-channel colour
//! histograms; texture, of 8-orientation × 10-bin histograms of Gaussian derivatives (sigma 1)
//! per channel; size and fill are the paper's.
//!
//! Around it: [`proposal_recall`] (recall of ground truth at top-N proposals and IoU thresholds),
//! [`save_recall_plot`], a per-image on-disk [`ProposalCache`], and [`propose_for_set`], which
//! runs everything over a [`DetectionSet`](crate::data::DetectionSet) on a thread pool.

mod cache;
mod colour;
mod driver;
mod felzenszwalb;
mod grouping;
mod plot;
mod recall;

pub use cache::ProposalCache;
pub use colour::ColourSpace;
pub use driver::{ProposalRun, propose_for_set, propose_for_set_timed};
pub use felzenszwalb::{Segmentation, felzenszwalb};
pub use grouping::Similarities;
pub use plot::{RecallCurve, recall_curve, save_recall_plot};
pub use recall::{RecallTable, ground_truth_boxes, proposal_recall};

use std::collections::HashSet;

use kiln_data::Image;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::BoundingBox;
use crate::{DetectError, Result};
use grouping::PixelBox;

/// Settings of [`selective_search`]; the defaults are the paper's fast mode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SelectiveSearchConfig {
    /// Colour spaces to segment and group in (default HSV and Lab).
    pub colour_spaces: Vec<ColourSpace>,
    /// Felzenszwalb–Huttenlocher scales `k` (default 50 and 100).
    pub ks: Vec<f32>,
    /// Similarity sets to group with (default `CTSF` and `TSF`).
    pub similarities: Vec<Similarities>,
    /// Gaussian smoothing before segmentation (default 0.8).
    pub sigma: f32,
    /// Minimum initial region size in pixels; `None` (default) uses `k`, as the paper's code.
    pub min_size: Option<usize>,
    /// Resize the image so that its long side is this many pixels before searching (default
    /// 500); `None` searches at the original size.
    pub long_side: Option<usize>,
    /// Seed of the pseudo-random ranking (default 0).
    pub seed: u64,
    /// Keep at most this many proposals (default: all).
    pub max_proposals: Option<usize>,
    /// Run the strategies of one image on the rayon pool (default off: one image is one
    /// thread's work and images are spread over threads). The result is the same either way.
    pub parallel_strategies: bool,
}

impl Default for SelectiveSearchConfig {
    fn default() -> Self {
        Self {
            colour_spaces: vec![ColourSpace::Hsv, ColourSpace::Lab],
            ks: vec![50.0, 100.0],
            similarities: vec![Similarities::CTSF, Similarities::TSF],
            sigma: 0.8,
            min_size: None,
            long_side: Some(500),
            seed: 0,
            max_proposals: None,
            parallel_strategies: false,
        }
    }
}

impl SelectiveSearchConfig {
    /// Checks every setting, naming the first one out of range.
    pub fn validate(&self) -> Result<()> {
        if self.colour_spaces.is_empty() {
            return Err(DetectError::invalid(
                "selective search colour_spaces",
                "empty",
            ));
        }
        if self.similarities.is_empty() {
            return Err(DetectError::invalid(
                "selective search similarities",
                "empty",
            ));
        }
        if self.ks.is_empty() || self.ks.iter().any(|k| !k.is_finite() || *k <= 0.0) {
            return Err(DetectError::invalid(
                "selective search ks",
                format!("{:?}: give one or more positive numbers", self.ks),
            ));
        }
        if !self.sigma.is_finite() || self.sigma < 0.0 {
            return Err(DetectError::invalid(
                "selective search sigma",
                format!("{} must be finite and >= 0", self.sigma),
            ));
        }
        if self.long_side == Some(0) {
            return Err(DetectError::invalid(
                "selective search long_side",
                "0: give a positive size or none",
            ));
        }
        Ok(())
    }

    /// The number of grouping strategies: colour spaces × ks × similarity sets.
    pub fn strategies(&self) -> usize {
        self.colour_spaces.len() * self.ks.len() * self.similarities.len()
    }
}

/// Runs `f` over `items`, in parallel on the current rayon pool when `parallel`.
fn map_items<T: Sync, R: Send>(
    items: &[T],
    parallel: bool,
    f: impl Fn(&T) -> R + Sync + Send,
) -> Vec<R> {
    if parallel {
        items.par_iter().map(f).collect()
    } else {
        items.iter().map(f).collect()
    }
}

/// The hierarchy of every strategy, in strategy order (colour space, then k, then similarity
/// set), each in creation order.
fn hierarchies(rgb: &Image, config: &SelectiveSearchConfig) -> Vec<Vec<PixelBox>> {
    let parallel = config.parallel_strategies;
    let per_space = map_items(&config.colour_spaces, parallel, |&space| {
        let planes = colour::convert(rgb, space);
        let colour_bins = colour::colour_bins(&planes);
        let texture_bins = colour::texture_bins(&planes);
        let graph = felzenszwalb::SortedGraph::new(&colour::smooth(&planes, config.sigma));
        let per_k = map_items(&config.ks, parallel, |&k| {
            let min_size = config.min_size.unwrap_or(k.max(0.0) as usize);
            let segmentation = graph.segment(k, min_size);
            let init = grouping::initial_regions(&segmentation, &colour_bins, &texture_bins);
            map_items(&config.similarities, parallel, |&s| {
                grouping::hierarchical_grouping(&init, s)
            })
        });
        per_k.into_iter().flatten().collect::<Vec<_>>()
    });
    per_space.into_iter().flatten().collect()
}

/// One region's place in the merged ranking.
struct Ranked {
    value: f64,
    strategy: u32,
    index: u32,
}

/// Ranks the regions of all strategies the paper's way: a region at position `i` (0-based, in
/// creation order) of a hierarchy of `n` regions gets `(n - i) * r`, `r` uniform in [0, 1) from
/// a generator seeded by `seed` and the strategy's index; ascending values come first, ties by
/// strategy and position. Identical boxes keep their best place.
fn rank(hierarchies: &[Vec<PixelBox>], seed: u64) -> Vec<PixelBox> {
    let total: usize = hierarchies.iter().map(Vec::len).sum();
    let mut ranked = Vec::with_capacity(total);
    for (s, boxes) in hierarchies.iter().enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(s as u64);
        let n = boxes.len();
        for i in 0..n {
            let r: f64 = rng.random();
            ranked.push(Ranked {
                value: (n - i) as f64 * r,
                strategy: s as u32,
                index: i as u32,
            });
        }
    }
    ranked.sort_unstable_by(|a, b| {
        a.value
            .total_cmp(&b.value)
            .then(a.strategy.cmp(&b.strategy))
            .then(a.index.cmp(&b.index))
    });
    let mut seen = HashSet::with_capacity(total);
    ranked
        .into_iter()
        .map(|r| hierarchies[r.strategy as usize][r.index as usize])
        .filter(|b| seen.insert(*b))
        .collect()
}

/// Selective search on `image`: object proposals, best first, in pixel coordinates of `image`
/// (see the [module docs](self) for the method). Empty for an empty image. Runs on the calling
/// thread unless [`SelectiveSearchConfig::parallel_strategies`] is set.
pub fn selective_search(image: &Image, config: &SelectiveSearchConfig) -> Vec<BoundingBox> {
    if image.width == 0 || image.height == 0 || image.channels == 0 {
        return Vec::new();
    }
    let rgb = colour::resize_long_side(image, config.long_side);
    if rgb.width > u16::MAX as usize || rgb.height > u16::MAX as usize {
        return Vec::new();
    }
    let ranked = rank(&hierarchies(&rgb, config), config.seed);
    let sx = image.width as f32 / rgb.width as f32;
    let sy = image.height as f32 / rgb.height as f32;
    let keep = config.max_proposals.unwrap_or(usize::MAX);
    ranked
        .into_iter()
        .take(keep)
        .map(|b| BoundingBox {
            x1: b[0] as f32 * sx,
            y1: b[1] as f32 * sy,
            x2: (b[2] as f32 + 1.0) * sx,
            y2: (b[3] as f32 + 1.0) * sy,
        })
        .collect()
}

#[cfg(test)]
mod tests;
