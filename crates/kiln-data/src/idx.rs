//! The IDX format of MNIST and Fashion-MNIST, plain or gzipped.
//!
//! An IDX file starts with two zero bytes, a type code (`0x08` for unsigned bytes), the number of
//! dimensions, then each dimension as a big-endian `u32`, then the data.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::{DataError, ImageSet, Result, TrainTest};

/// Where Debian's `dataset-fashion-mnist` package installs Fashion-MNIST.
pub const DEBIAN_FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

/// Fashion-MNIST's ten classes in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// A parsed IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// The dimensions, outermost first.
    pub dims: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<u8>,
}

/// Parses IDX bytes (already decompressed); `path` is only used in error messages.
pub fn parse_idx(bytes: &[u8], path: &Path) -> Result<IdxArray> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(DataError::format(
            path,
            "bad magic number: not an IDX file (expected two zero bytes, a type code and a rank)",
        ));
    }
    if bytes[2] != 0x08 {
        return Err(DataError::format(
            path,
            format!(
                "IDX type code {:#04x}; only unsigned bytes (0x08) are supported",
                bytes[2]
            ),
        ));
    }
    let rank = bytes[3] as usize;
    let header = 4 + 4 * rank;
    if rank == 0 || bytes.len() < header {
        return Err(DataError::format(path, "truncated IDX header"));
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|d| u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| DataError::format(path, "IDX dimensions overflow"))?;
    let data = &bytes[header..];
    if data.len() != expected {
        return Err(DataError::format(
            path,
            format!(
                "header promises {expected} values ({dims:?}) but the file holds {} (truncated or corrupt)",
                data.len()
            ),
        ));
    }
    Ok(IdxArray {
        dims,
        data: data.to_vec(),
    })
}

/// Reads an IDX file, decompressing it when its name ends in `.gz`.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let raw = fs::read(path).map_err(|e| DataError::io(path, e))?;
    let bytes = if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| DataError::format(path, format!("corrupt gzip stream: {e}")))?;
        out
    } else {
        raw
    };
    parse_idx(&bytes, path)
}

/// Combines an image array `[n, h, w]` and a label array `[n]` into an [`ImageSet`].
pub fn idx_image_set(
    images: IdxArray,
    labels: IdxArray,
    classes: Vec<String>,
    images_path: &Path,
    labels_path: &Path,
) -> Result<ImageSet> {
    let [n, h, w] = images.dims[..] else {
        return Err(DataError::format(
            images_path,
            format!("expected 3 dimensions [n, h, w], found {:?}", images.dims),
        ));
    };
    if n == 0 || h == 0 || w == 0 {
        return Err(DataError::format(
            images_path,
            format!(
                "holds no image (dimensions {:?}); the file is empty or was cut short",
                images.dims
            ),
        ));
    }
    if labels.dims != [n] {
        return Err(DataError::format(
            labels_path,
            format!(
                "expected {n} labels to match the images, found {:?}",
                labels.dims
            ),
        ));
    }
    if let Some((i, l)) = labels
        .data
        .iter()
        .enumerate()
        .find(|(_, l)| **l as usize >= classes.len())
    {
        return Err(DataError::format(
            labels_path,
            format!(
                "label {l} at index {i} is out of range for {} classes",
                classes.len()
            ),
        ));
    }
    ImageSet::new(
        w,
        h,
        1,
        images.data,
        labels.data.iter().map(|&l| l as usize).collect(),
        classes,
    )
}

/// Finds `stem` or `stem.gz` in `dir`.
fn find_idx(dir: &Path, stem: &str) -> Option<PathBuf> {
    [stem.to_string(), format!("{stem}.gz")]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

/// Whether `dir` holds MNIST-style IDX files (`train-images-idx3-ubyte[.gz]`).
pub fn is_idx_dir(dir: &Path) -> bool {
    find_idx(dir, "train-images-idx3-ubyte").is_some()
}

/// Class names for an IDX directory: `classes.txt` (one a line) when present, Fashion-MNIST's
/// when the path mentions "fashion", else the digits 0–9.
fn idx_classes(dir: &Path) -> Result<Vec<String>> {
    let listed = dir.join("classes.txt");
    if listed.is_file() {
        let text = fs::read_to_string(&listed).map_err(|e| DataError::io(&listed, e))?;
        return Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect());
    }
    let fashion = dir.to_string_lossy().to_lowercase().contains("fashion");
    Ok(if fashion {
        FASHION_MNIST_CLASSES
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        (0..10).map(|d| d.to_string()).collect()
    })
}

/// Loads `train-*` and `t10k-*` image/label pairs from an MNIST-layout directory.
pub fn load_idx_dir(dir: &Path) -> Result<TrainTest> {
    let classes = idx_classes(dir)?;
    let pair = |prefix: &str| -> Result<ImageSet> {
        let locate = |stem: String| {
            find_idx(dir, &stem).ok_or_else(|| DataError::NotFound {
                path: dir.join(&stem),
                reason: format!("missing {stem} (or {stem}.gz) in the IDX directory"),
            })
        };
        let images_path = locate(format!("{prefix}-images-idx3-ubyte"))?;
        let labels_path = locate(format!("{prefix}-labels-idx1-ubyte"))?;
        idx_image_set(
            read_idx(&images_path)?,
            read_idx(&labels_path)?,
            classes.clone(),
            &images_path,
            &labels_path,
        )
    };
    let name = if dir.to_string_lossy().to_lowercase().contains("fashion") {
        "fashion-mnist"
    } else {
        "mnist"
    };
    Ok(TrainTest {
        name: name.into(),
        train: pair("train")?,
        test: Some(pair("t10k")?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    pub(crate) fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            out.extend(d.to_be_bytes());
        }
        out.extend_from_slice(data);
        out
    }

    fn write_gz(path: &Path, bytes: &[u8]) {
        let mut gz =
            flate2::write::GzEncoder::new(fs::File::create(path).unwrap(), Default::default());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap();
    }

    #[test]
    fn parses_images_and_labels_gz_or_plain() {
        let dir = tempfile::tempdir().unwrap();
        let fashion = dir.path().join("fashion");
        fs::create_dir(&fashion).unwrap();
        let pixels: Vec<u8> = (0..2 * 2 * 3).collect();
        write_gz(
            &fashion.join("train-images-idx3-ubyte.gz"),
            &idx_bytes(&[3, 2, 2], &pixels),
        );
        write_gz(
            &fashion.join("train-labels-idx1-ubyte.gz"),
            &idx_bytes(&[3], &[0, 9, 4]),
        );
        fs::write(
            fashion.join("t10k-images-idx3-ubyte"),
            idx_bytes(&[1, 2, 2], &[1, 2, 3, 4]),
        )
        .unwrap();
        fs::write(
            fashion.join("t10k-labels-idx1-ubyte"),
            idx_bytes(&[1], &[2]),
        )
        .unwrap();
        let data = load_idx_dir(&fashion).unwrap();
        assert_eq!(data.name, "fashion-mnist");
        assert_eq!(data.train.labels, vec![0, 9, 4]);
        assert_eq!(data.train.classes[9], "Ankle boot");
        assert_eq!(data.train.pixels_of(1), &[4, 5, 6, 7]);
        assert_eq!(data.test.unwrap().pixels, vec![1, 2, 3, 4]);
    }

    #[test]
    fn bad_magic_truncation_and_label_range_are_errors() {
        let p = Path::new("x-idx3-ubyte");
        let err = parse_idx(&[1, 2, 3, 4, 5], p).unwrap_err();
        assert!(err.to_string().contains("magic"), "{err}");
        let mut bytes = idx_bytes(&[2, 2, 2], &[0; 8]);
        bytes.pop();
        let err = parse_idx(&bytes, p).unwrap_err();
        assert!(err.to_string().contains("truncated") && err.to_string().contains("x-idx3-ubyte"));
        let images = parse_idx(&idx_bytes(&[1, 1, 1], &[0]), p).unwrap();
        let labels = parse_idx(&idx_bytes(&[1], &[12]), p).unwrap();
        let classes = (0..10).map(|d| d.to_string()).collect();
        let err = idx_image_set(images, labels, classes, p, Path::new("labels")).unwrap_err();
        assert!(err.to_string().contains("label 12"), "{err}");
        // A set of no images names its file.
        let images = parse_idx(&idx_bytes(&[0, 28, 28], &[]), p).unwrap();
        let labels = parse_idx(&idx_bytes(&[0], &[]), p).unwrap();
        let classes = (0..10).map(|d| d.to_string()).collect();
        let err = idx_image_set(images, labels, classes, p, Path::new("labels")).unwrap_err();
        assert!(
            err.to_string().contains("x-idx3-ubyte") && err.to_string().contains("no image"),
            "{err}"
        );
    }

    #[test]
    fn corrupt_gzip_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train-images-idx3-ubyte.gz");
        fs::write(&path, b"\x1f\x8b\x08\x00garbage").unwrap();
        let err = read_idx(&path).unwrap_err();
        assert!(err.to_string().contains("gzip"), "{err}");
    }
}
