//! A folder of per-image proposal files, so that selective search runs once per image and
//! configuration.
//!
//! Each file is named by a 64-bit key hashed from the image file's bytes and the configuration
//! (and the version of the algorithm), and holds, little-endian: the magic `KILNSSP1`, the key,
//! the box count (u32), the boxes as `x1, y1, x2, y2` f32s, and an FNV-1a checksum of everything
//! before it. Files are written under a temporary name and renamed; a file that is missing,
//! truncated, for another key or fails its checksum reads as absent, so it is recomputed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::SelectiveSearchConfig;
use crate::data::BoundingBox;
use crate::{DetectError, Result};

const MAGIC: &[u8; 8] = b"KILNSSP1";
/// Changes whenever the algorithm's output for a configuration changes, invalidating old files.
const ALGORITHM_VERSION: &str = "kiln selective search 1";
const HEADER: usize = 8 + 8 + 4;

/// FNV-1a, 64 bits.
fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = seed;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// A folder of cached proposals for one [`SelectiveSearchConfig`].
#[derive(Clone, Debug)]
pub struct ProposalCache {
    dir: PathBuf,
    config_hash: u64,
}

impl ProposalCache {
    /// A cache in `dir` (created if missing) for `config`. Settings that do not change the
    /// proposals ([`SelectiveSearchConfig::parallel_strategies`]) do not change the keys.
    pub fn new(dir: &Path, config: &SelectiveSearchConfig) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| DetectError::io(dir, e))?;
        let mut keyed = config.clone();
        keyed.parallel_strategies = false;
        let text = serde_json::to_string(&keyed)
            .map_err(|e| DetectError::invalid("selective search config", e.to_string()))?;
        let config_hash = fnv1a(
            fnv1a(FNV_OFFSET, ALGORITHM_VERSION.as_bytes()),
            text.as_bytes(),
        );
        Ok(Self {
            dir: dir.to_path_buf(),
            config_hash,
        })
    }

    /// The key of an image whose file holds `image_bytes`.
    pub fn key(&self, image_bytes: &[u8]) -> u64 {
        fnv1a(self.config_hash, image_bytes)
    }

    /// Where the proposals of `key` are stored.
    pub fn path(&self, key: u64) -> PathBuf {
        self.dir.join(format!("{key:016x}.ssp"))
    }

    /// The cached proposals of `key`, or `None` when there is no valid file for it.
    pub fn load(&self, key: u64) -> Option<Vec<BoundingBox>> {
        let bytes = std::fs::read(self.path(key)).ok()?;
        decode(&bytes, key)
    }

    /// Stores `boxes` for `key` atomically (temporary file, then rename).
    pub fn store(&self, key: u64, boxes: &[BoundingBox]) -> Result<()> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = self.path(key);
        let tmp = self.dir.join(format!(
            ".{key:016x}.{}.{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = std::fs::write(&tmp, encode(key, boxes))
            .map_err(|e| DetectError::io(&tmp, e))
            .and_then(|()| std::fs::rename(&tmp, &path).map_err(|e| DetectError::io(&path, e)));
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

fn encode(key: u64, boxes: &[BoundingBox]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + 16 * boxes.len() + 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&key.to_le_bytes());
    out.extend_from_slice(&(boxes.len() as u32).to_le_bytes());
    for b in boxes {
        for v in [b.x1, b.y1, b.x2, b.y2] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    let sum = fnv1a(FNV_OFFSET, &out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

fn decode(bytes: &[u8], key: u64) -> Option<Vec<BoundingBox>> {
    if bytes.len() < HEADER + 8 || &bytes[..8] != MAGIC {
        return None;
    }
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
    if word(8) != key {
        return None;
    }
    let count = u32::from_le_bytes(bytes[16..20].try_into().ok()?) as usize;
    let end = HEADER.checked_add(count.checked_mul(16)?)?;
    if bytes.len() != end + 8 || word(end) != fnv1a(FNV_OFFSET, &bytes[..end]) {
        return None;
    }
    let values: Vec<f32> = bytes[HEADER..end]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if values.iter().any(|v| !v.is_finite()) {
        return None;
    }
    Some(
        values
            .chunks_exact(4)
            .map(|c| BoundingBox {
                x1: c[0],
                y1: c[1],
                x2: c[2],
                y2: c[3],
            })
            .collect(),
    )
}
