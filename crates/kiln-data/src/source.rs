//! Finding a dataset: one entry point that recognises every layout kiln reads, and the default
//! dataset used when none is named.

use std::fs;
use std::path::{Path, PathBuf};

use crate::cifar::{cifar10_from_cache, is_cifar10_binary_dir, load_cifar10_binary};
use crate::download::{cache_dir, extract_archive};
use crate::idx::{DEBIAN_FASHION_MNIST, is_idx_dir, load_idx_dir};
use crate::image_folder::{ImageFolderOptions, has_train_test_folders, load_image_folder_splits};
use crate::{DataError, ImageSet, Result};

/// A dataset's training images and, when it ships one, its test images.
#[derive(Clone, Debug)]
pub struct TrainTest {
    /// Short name (`cifar10`, `fashion-mnist`, or the folder's name).
    pub name: String,
    /// The training split as published.
    pub train: ImageSet,
    /// The test split as published, if any.
    pub test: Option<ImageSet>,
}

/// Which on-disk layout a directory holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// CIFAR-10 binary batches.
    Cifar10Binary,
    /// MNIST-style IDX files.
    Idx,
    /// `train/<class>/…` (and `test/<class>/…`) image folders.
    ImageFolderSplits,
    /// `<class>/…` image folders, all training data.
    ImageFolder,
}

fn detect_layout(dir: &Path) -> Option<Layout> {
    if is_cifar10_binary_dir(dir) {
        Some(Layout::Cifar10Binary)
    } else if is_idx_dir(dir) {
        Some(Layout::Idx)
    } else if has_train_test_folders(dir) {
        Some(Layout::ImageFolderSplits)
    } else {
        let has_subdirs = fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok())
            .any(|e| e.path().is_dir());
        has_subdirs.then_some(Layout::ImageFolder)
    }
}

/// The one subdirectory of `dir` when `dir` holds nothing else (an archive's top folder).
fn only_subdir(dir: &Path) -> Option<PathBuf> {
    let entries: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    match entries.as_slice() {
        [one]
            if one.is_dir()
                && matches!(
                    detect_layout(one),
                    Some(Layout::Cifar10Binary | Layout::Idx | Layout::ImageFolderSplits)
                ) =>
        {
            Some(one.clone())
        }
        _ => None,
    }
}

fn is_archive(path: &Path) -> bool {
    let name = path.to_string_lossy();
    name.ends_with(".tar.gz") || name.ends_with(".tgz") || name.ends_with(".tar")
}

/// Extracts a dataset archive once into `<cache>/extracted/<archive name>-<content hash>` and
/// returns that directory. The key is the archive's SHA-256 (its first 16 hex digits), so an
/// updated or different archive of the same name is extracted anew instead of being served
/// the old files.
pub fn extract_into_cache(archive: &Path) -> Result<PathBuf> {
    extract_into(archive, &cache_dir())
}

/// Extracts a dataset archive once into `<cache>/extracted/<archive name>-<content hash>` for
/// the given cache folder and returns that directory (detection and segmentation archives go to
/// the same place as classification ones).
pub fn extract_into(archive: &Path, cache: &Path) -> Result<PathBuf> {
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name
        .trim_end_matches(".gz")
        .trim_end_matches(".tgz")
        .trim_end_matches(".tar");
    let digest = crate::download::sha256_file(archive)?;
    let dest = cache
        .join("extracted")
        .join(format!("{stem}-{}", &digest[..16]));
    if !dest.exists() {
        extract_archive(archive, &dest)?;
    }
    Ok(dest)
}

/// Opens the dataset at `path`: a CIFAR-10 binary directory, an IDX directory, an ImageFolder
/// root (with or without `train/` and `test/`), or a `.tar.gz` of any of these (extracted into
/// the cache on first use).
pub fn open_dataset(path: &Path, options: &ImageFolderOptions) -> Result<TrainTest> {
    if !path.exists() {
        return Err(DataError::NotFound {
            path: path.to_path_buf(),
            reason: "no such file or directory".into(),
        });
    }
    let mut dir = if path.is_file() && is_archive(path) {
        extract_into_cache(path)?
    } else {
        path.to_path_buf()
    };
    if !dir.is_dir() {
        return Err(DataError::NotFound {
            path: dir,
            reason: "expected a dataset directory or a .tar.gz archive of one".into(),
        });
    }
    if matches!(detect_layout(&dir), None | Some(Layout::ImageFolder))
        && let Some(inner) = only_subdir(&dir)
    {
        dir = inner;
    }
    let mut data = match detect_layout(&dir) {
        Some(Layout::Cifar10Binary) => load_cifar10_binary(&dir)?,
        Some(Layout::Idx) => load_idx_dir(&dir)?,
        Some(Layout::ImageFolderSplits | Layout::ImageFolder) => {
            load_image_folder_splits(&dir, options)?
        }
        None => {
            return Err(DataError::NotFound {
                path: dir,
                reason: "no dataset recognised: expected CIFAR-10 batches (data_batch_1.bin …), \
                         IDX files (train-images-idx3-ubyte[.gz] …) or class folders of images"
                    .into(),
            });
        }
    };
    if data.name.is_empty() || data.name == "train" {
        data.name = "dataset".into();
    }
    Ok(data)
}

/// What to do, in words, when no dataset can be found.
pub const NO_DATA_HELP: &str = "no dataset available. Either pass --data DIR (a CIFAR-10 binary directory, \
an ImageFolder root, an IDX directory, or a .tar.gz of one), connect to the network so that CIFAR-10 can be \
downloaded into the cache ($KILN_DATA, default ~/.cache/kiln), or install Fashion-MNIST with \
`apt-get install dataset-fashion-mnist`";

/// The dataset used when none is named: CIFAR-10 from the cache (downloaded on first use);
/// without network, Debian's Fashion-MNIST when installed. Returns the directory it chose.
pub fn default_dataset_dir() -> Result<PathBuf> {
    let download_error = match cifar10_from_cache(&cache_dir()) {
        Ok(dir) => return Ok(dir),
        Err(e) => e,
    };
    let debian = PathBuf::from(DEBIAN_FASHION_MNIST);
    if is_idx_dir(&debian) {
        eprintln!(
            "CIFAR-10 unavailable ({download_error}); using Fashion-MNIST from {DEBIAN_FASHION_MNIST}"
        );
        return Ok(debian);
    }
    Err(DataError::NotFound {
        path: cache_dir(),
        reason: format!("{NO_DATA_HELP} (CIFAR-10 download: {download_error})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_path_is_named() {
        let err = open_dataset(Path::new("/no/such/kiln/data"), &Default::default()).unwrap_err();
        assert!(err.to_string().contains("/no/such/kiln/data"));
    }

    #[test]
    fn an_archive_with_a_top_folder_opens_like_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        // One 2×2 image a class under src/mini/train/, packed as mini.tar.gz.
        let pack = |classes: &[&str]| {
            for class in classes {
                let folder = dir.path().join("src/mini/train").join(class);
                fs::create_dir_all(&folder).unwrap();
                image::RgbImage::new(2, 2)
                    .save(folder.join("0.png"))
                    .unwrap();
            }
            let archive = dir.path().join("mini.tar.gz");
            let gz = flate2::write::GzEncoder::new(
                fs::File::create(&archive).unwrap(),
                flate2::Compression::fast(),
            );
            let mut tar = tar::Builder::new(gz);
            tar.append_dir_all("mini", dir.path().join("src/mini"))
                .unwrap();
            tar.into_inner().unwrap().finish().unwrap();
            archive
        };
        let archive = pack(&["cat", "dog"]);
        let cache = dir.path().join("cache");
        let data = temp_env_cache(&cache, || open_dataset(&archive, &Default::default())).unwrap();
        assert_eq!(data.train.classes, vec!["cat", "dog"]);
        let extracted: Vec<String> = fs::read_dir(cache.join("extracted"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(extracted.len(), 1);
        assert!(extracted[0].starts_with("mini-"), "{extracted:?}");

        // Another archive of the same name (a class added) is not served the old files.
        let archive = pack(&["eel"]);
        let data = temp_env_cache(&cache, || open_dataset(&archive, &Default::default())).unwrap();
        assert_eq!(data.train.classes, vec!["cat", "dog", "eel"]);
    }

    fn temp_env_cache<T>(cache: &Path, f: impl FnOnce() -> T) -> T {
        // SAFETY: no other test in this crate reads or writes KILN_DATA.
        unsafe { std::env::set_var(crate::download::CACHE_ENV, cache) };
        let out = f();
        unsafe { std::env::remove_var(crate::download::CACHE_ENV) };
        out
    }
}
