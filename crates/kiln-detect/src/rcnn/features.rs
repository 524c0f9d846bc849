//! CNN features of warped proposals from the frozen backbone, and a per-image on-disk cache of
//! them.
//!
//! Every proposal is warped with context ([`super::warp`]), normalised with ImageNet's
//! statistics and passed through the backbone; its last feature map averaged over the whole
//! warp (the pooled embedding, 1280 numbers for EfficientNet-Lite0) is the feature, followed,
//! with a `grid` above 1, by the map averaged over each cell of a `grid`×`grid` layout (as
//! adaptive average pooling splits it). The layout is what R-CNN's `pool5` features keep: a
//! global average alone scores a part of an object much like the whole of it. The raw features are cached; scaling (the "feature
//! norm") is applied when they are used, so changing it does not invalidate the cache.
//!
//! A cache file is named by a 64-bit key hashed from the image's bytes, the boxes, the warp and
//! the backbone (and a format version), and holds, little-endian: the magic `KILNRCF1`, the
//! key, the box count and feature size (u32 each), the boxes (`x1, y1, x2, y2` f32s), the
//! features (f32s, one row per box) and an FNV-1a checksum of everything before it. Files are
//! written under a temporary name and renamed; a missing, truncated, foreign or corrupt file
//! reads as absent, so its features are recomputed and the file rewritten.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use kiln_data::Image;
use kiln_nets::Backbone;
use kiln_nets::zoo::Network;
use rayon::prelude::*;

use super::config::WarpConfig;
use super::warp::{mean_rgb, warp_box};
use crate::batch::normalise_into;
use crate::data::BoundingBox;
use crate::{DetectError, Result};

const MAGIC: &[u8; 8] = b"KILNRCF1";
/// Changes whenever the features of a configuration change, invalidating old files.
const FORMAT_VERSION: &str = "kiln rcnn features 1";
const HEADER: usize = 8 + 8 + 4 + 4;
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a, 64 bits, continuing from `seed`.
fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = seed;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Features of a list of boxes: `len()` rows of `dim` numbers, row-major.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Features {
    /// Numbers per box.
    pub dim: usize,
    /// `rows × dim` values.
    pub values: Vec<f32>,
}

impl Features {
    /// The number of boxes.
    pub fn len(&self) -> usize {
        self.values.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Whether there are no boxes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The features of box `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }

    /// The features L2-normalised and multiplied by `norm` (R-CNN's "feature norm" trick:
    /// every feature vector gets the same length, so one SVM `C` suits every backbone).
    pub fn scaled(mut self, norm: f64) -> Self {
        if self.dim > 0 {
            for row in self.values.chunks_exact_mut(self.dim) {
                let len = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
                let k = if len > 0.0 { (norm / len) as f32 } else { 0.0 };
                row.iter_mut().for_each(|v| *v *= k);
            }
        }
        self
    }
}

/// Warps boxes of an image and runs them through the frozen backbone.
#[derive(Clone, Debug)]
pub struct Extractor {
    net: Network,
    warp: WarpConfig,
    grid: usize,
    batch: usize,
    device: Device,
    identity: String,
}

/// `[channels, height, width]` maps (row-major, one after another) averaged over the whole map
/// and then over each cell of a `grid`×`grid` layout, cell `i` of `n` rows covering rows
/// `⌊i·n/grid⌋ .. ⌈(i+1)·n/grid⌉` (adaptive average pooling; cells overlap when `grid` does not
/// divide `n`): `channels · (1 + grid²)` numbers per map, channel-major within each part. A
/// `grid` of 1 gives the global average alone.
pub fn pool_grid(maps: &[f32], [channels, height, width]: [usize; 3], grid: usize) -> Vec<f32> {
    let plane = height * width;
    let span = |i: usize, n: usize| {
        (
            i * n / grid,
            ((i + 1) * n).div_ceil(grid).max(i * n / grid + 1).min(n),
        )
    };
    let mut cells = vec![(0, height, 0, width)];
    if grid > 1 {
        for gy in 0..grid {
            for gx in 0..grid {
                let ((y0, y1), (x0, x1)) = (span(gy, height), span(gx, width));
                cells.push((y0, y1, x0, x1));
            }
        }
    }
    let mut out = Vec::with_capacity(maps.len() / plane.max(1) * cells.len());
    for map in maps.chunks_exact(channels * plane) {
        for &(y0, y1, x0, x1) in &cells {
            let count = ((y1 - y0) * (x1 - x0)).max(1) as f32;
            for c in 0..channels {
                let values = &map[c * plane..(c + 1) * plane];
                let sum: f32 = (y0..y1)
                    .map(|y| values[y * width + x0..y * width + x1].iter().sum::<f32>())
                    .sum();
                out.push(sum / count);
            }
        }
    }
    out
}

impl Extractor {
    /// An extractor running `net` (put in inference mode) on `batch` warps at a time, pooling
    /// its last map globally and, with `grid` above 1, over a `grid`×`grid` layout too (see
    /// [`pool_grid`]). `identity` names the weights (it keys the cache: give each backbone its
    /// own).
    pub fn new(
        net: Network,
        warp: WarpConfig,
        grid: usize,
        batch: usize,
        device: &Device,
        identity: &str,
    ) -> Self {
        let grid = grid.max(1);
        let layout = if grid > 1 {
            format!("|grid {grid}")
        } else {
            String::new()
        };
        Self {
            net: net.valid(),
            warp,
            grid,
            batch: batch.max(1),
            device: device.clone(),
            identity: format!("{identity}|warp {}+{}{layout}", warp.size, warp.padding),
        }
    }

    /// What the features depend on besides the image and boxes: the backbone and the warp.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Numbers per feature vector: the backbone's embedding size, or with a grid, the channels
    /// of its last map times `1 + grid²`.
    pub fn dim(&self) -> usize {
        if self.grid > 1 {
            let channels = self.net.feature_levels().last().map_or(0, |l| l.channels);
            channels * (1 + self.grid * self.grid)
        } else {
            self.net.feature_size()
        }
    }

    /// The features of `boxes` of the RGB `image`, one row per box.
    pub fn extract(&self, image: &Image, boxes: &[BoundingBox]) -> Result<Features> {
        let fill = mean_rgb();
        let size = self.warp.size;
        let mut out = Features {
            dim: self.dim(),
            values: Vec::with_capacity(boxes.len() * self.dim()),
        };
        let to_vec = |t: Tensor<4>| {
            t.into_data()
                .convert::<f32>()
                .try_into_vec_as::<f32>()
                .map_err(|e| DetectError::invalid("backbone features", format!("{e:?}")))
        };
        for chunk in boxes.chunks(self.batch) {
            let warps: Vec<Image> = chunk
                .par_iter()
                .map(|b| warp_box(image, b, &self.warp, fill))
                .collect();
            let refs: Vec<&Image> = warps.iter().collect();
            let (values, shape) = normalise_into(&refs, [size, size]);
            let input = Tensor::<4>::from_data(TensorData::new(values, shape), &self.device);
            if self.grid > 1 {
                let map = self.net.feature_maps(input).coarsest().clone();
                let [_, channels, h, w] = map.dims();
                out.values
                    .extend(pool_grid(&to_vec(map)?, [channels, h, w], self.grid));
            } else {
                let embedding = self.net.forward_embedding(input);
                let [n, dim] = embedding.dims();
                out.values
                    .extend(to_vec(embedding.reshape([n, dim, 1, 1]))?);
            }
        }
        if out.values.len() != boxes.len() * out.dim {
            return Err(DetectError::invalid(
                "backbone features",
                format!(
                    "{} numbers for {} boxes of {}",
                    out.values.len(),
                    boxes.len(),
                    out.dim
                ),
            ));
        }
        Ok(out)
    }
}

/// A folder of per-image feature files for one backbone and warp.
#[derive(Clone, Debug)]
pub struct FeatureCache {
    dir: PathBuf,
    salt: u64,
}

impl FeatureCache {
    /// A cache in `dir` (created if missing) for features of the given `identity`
    /// ([`Extractor::identity`]).
    pub fn new(dir: &Path, identity: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| DetectError::io(dir, e))?;
        let salt = fnv1a(
            fnv1a(FNV_OFFSET, FORMAT_VERSION.as_bytes()),
            identity.as_bytes(),
        );
        Ok(Self {
            dir: dir.to_path_buf(),
            salt,
        })
    }

    /// The key of `boxes` of the image whose file (or pixels) are `image_bytes`.
    pub fn key(&self, image_bytes: &[u8], boxes: &[BoundingBox]) -> u64 {
        let mut h = fnv1a(self.salt, image_bytes);
        for b in boxes {
            for v in [b.x1, b.y1, b.x2, b.y2] {
                h = fnv1a(h, &v.to_le_bytes());
            }
        }
        h
    }

    /// Where the features of `key` are stored.
    pub fn path(&self, key: u64) -> PathBuf {
        self.dir.join(format!("{key:016x}.rcf"))
    }

    /// The cached features of `key` for `boxes`, or `None` when there is no valid file for them.
    pub fn load(&self, key: u64, boxes: &[BoundingBox]) -> Option<Features> {
        let bytes = std::fs::read(self.path(key)).ok()?;
        decode(&bytes, key, boxes)
    }

    /// Stores `features` of `boxes` for `key` atomically (temporary file, then rename).
    pub fn store(&self, key: u64, boxes: &[BoundingBox], features: &Features) -> Result<()> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        if features.len() != boxes.len() {
            return Err(DetectError::invalid(
                "feature cache",
                format!("{} feature rows for {} boxes", features.len(), boxes.len()),
            ));
        }
        let path = self.path(key);
        let tmp = self.dir.join(format!(
            ".{key:016x}.{}.{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = std::fs::write(&tmp, encode(key, boxes, features))
            .map_err(|e| DetectError::io(&tmp, e))
            .and_then(|()| std::fs::rename(&tmp, &path).map_err(|e| DetectError::io(&path, e)));
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// The features of `boxes` from the cache, or computed by `extractor` on the image that
    /// `decode` gives (only called on a miss) and stored. `image_bytes` key the image. Also
    /// says whether the cache had them.
    pub fn get_or_compute(
        &self,
        extractor: &Extractor,
        image_bytes: &[u8],
        boxes: &[BoundingBox],
        decode: impl FnOnce() -> Result<Image>,
    ) -> Result<(Features, bool)> {
        let key = self.key(image_bytes, boxes);
        if let Some(features) = self.load(key, boxes) {
            return Ok((features, true));
        }
        let path = self.path(key);
        if path.exists() {
            eprintln!(
                "note: {} is not a valid feature file for these boxes; recomputing it",
                path.display()
            );
        }
        let features = extractor.extract(&decode()?, boxes)?;
        self.store(key, boxes, &features)?;
        Ok((features, false))
    }
}

fn encode(key: u64, boxes: &[BoundingBox], features: &Features) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + 16 * boxes.len() + 4 * features.values.len() + 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&key.to_le_bytes());
    out.extend_from_slice(&(boxes.len() as u32).to_le_bytes());
    out.extend_from_slice(&(features.dim as u32).to_le_bytes());
    for b in boxes {
        for v in [b.x1, b.y1, b.x2, b.y2] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    for v in &features.values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let sum = fnv1a(FNV_OFFSET, &out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

fn decode(bytes: &[u8], key: u64, boxes: &[BoundingBox]) -> Option<Features> {
    if bytes.len() < HEADER + 8 || &bytes[..8] != MAGIC {
        return None;
    }
    let u64_at = |at: usize| {
        bytes
            .get(at..at + 8)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let u32_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_le_bytes)
    };
    if u64_at(8)? != key {
        return None;
    }
    let (count, dim) = (u32_at(16)? as usize, u32_at(20)? as usize);
    if count != boxes.len() || (dim == 0 && count > 0) {
        return None;
    }
    let box_end = HEADER.checked_add(count.checked_mul(16)?)?;
    let end = box_end.checked_add(count.checked_mul(dim)?.checked_mul(4)?)?;
    if bytes.len() != end.checked_add(8)? || u64_at(end)? != fnv1a(FNV_OFFSET, &bytes[..end]) {
        return None;
    }
    let floats = |range: std::ops::Range<usize>| {
        bytes[range]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect::<Vec<f32>>()
    };
    let stored = floats(HEADER..box_end);
    let same = stored
        .chunks_exact(4)
        .zip(boxes)
        .all(|(s, b)| s == [b.x1, b.y1, b.x2, b.y2]);
    let values = floats(box_end..end);
    (same && values.iter().all(|v| v.is_finite())).then_some(Features { dim, values })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxes() -> Vec<BoundingBox> {
        vec![
            BoundingBox {
                x1: 0.0,
                y1: 0.0,
                x2: 10.0,
                y2: 10.0,
            },
            BoundingBox {
                x1: 2.5,
                y1: 3.0,
                x2: 7.0,
                y2: 9.5,
            },
        ]
    }

    /// A tiny ConvNet extractor (no shared data): 32-pixel warps.
    fn extractor() -> Extractor {
        grid_extractor(1)
    }

    fn grid_extractor(grid: usize) -> Extractor {
        use kiln_nets::zoo::{Geometry, ModelSpec};
        let device = Device::flex();
        let net = ModelSpec::default()
            .build(Geometry::new(3, 32, 32, 2), None, &device)
            .expect("default spec builds");
        Extractor::new(
            net,
            WarpConfig {
                size: 32,
                padding: 4,
            },
            grid,
            1,
            &device,
            "test convnet",
        )
    }

    #[test]
    fn grid_pooling_averages_the_whole_map_then_each_cell() {
        // Two channels of a 3×3 map: channel 0 holds 0..9, channel 1 is all ones.
        let mut map: Vec<f32> = (0..9).map(|v| v as f32).collect();
        map.extend([1.0; 9]);
        assert_eq!(pool_grid(&map, [2, 3, 3], 1), vec![4.0, 1.0]);
        // A 2×2 grid on 3 rows: rows 0..2 and 1..3 (overlapping), alike for columns.
        let pooled = pool_grid(&map, [2, 3, 3], 2);
        assert_eq!(pooled.len(), 2 * 5);
        assert_eq!(&pooled[..2], &[4.0, 1.0]);
        // Top-left cell: values 0, 1, 3, 4; bottom-right: 4, 5, 7, 8.
        assert_eq!(&pooled[2..4], &[2.0, 1.0]);
        assert_eq!(&pooled[8..10], &[6.0, 1.0]);
        // A grid as fine as the map gives each position; two maps are pooled one after another.
        let fine = pool_grid(&[map.clone(), map].concat(), [2, 3, 3], 3);
        assert_eq!(fine.len(), 2 * 2 * 10);
        assert_eq!(fine[2 + 2 * 5], 5.0, "channel 0 of cell (1, 2)");
        assert_eq!(&fine[20..22], &[4.0, 1.0]);
    }

    #[test]
    fn grid_features_have_their_own_size_and_cache_keys() {
        let (plain, grid) = (extractor(), grid_extractor(2));
        let channels = plain.net.feature_levels().last().unwrap().channels;
        assert_eq!(grid.dim(), 5 * channels);
        assert_ne!(plain.identity(), grid.identity());
        let features = grid
            .extract(&Image::filled(16, 16, 3, 90), &boxes())
            .unwrap();
        assert_eq!((features.len(), features.dim), (2, grid.dim()));
        assert!(features.values.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn features_scale_to_the_feature_norm() {
        let f = Features {
            dim: 2,
            values: vec![3.0, 4.0, 0.0, 0.0],
        }
        .scaled(20.0);
        assert_eq!(f.values, vec![12.0, 16.0, 0.0, 0.0]);
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn the_cache_round_trips_and_a_corrupt_file_is_recomputed() {
        let dir = tempfile::tempdir().unwrap();
        let ex = extractor();
        let cache = FeatureCache::new(dir.path(), ex.identity()).unwrap();
        let image = Image::filled(12, 12, 3, 90);
        let bytes = b"image file bytes";
        let decoded = std::cell::Cell::new(0);
        let decode = || {
            decoded.set(decoded.get() + 1);
            Ok(image.clone())
        };
        let (first, hit) = cache.get_or_compute(&ex, bytes, &boxes(), decode).unwrap();
        assert!(!hit);
        assert_eq!(first.len(), 2);
        assert!(first.dim > 0);
        // Batched extraction gives the rows one-at-a-time extraction gives.
        let batched = Extractor {
            batch: 2,
            ..ex.clone()
        }
        .extract(&image, &boxes())
        .unwrap();
        for (a, b) in batched.values.iter().zip(&first.values) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
        // A second look-up reads the file: same features, no decoding.
        let (again, hit) = cache.get_or_compute(&ex, bytes, &boxes(), decode).unwrap();
        assert!(hit);
        assert_eq!(again, first);
        assert_eq!(decoded.get(), 1);
        // Other boxes or another image are other keys.
        let key = cache.key(bytes, &boxes());
        assert_ne!(key, cache.key(bytes, &boxes()[..1]));
        assert_ne!(key, cache.key(b"other bytes", &boxes()));
        // Every kind of damage reads as absent and is recomputed, not a panic.
        let path = cache.path(key);
        let good = std::fs::read(&path).unwrap();
        let mut flipped = good.clone();
        flipped[HEADER + 20] ^= 0x40;
        let damaged: Vec<Vec<u8>> = vec![
            good[..good.len() / 2].to_vec(),
            flipped,
            b"not a feature file".to_vec(),
            Vec::new(),
            [&good[..16], &[0xff; 8][..], &good[24..]].concat(),
        ];
        for bad in damaged {
            std::fs::write(&path, &bad).unwrap();
            assert_eq!(cache.load(key, &boxes()), None);
            let (again, hit) = cache.get_or_compute(&ex, bytes, &boxes(), decode).unwrap();
            assert!(!hit);
            assert_eq!(again, first);
            assert_eq!(std::fs::read(&path).unwrap(), good, "the file is rewritten");
        }
        // A file for other boxes under this key (a hash collision) is not used either.
        assert_eq!(decode_check(&good, key), None);
    }

    fn decode_check(bytes: &[u8], key: u64) -> Option<Features> {
        decode(bytes, key, &boxes()[..1])
    }
}
