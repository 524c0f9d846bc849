//! Felzenszwalb–Huttenlocher graph-based segmentation ("Efficient Graph-Based Image
//! Segmentation", IJCV 2004), the initial regions of selective search.
//!
//! The image is smoothed by a Gaussian (sigma 0.8 in selective search), each pixel is joined to
//! its 8 neighbours by an edge weighted by the Euclidean colour distance of the smoothed pixels,
//! and the edges are visited by increasing weight: an edge joins two components when its weight
//! is at most both components' internal difference plus `k / size`. Components smaller than
//! `min_size` are then joined to a neighbour along the lightest edges.

use kiln_data::Image;

use super::colour::{self, ColourSpace, Planes};

/// A label image: one region index a pixel, regions numbered `0..count` in raster order of
/// their first pixel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segmentation {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height` region indices, row-major.
    pub labels: Vec<u32>,
    /// Number of regions.
    pub count: usize,
}

/// Segments `image` (any channel count; grey is repeated to RGB) in `space` with
/// Felzenszwalb–Huttenlocher: Gaussian smoothing of standard deviation `sigma`, scale parameter
/// `k` (larger: larger regions) and regions of at least `min_size` pixels where the image
/// allows.
pub fn felzenszwalb(
    image: &Image,
    space: ColourSpace,
    sigma: f32,
    k: f32,
    min_size: usize,
) -> Segmentation {
    let rgb = colour::resize_long_side(image, None);
    let planes = colour::convert(&rgb, space);
    SortedGraph::new(&colour::smooth(&planes, sigma)).segment(k, min_size)
}

/// The 8-neighbour grid graph of an image with its edges sorted by weight, to segment with
/// several `k`s while sorting once.
pub(crate) struct SortedGraph {
    width: usize,
    height: usize,
    /// `weight bits << 32 | pixel << 2 | direction`, ascending (weights are non-negative, so
    /// their bit patterns order as the values do).
    edges: Vec<u64>,
}

/// Index offset of the neighbour in each edge direction: right, down, down-right, up-right.
fn neighbour(pixel: usize, direction: usize, width: usize) -> usize {
    match direction {
        0 => pixel + 1,
        1 => pixel + width,
        2 => pixel + width + 1,
        _ => pixel + 1 - width,
    }
}

impl SortedGraph {
    /// The graph of `smoothed` (its pixels' colour distances), edges sorted.
    pub(crate) fn new(smoothed: &Planes) -> Self {
        let (w, h) = (smoothed.width, smoothed.height);
        let [c0, c1, c2] = &smoothed.channels;
        let mut edges = Vec::with_capacity(4 * w * h);
        let dist = |a: usize, b: usize| {
            let d0 = c0[a] - c0[b];
            let d1 = c1[a] - c1[b];
            let d2 = c2[a] - c2[b];
            (d0 * d0 + d1 * d1 + d2 * d2).sqrt()
        };
        for y in 0..h {
            for x in 0..w {
                let p = y * w + x;
                let mut push = |dir: usize| {
                    let weight = dist(p, neighbour(p, dir, w));
                    edges.push(((weight.to_bits() as u64) << 32) | ((p as u64) << 2) | dir as u64);
                };
                if x + 1 < w {
                    push(0);
                    if y + 1 < h {
                        push(2);
                    }
                    if y > 0 {
                        push(3);
                    }
                }
                if y + 1 < h {
                    push(1);
                }
            }
        }
        radix_sort_by_high_word(&mut edges);
        Self {
            width: w,
            height: h,
            edges,
        }
    }

    /// The segmentation for scale `k` and minimum region size `min_size`.
    pub(crate) fn segment(&self, k: f32, min_size: usize) -> Segmentation {
        let n = self.width * self.height;
        let mut sets = DisjointSets::new(n, k);
        for &edge in &self.edges {
            let weight = f32::from_bits((edge >> 32) as u32);
            let p = ((edge & 0xFFFF_FFFF) >> 2) as usize;
            let q = neighbour(p, (edge & 3) as usize, self.width);
            let (a, b) = (sets.find(p), sets.find(q));
            if a != b && weight <= sets.nodes[a].threshold && weight <= sets.nodes[b].threshold {
                let root = sets.join(a, b);
                let node = &mut sets.nodes[root];
                node.threshold = weight + k / node.size as f32;
            }
        }
        if min_size > 1 {
            // Only edges touching a component smaller than `min_size` can join anything
            // (components only grow), so the others are skipped without a lookup.
            let small: Vec<bool> = (0..n)
                .map(|p| {
                    let root = sets.find(p);
                    (sets.nodes[root].size as usize) < min_size
                })
                .collect();
            for &edge in &self.edges {
                let p = ((edge & 0xFFFF_FFFF) >> 2) as usize;
                let q = neighbour(p, (edge & 3) as usize, self.width);
                if !small[p] && !small[q] {
                    continue;
                }
                let (a, b) = (sets.find(p), sets.find(q));
                if a != b
                    && ((sets.nodes[a].size as usize) < min_size
                        || (sets.nodes[b].size as usize) < min_size)
                {
                    sets.join(a, b);
                }
            }
        }
        let mut ids = vec![u32::MAX; n];
        let mut labels = vec![0u32; n];
        let mut count = 0u32;
        for (p, label) in labels.iter_mut().enumerate() {
            let root = sets.find(p);
            if ids[root] == u32::MAX {
                ids[root] = count;
                count += 1;
            }
            *label = ids[root];
        }
        Segmentation {
            width: self.width,
            height: self.height,
            labels,
            count: count as usize,
        }
    }
}

/// One pixel of the union–find forest; `size` and `threshold` are meaningful at roots. Kept
/// together so that a root's lookup and its threshold share a cache line (the edges visit
/// pixels in weight order, i.e. at random).
#[derive(Clone, Copy)]
struct Node {
    parent: u32,
    size: u32,
    /// The component's internal difference plus `k / size`.
    threshold: f32,
}

/// Union–find over pixels, by size with path halving.
struct DisjointSets {
    nodes: Vec<Node>,
}

impl DisjointSets {
    fn new(n: usize, k: f32) -> Self {
        Self {
            nodes: (0..n as u32)
                .map(|p| Node {
                    parent: p,
                    size: 1,
                    threshold: k,
                })
                .collect(),
        }
    }

    fn find(&mut self, mut p: usize) -> usize {
        loop {
            let parent = self.nodes[p].parent as usize;
            if parent == p {
                return p;
            }
            let grand = self.nodes[parent].parent;
            self.nodes[p].parent = grand;
            p = grand as usize;
        }
    }

    /// Joins the sets rooted at `a` and `b`; returns the new root.
    fn join(&mut self, a: usize, b: usize) -> usize {
        let (big, small) = if self.nodes[a].size >= self.nodes[b].size {
            (a, b)
        } else {
            (b, a)
        };
        self.nodes[small].parent = big as u32;
        self.nodes[big].size += self.nodes[small].size;
        big
    }
}

/// Sorts by the high 32 bits, stably (LSD radix sort, three passes of 11 bits).
fn radix_sort_by_high_word(values: &mut Vec<u64>) {
    const BITS: u32 = 11;
    const BUCKETS: usize = 1 << BITS;
    let mut scratch = vec![0u64; values.len()];
    let mut src = std::mem::take(values);
    for pass in 0..3 {
        let shift = 32 + pass * BITS;
        let mut counts = [0usize; BUCKETS];
        for &v in &src {
            counts[((v >> shift) as usize) & (BUCKETS - 1)] += 1;
        }
        if counts.contains(&src.len()) {
            continue; // every key has the same digit: the order is unchanged
        }
        let mut offset = 0;
        for c in counts.iter_mut() {
            let n = *c;
            *c = offset;
            offset += n;
        }
        for &v in &src {
            let bucket = ((v >> shift) as usize) & (BUCKETS - 1);
            scratch[counts[bucket]] = v;
            counts[bucket] += 1;
        }
        std::mem::swap(&mut src, &mut scratch);
    }
    *values = src;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radix_sort_orders_by_weight_stably() {
        let weights = [3.5f32, 0.0, 1e-3, 250.0, 3.5, 1e-3, 441.7];
        let mut v: Vec<u64> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| ((w.to_bits() as u64) << 32) | i as u64)
            .collect();
        radix_sort_by_high_word(&mut v);
        let order: Vec<u64> = v.iter().map(|x| x & 0xFFFF_FFFF).collect();
        assert_eq!(order, vec![1, 2, 5, 0, 4, 3, 6]);
    }

    #[test]
    fn uniform_image_is_one_region() {
        let img = Image::filled(17, 9, 3, 120);
        let seg = felzenszwalb(&img, ColourSpace::Rgb, 0.8, 100.0, 20);
        assert_eq!(seg.count, 1);
        assert!(seg.labels.iter().all(|&l| l == 0));
    }

    #[test]
    fn min_size_absorbs_specks() {
        // A 2x2 bright speck on a dark background survives k = 1 alone, not min_size = 10.
        let mut img = Image::filled(20, 20, 3, 10);
        for y in 8..10 {
            for x in 8..10 {
                let at = (y * 20 + x) * 3;
                img.data[at..at + 3].copy_from_slice(&[250, 250, 250]);
            }
        }
        assert_eq!(felzenszwalb(&img, ColourSpace::Rgb, 0.0, 1.0, 1).count, 2);
        assert_eq!(felzenszwalb(&img, ColourSpace::Rgb, 0.0, 1.0, 10).count, 1);
    }
}
