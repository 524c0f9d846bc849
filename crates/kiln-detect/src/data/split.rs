//! Train/test splits of a detection folder: the folder's own split files, or a seeded shuffle.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::voc::format_error;
use crate::{DetectError, Result};

/// The split files of a data set.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SplitFiles {
    /// The folder holding them.
    pub dir: PathBuf,
    /// The training list (`trainval.txt` or `train.txt`).
    pub train: PathBuf,
    /// The test list (`test.txt`, else `val.txt`).
    pub test: PathBuf,
}

/// The split files in `dir`, `None` when it has none.
///
/// With `test.txt` the training list is `trainval.txt` (else `train.txt`); without it the test
/// list is `val.txt` and the training list `train.txt` (`trainval.txt` would hold the
/// validation images too). A folder with only one side of a split is an error.
pub(crate) fn find_split_files(dir: &Path) -> Result<Option<SplitFiles>> {
    let file = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
    let (train, test) = match (file("test.txt"), file("val.txt")) {
        (Some(test), _) => (
            file("trainval.txt").or_else(|| file("train.txt")),
            Some(test),
        ),
        (None, Some(val)) => (file("train.txt"), Some(val)),
        (None, None) => (file("trainval.txt").or_else(|| file("train.txt")), None),
    };
    match (train, test) {
        (None, None) => Ok(None),
        (Some(train), Some(test)) => Ok(Some(SplitFiles {
            dir: dir.to_path_buf(),
            train,
            test,
        })),
        (Some(only), None) | (None, Some(only)) => Err(format_error(
            &only,
            "is a split file without its other half: a folder of split files needs \
             train.txt (or trainval.txt) and test.txt (or val.txt); remove it to split by seed",
        )),
    }
}

/// The names a split file lists, with their 1-based line numbers: the first word of each
/// non-blank line that does not start with `#`.
pub(crate) fn read_split_file(path: &Path) -> Result<Vec<(usize, String)>> {
    let bytes = std::fs::read(path).map_err(|e| DetectError::io(path, e))?;
    let text =
        String::from_utf8(bytes).map_err(|e| format_error(path, format!("not UTF-8 text: {e}")))?;
    let names: Vec<(usize, String)> = text
        .lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let word = line.split_whitespace().next()?;
            (!word.starts_with('#')).then(|| (i + 1, word.to_string()))
        })
        .collect();
    if names.is_empty() {
        return Err(format_error(path, "names no images"));
    }
    Ok(names)
}

/// Checks a test fraction: it must lie strictly between 0 and 1.
pub(crate) fn check_test_fraction(test_fraction: f32) -> Result<()> {
    if test_fraction > 0.0 && test_fraction < 1.0 {
        Ok(())
    } else {
        Err(DetectError::invalid(
            "test fraction",
            format!("{test_fraction} must lie strictly between 0 and 1"),
        ))
    }
}

/// Splits `0..n` into (train, test) index lists, each sorted: a ChaCha8 shuffle seeded by
/// `seed`, its first `round(n * test_fraction)` (at least 1, at most `n - 1`) items held out
/// for testing. `n` must be at least 2.
pub(crate) fn seeded_split(n: usize, test_fraction: f32, seed: u64) -> (Vec<usize>, Vec<usize>) {
    debug_assert!(n >= 2);
    let n_test = ((n as f64 * test_fraction as f64).round() as usize).clamp(1, n - 1);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mut test = order[..n_test].to_vec();
    let mut train = order[n_test..].to_vec();
    test.sort_unstable();
    train.sort_unstable();
    (train, test)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_split_is_deterministic_and_follows_the_fraction() {
        let (train, test) = seeded_split(100, 0.2, 7);
        assert_eq!((train.len(), test.len()), (80, 20));
        assert_eq!(seeded_split(100, 0.2, 7), (train.clone(), test.clone()));
        assert_ne!(seeded_split(100, 0.2, 8).1, test);
        let mut all: Vec<usize> = train.into_iter().chain(test).collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        // Never an empty side.
        assert_eq!(seeded_split(3, 0.01, 0).1.len(), 1);
        assert_eq!(seeded_split(3, 0.99, 0).0.len(), 1);
    }

    #[test]
    fn test_fraction_must_be_inside_the_unit_interval() {
        for bad in [0.0, 1.0, -0.5, 1.5, f32::NAN] {
            let err = check_test_fraction(bad).unwrap_err();
            assert!(
                err.to_string().starts_with("invalid test fraction"),
                "{err}"
            );
        }
        check_test_fraction(0.2).unwrap();
    }

    #[test]
    fn split_files_are_paired() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(find_split_files(d).unwrap(), None);
        std::fs::write(d.join("train.txt"), "a\n").unwrap();
        let err = find_split_files(d).unwrap_err().to_string();
        assert!(err.contains("train.txt: is a split file without"), "{err}");
        std::fs::write(d.join("val.txt"), "b\n").unwrap();
        let files = find_split_files(d).unwrap().unwrap();
        assert_eq!(
            (files.train, files.test),
            (d.join("train.txt"), d.join("val.txt"))
        );
        std::fs::write(d.join("trainval.txt"), "a\nb\n").unwrap();
        std::fs::write(d.join("test.txt"), "c\n").unwrap();
        let files = find_split_files(d).unwrap().unwrap();
        assert_eq!(
            (files.train, files.test),
            (d.join("trainval.txt"), d.join("test.txt"))
        );
    }

    #[test]
    fn split_files_list_first_words() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.txt");
        std::fs::write(&path, "000005  1\n\n# note\r\n  b.jpg\n").unwrap();
        let names = read_split_file(&path).unwrap();
        assert_eq!(names, [(1, "000005".to_string()), (4, "b.jpg".to_string())]);
        std::fs::write(&path, "\n").unwrap();
        let err = read_split_file(&path).unwrap_err().to_string();
        assert!(err.contains("train.txt: names no images"), "{err}");
    }
}
