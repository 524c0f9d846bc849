//! Hierarchical grouping: starting from the initial segmentation, the two most similar
//! neighbouring regions are merged until one region covers the image; every region on the way
//! is a proposal.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use serde::{Deserialize, Serialize};

use super::colour::{COLOUR_LEN, TEXTURE_LEN, TEXTURE_MAPS};
use super::felzenszwalb::Segmentation;

/// Which similarities a grouping strategy sums (the paper's `a_i ∈ {0, 1}`); written as the
/// paper's letters, e.g. `"CTSF"` (colour, texture, size, fill) or `"TSF"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Similarities {
    /// Histogram intersection of 25-bin-per-channel colour histograms.
    pub colour: bool,
    /// Histogram intersection of the 8-orientation, 10-bin Gaussian-derivative histograms.
    pub texture: bool,
    /// `1 - (size_i + size_j) / size(image)`: merges small regions early.
    pub size: bool,
    /// `1 - (size(BB_ij) - size_i - size_j) / size(image)`: merges regions that fill each
    /// other's gaps.
    pub fill: bool,
}

impl Similarities {
    /// Colour + texture + size + fill.
    pub const CTSF: Self = Self {
        colour: true,
        texture: true,
        size: true,
        fill: true,
    };
    /// Texture + size + fill.
    pub const TSF: Self = Self {
        colour: false,
        texture: true,
        size: true,
        fill: true,
    };
}

impl TryFrom<String> for Similarities {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        let mut s = Self {
            colour: false,
            texture: false,
            size: false,
            fill: false,
        };
        for c in value.chars() {
            let flag = match c.to_ascii_uppercase() {
                'C' => &mut s.colour,
                'T' => &mut s.texture,
                'S' => &mut s.size,
                'F' => &mut s.fill,
                other => {
                    return Err(format!(
                        "similarity set {value:?}: {other:?} is none of C (colour), T (texture), \
                         S (size), F (fill)"
                    ));
                }
            };
            *flag = true;
        }
        if !(s.colour || s.texture || s.size || s.fill) {
            return Err("similarity set is empty: use letters from CTSF".into());
        }
        Ok(s)
    }
}

impl From<Similarities> for String {
    fn from(s: Similarities) -> String {
        [
            (s.colour, 'C'),
            (s.texture, 'T'),
            (s.size, 'S'),
            (s.fill, 'F'),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, c)| c)
        .collect()
    }
}

/// A pixel-aligned box: inclusive pixel bounds `x_min, y_min, x_max, y_max`.
pub(crate) type PixelBox = [u16; 4];

fn union_box(a: PixelBox, b: PixelBox) -> PixelBox {
    [
        a[0].min(b[0]),
        a[1].min(b[1]),
        a[2].max(b[2]),
        a[3].max(b[3]),
    ]
}

fn box_area(b: PixelBox) -> f32 {
    (b[2] as f32 - b[0] as f32 + 1.0) * (b[3] as f32 - b[1] as f32 + 1.0)
}

/// The initial regions of one segmentation: sizes, boxes, L1-normalised colour and texture
/// histograms, and which regions touch (8-neighbourhood).
pub(crate) struct InitialRegions {
    pub count: usize,
    pub image_size: f32,
    pub sizes: Vec<f32>,
    pub boxes: Vec<PixelBox>,
    pub colour: Vec<f32>,
    pub texture: Vec<f32>,
    /// Unordered pairs `(a, b)`, `a < b`, sorted and unique.
    pub adjacency: Vec<(u32, u32)>,
}

/// Region statistics of `seg`, with `colour_bins` (3 per pixel) and `texture_bins` (24 per
/// pixel) from [`super::colour`].
pub(crate) fn initial_regions(
    seg: &Segmentation,
    colour_bins: &[u8],
    texture_bins: &[u8],
) -> InitialRegions {
    let (w, h, n) = (seg.width, seg.height, seg.count);
    let mut sizes = vec![0u32; n];
    let mut boxes = vec![[u16::MAX, u16::MAX, 0, 0]; n];
    let mut colour_counts = vec![0u32; n * COLOUR_LEN];
    let mut texture_counts = vec![0u32; n * TEXTURE_LEN];
    for y in 0..h {
        for x in 0..w {
            let p = y * w + x;
            let r = seg.labels[p] as usize;
            sizes[r] += 1;
            let b = &mut boxes[r];
            let (xs, ys) = (x as u16, y as u16);
            b[0] = b[0].min(xs);
            b[1] = b[1].min(ys);
            b[2] = b[2].max(xs);
            b[3] = b[3].max(ys);
            let ch = &mut colour_counts[r * COLOUR_LEN..(r + 1) * COLOUR_LEN];
            for &bin in &colour_bins[3 * p..3 * p + 3] {
                ch[bin as usize] += 1;
            }
            let th = &mut texture_counts[r * TEXTURE_LEN..(r + 1) * TEXTURE_LEN];
            for &bin in &texture_bins[TEXTURE_MAPS * p..TEXTURE_MAPS * (p + 1)] {
                th[bin as usize] += 1;
            }
        }
    }
    let normalise = |counts: Vec<u32>, len: usize, per_pixel: usize| -> Vec<f32> {
        let mut out = vec![0.0f32; counts.len()];
        for r in 0..n {
            let total = (sizes[r] as usize * per_pixel).max(1) as f32;
            for (o, &c) in out[r * len..(r + 1) * len]
                .iter_mut()
                .zip(&counts[r * len..(r + 1) * len])
            {
                *o = c as f32 / total;
            }
        }
        out
    };
    let colour = normalise(colour_counts, COLOUR_LEN, 3);
    let texture = normalise(texture_counts, TEXTURE_LEN, TEXTURE_MAPS);

    let mut pairs: Vec<u64> = Vec::new();
    let labels = &seg.labels;
    let mut add = |a: u32, b: u32| {
        if a != b {
            let (lo, hi) = if a < b { (a, b) } else { (b, a) };
            pairs.push(((lo as u64) << 32) | hi as u64);
        }
    };
    for y in 0..h {
        for x in 0..w {
            let p = y * w + x;
            let a = labels[p];
            if x + 1 < w {
                add(a, labels[p + 1]);
                if y + 1 < h {
                    add(a, labels[p + w + 1]);
                }
            }
            if y + 1 < h {
                add(a, labels[p + w]);
                if x > 0 {
                    add(a, labels[p + w - 1]);
                }
            }
        }
    }
    pairs.sort_unstable();
    pairs.dedup();
    InitialRegions {
        count: n,
        image_size: (w * h) as f32,
        sizes: sizes.into_iter().map(|s| s as f32).collect(),
        boxes,
        colour,
        texture,
        adjacency: pairs
            .into_iter()
            .map(|p| ((p >> 32) as u32, p as u32))
            .collect(),
    }
}

/// Sum of element-wise minima (histogram intersection).
fn intersection(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i].min(y[i]);
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x.min(*y)).sum();
    acc.iter().sum::<f32>() + tail
}

/// A candidate merge in the priority queue: most similar first, ties by smaller ids.
struct Candidate {
    similarity: f32,
    a: u32,
    b: u32,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.similarity
            .total_cmp(&other.similarity)
            .then_with(|| other.a.cmp(&self.a))
            .then_with(|| other.b.cmp(&self.b))
    }
}

/// Every region of the hierarchy built from `init` with `similarities`, as boxes in creation
/// order: the initial regions first, then each merge (the last covers everything reachable).
pub(crate) fn hierarchical_grouping(
    init: &InitialRegions,
    similarities: Similarities,
) -> Vec<PixelBox> {
    let n = init.count;
    let total = (2 * n).saturating_sub(1).max(n);
    let mut sizes = Vec::with_capacity(total);
    sizes.extend_from_slice(&init.sizes);
    let mut boxes = Vec::with_capacity(total);
    boxes.extend_from_slice(&init.boxes);
    let mut colour = Vec::new();
    if similarities.colour {
        colour.reserve(total * COLOUR_LEN);
        colour.extend_from_slice(&init.colour);
    }
    let mut texture = Vec::new();
    if similarities.texture {
        texture.reserve(total * TEXTURE_LEN);
        texture.extend_from_slice(&init.texture);
    }
    let mut alive = vec![true; n];
    let mut neighbours: Vec<Vec<u32>> = vec![Vec::new(); n];
    for &(a, b) in &init.adjacency {
        neighbours[a as usize].push(b);
        neighbours[b as usize].push(a);
    }
    let image_size = init.image_size.max(1.0);
    let similarity =
        |sizes: &[f32], boxes: &[PixelBox], colour: &[f32], texture: &[f32], a: usize, b: usize| {
            let mut s = 0.0;
            if similarities.colour {
                s += intersection(
                    &colour[a * COLOUR_LEN..(a + 1) * COLOUR_LEN],
                    &colour[b * COLOUR_LEN..(b + 1) * COLOUR_LEN],
                );
            }
            if similarities.texture {
                s += intersection(
                    &texture[a * TEXTURE_LEN..(a + 1) * TEXTURE_LEN],
                    &texture[b * TEXTURE_LEN..(b + 1) * TEXTURE_LEN],
                );
            }
            if similarities.size {
                s += 1.0 - (sizes[a] + sizes[b]) / image_size;
            }
            if similarities.fill {
                let bb = box_area(union_box(boxes[a], boxes[b]));
                s += 1.0 - (bb - sizes[a] - sizes[b]) / image_size;
            }
            s
        };
    let mut heap: BinaryHeap<Candidate> = init
        .adjacency
        .iter()
        .map(|&(a, b)| Candidate {
            similarity: similarity(&sizes, &boxes, &colour, &texture, a as usize, b as usize),
            a,
            b,
        })
        .collect();
    let mut merged_neighbours: Vec<u32> = Vec::new();
    while let Some(Candidate { a, b, .. }) = heap.pop() {
        let (a, b) = (a as usize, b as usize);
        if !alive[a] || !alive[b] {
            continue;
        }
        let t = sizes.len();
        alive[a] = false;
        alive[b] = false;
        alive.push(true);
        let (sa, sb) = (sizes[a], sizes[b]);
        let st = sa + sb;
        sizes.push(st);
        boxes.push(union_box(boxes[a], boxes[b]));
        let (wa, wb) = (sa / st, sb / st);
        if similarities.colour {
            for i in 0..COLOUR_LEN {
                let v = colour[a * COLOUR_LEN + i] * wa + colour[b * COLOUR_LEN + i] * wb;
                colour.push(v);
            }
        }
        if similarities.texture {
            for i in 0..TEXTURE_LEN {
                let v = texture[a * TEXTURE_LEN + i] * wa + texture[b * TEXTURE_LEN + i] * wb;
                texture.push(v);
            }
        }
        // The new region's neighbours: the live neighbours of both (dead entries are regions
        // merged since; their live successors were added when they were made).
        merged_neighbours.clear();
        merged_neighbours.extend(
            neighbours[a]
                .iter()
                .chain(&neighbours[b])
                .copied()
                .filter(|&r| alive[r as usize]),
        );
        merged_neighbours.sort_unstable();
        merged_neighbours.dedup();
        neighbours[a] = Vec::new();
        neighbours[b] = Vec::new();
        for &r in &merged_neighbours {
            let list = &mut neighbours[r as usize];
            list.retain(|&x| alive[x as usize]);
            list.push(t as u32);
            heap.push(Candidate {
                similarity: similarity(&sizes, &boxes, &colour, &texture, t, r as usize),
                a: r,
                b: t as u32,
            });
        }
        neighbours.push(merged_neighbours.clone());
    }
    boxes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similarity_sets_parse_and_print() {
        let s = Similarities::try_from("tsf".to_string()).unwrap();
        assert_eq!(s, Similarities::TSF);
        assert_eq!(String::from(Similarities::CTSF), "CTSF");
        assert!(Similarities::try_from("CX".to_string()).is_err());
        assert!(Similarities::try_from(String::new()).is_err());
    }

    #[test]
    fn intersection_of_equal_histograms_is_their_mass() {
        let a: Vec<f32> = (0..75).map(|i| i as f32 / 2775.0).collect();
        assert!((intersection(&a, &a) - 1.0).abs() < 1e-5);
        let b = vec![0.0; 75];
        assert_eq!(intersection(&a, &b), 0.0);
    }

    #[test]
    fn grouping_makes_one_region_per_merge() {
        // Three vertical stripes: 0 | 1 | 2, each 2 pixels wide.
        let (w, h) = (6, 3);
        let labels: Vec<u32> = (0..w * h).map(|p| ((p % w) / 2) as u32).collect();
        let seg = Segmentation {
            width: w,
            height: h,
            labels,
            count: 3,
        };
        let colour = vec![0u8; 3 * w * h];
        let texture: Vec<u8> = (0..w * h)
            .flat_map(|_| (0..TEXTURE_MAPS).map(|m| (m * 10) as u8))
            .collect();
        let init = initial_regions(&seg, &colour, &texture);
        assert_eq!(init.adjacency, vec![(0, 1), (1, 2)]);
        assert_eq!(init.boxes[1], [2, 0, 3, 2]);
        let boxes = hierarchical_grouping(&init, Similarities::CTSF);
        assert_eq!(boxes.len(), 5);
        assert_eq!(boxes[4], [0, 0, 5, 2]);
    }
}
