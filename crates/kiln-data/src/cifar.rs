//! CIFAR-10 in its official binary release (`cifar-10-binary.tar.gz`).
//!
//! Each batch file holds records of 1 label byte followed by 3,072 pixel bytes: the 1,024 red
//! values of the 32×32 image row by row, then green, then blue.

use std::fs;
use std::path::{Path, PathBuf};

use crate::download::{self, Checksum, RemoteFile};
use crate::{DataError, ImageSet, Result, TrainTest};

/// The ten CIFAR-10 classes in label order.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// The official binary release.
pub const CIFAR10_BINARY: RemoteFile = RemoteFile {
    url: "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    file_name: "cifar-10-binary.tar.gz",
    checksum: Checksum::Md5("c32a1d4ab5d03f1284b67883e8d87530"),
};

const SIDE: usize = 32;
const PLANE: usize = SIDE * SIDE;
const RECORD: usize = 1 + 3 * PLANE;
const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
const TEST_FILE: &str = "test_batch.bin";

/// Whether `dir` looks like an extracted binary release (it holds `data_batch_1.bin`).
pub fn is_cifar10_binary_dir(dir: &Path) -> bool {
    dir.join(TRAIN_FILES[0]).is_file()
}

/// Parses the bytes of one batch file; `path` is only used in error messages.
pub fn parse_cifar10_batch(bytes: &[u8], path: &Path) -> Result<ImageSet> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
        return Err(DataError::format(
            path,
            format!(
                "{} bytes is not a whole number of {RECORD}-byte CIFAR-10 records (truncated or not a CIFAR-10 batch)",
                bytes.len()
            ),
        ));
    }
    let n = bytes.len() / RECORD;
    let mut pixels = vec![0u8; n * 3 * PLANE];
    let mut labels = Vec::with_capacity(n);
    for (i, record) in bytes.chunks_exact(RECORD).enumerate() {
        let label = record[0] as usize;
        if label >= CIFAR10_CLASSES.len() {
            return Err(DataError::format(
                path,
                format!("record {i} has label {label}; CIFAR-10 labels are 0..=9"),
            ));
        }
        labels.push(label);
        let planes = &record[1..];
        let out = &mut pixels[i * 3 * PLANE..(i + 1) * 3 * PLANE];
        for p in 0..PLANE {
            out[3 * p] = planes[p];
            out[3 * p + 1] = planes[PLANE + p];
            out[3 * p + 2] = planes[2 * PLANE + p];
        }
    }
    ImageSet::new(
        SIDE,
        SIDE,
        3,
        pixels,
        labels,
        CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect(),
    )
}

/// Reads one batch file.
pub fn read_cifar10_batch(path: &Path) -> Result<ImageSet> {
    let bytes = fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_cifar10_batch(&bytes, path)
}

/// Reads the five training batches and the test batch from an extracted release directory.
pub fn load_cifar10_binary(dir: &Path) -> Result<TrainTest> {
    let mut train: Option<ImageSet> = None;
    for name in TRAIN_FILES {
        let path = dir.join(name);
        if !path.is_file() {
            return Err(DataError::NotFound {
                path,
                reason: "missing CIFAR-10 batch; the directory needs data_batch_1.bin … data_batch_5.bin and test_batch.bin".into(),
            });
        }
        let batch = read_cifar10_batch(&path)?;
        match train.as_mut() {
            Some(all) => all.extend(batch)?,
            None => train = Some(batch),
        }
    }
    let test = read_cifar10_batch(&dir.join(TEST_FILE))?;
    Ok(TrainTest {
        name: "cifar10".into(),
        train: train.expect("five batches were read"),
        test: Some(test),
    })
}

/// The extracted release in the cache (`<cache>/cifar-10-batches-bin`), downloading and
/// extracting `cifar-10-binary.tar.gz` first when needed.
pub fn cifar10_from_cache(cache: &Path) -> Result<PathBuf> {
    let dir = cache.join("cifar-10-batches-bin");
    if is_cifar10_binary_dir(&dir) {
        return Ok(dir);
    }
    let archive = download::fetch(&CIFAR10_BINARY, cache)?;
    let staging = cache.join("cifar-10-binary");
    if !staging.exists() {
        download::extract_archive(&archive, &staging)?;
    }
    let inner = staging.join("cifar-10-batches-bin");
    if !is_cifar10_binary_dir(&inner) {
        return Err(DataError::format(
            &archive,
            "archive does not contain cifar-10-batches-bin/data_batch_1.bin",
        ));
    }
    fs::rename(&inner, &dir).map_err(|e| DataError::io(&dir, e))?;
    let _ = fs::remove_dir_all(&staging);
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record whose red plane counts up from `seed`, green is constant 100, blue is 200.
    fn record(label: u8, seed: u8) -> Vec<u8> {
        let mut r = vec![label];
        r.extend((0..PLANE).map(|p| seed.wrapping_add(p as u8)));
        r.extend(std::iter::repeat_n(100u8, PLANE));
        r.extend(std::iter::repeat_n(200u8, PLANE));
        r
    }

    #[test]
    fn planar_records_become_interleaved_images() {
        let mut bytes = record(3, 0);
        bytes.extend(record(9, 5));
        let set = parse_cifar10_batch(&bytes, Path::new("b.bin")).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.labels, vec![3, 9]);
        let img = set.image(1);
        assert_eq!(img.pixel(0, 0), &[5, 100, 200]);
        assert_eq!(img.pixel(1, 0), &[6, 100, 200]);
        assert_eq!(img.pixel(0, 1), &[37, 100, 200]);
    }

    #[test]
    fn truncated_and_bad_labels_are_errors() {
        let bytes = record(1, 0);
        let err = parse_cifar10_batch(&bytes[..bytes.len() - 1], Path::new("t.bin")).unwrap_err();
        assert!(err.to_string().contains("t.bin") && err.to_string().contains("truncated"));
        let err = parse_cifar10_batch(&record(10, 0), Path::new("l.bin")).unwrap_err();
        assert!(err.to_string().contains("label 10"), "{err}");
        assert!(parse_cifar10_batch(&[], Path::new("e.bin")).is_err());
    }

    #[test]
    fn loads_a_release_directory() {
        let dir = tempfile::tempdir().unwrap();
        for (i, name) in TRAIN_FILES.iter().enumerate() {
            fs::write(dir.path().join(name), record(i as u8, 0)).unwrap();
        }
        fs::write(
            dir.path().join(TEST_FILE),
            [record(7, 0), record(8, 0)].concat(),
        )
        .unwrap();
        let data = load_cifar10_binary(dir.path()).unwrap();
        assert_eq!(data.train.labels, vec![0, 1, 2, 3, 4]);
        assert_eq!(data.test.unwrap().labels, vec![7, 8]);
        fs::remove_file(dir.path().join("data_batch_3.bin")).unwrap();
        let err = load_cifar10_binary(dir.path()).unwrap_err();
        assert!(err.to_string().contains("data_batch_3.bin"));
    }
}
