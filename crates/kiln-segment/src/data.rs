//! Segmentation data: photos with one label PNG each (one byte a pixel, the class id), in the
//! layout CamVid is distributed in — `<split>/NAME.jpg` beside `<split>annot/NAME.png` — as a
//! folder or a `.tar.gz` of one. Classes come with names and drawing colours; one id (CamVid's
//! 11, "void") marks pixels that count in neither loss nor metrics.

use std::path::{Path, PathBuf};

use kiln_data::Image;
use kiln_data::augment::Mask;
use kiln_data::image_folder::decode_image;
use serde::{Deserialize, Serialize};

use crate::{Result, SegmentError};

/// A class: its name and the colour it is drawn in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegClass {
    /// Name (`Road`).
    pub name: String,
    /// RGB drawing colour.
    pub colour: [u8; 3],
}

/// The classes of a data set and its ignored id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassList {
    /// Classes in id order (id = index).
    pub classes: Vec<SegClass>,
    /// Label value that is no class (not scored; drawn black).
    pub ignore: u8,
}

impl ClassList {
    /// CamVid's 11 classes as SegNet uses them, with SegNet's colours; 11 is void.
    pub fn camvid() -> Self {
        let named = [
            ("Sky", [128, 128, 128]),
            ("Building", [128, 0, 0]),
            ("Pole", [192, 192, 128]),
            ("Road", [128, 64, 128]),
            ("Pavement", [60, 40, 222]),
            ("Tree", [128, 128, 0]),
            ("SignSymbol", [192, 128, 128]),
            ("Fence", [64, 64, 128]),
            ("Car", [64, 0, 128]),
            ("Pedestrian", [64, 64, 0]),
            ("Bicyclist", [0, 128, 192]),
        ];
        Self {
            classes: named
                .iter()
                .map(|(name, colour)| SegClass {
                    name: name.to_string(),
                    colour: *colour,
                })
                .collect(),
            ignore: 11,
        }
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.classes.len()
    }

    /// Whether there are no classes.
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }
}

/// A photo and its label file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelledImage {
    /// The photo.
    pub image: PathBuf,
    /// Its label PNG.
    pub label: PathBuf,
}

/// The photos of one split with their labels, sorted by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentationSplit {
    /// Split name (`train`, `val`, …).
    pub name: String,
    /// The pairs.
    pub samples: Vec<LabelledImage>,
}

/// The folder holding `<split>/` and `<split>annot/` under `path` (the folder itself or one
/// below it); a `.tar.gz` is extracted once into `cache` first.
pub fn find_root(path: &Path, split: &str, cache: &Path) -> Result<PathBuf> {
    let path = if path.is_file() {
        kiln_data::extract_into(path, cache)?
    } else if path.is_dir() {
        path.to_path_buf()
    } else {
        return Err(SegmentError::invalid(
            path.display().to_string(),
            "no such folder or archive (give a folder with <split>/ and <split>annot/, or its .tar.gz)",
        ));
    };
    let has = |dir: &Path| dir.join(split).is_dir() && dir.join(format!("{split}annot")).is_dir();
    if has(&path) {
        return Ok(path);
    }
    let mut below: Vec<PathBuf> = std::fs::read_dir(&path)
        .map_err(|e| SegmentError::io(&path, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| has(p))
        .collect();
    below.sort();
    below.into_iter().next().ok_or_else(|| {
        SegmentError::invalid(
            path.display().to_string(),
            format!("no {split}/ and {split}annot/ folders here or one level below"),
        )
    })
}

/// The photos of `root/<split>/` (`.jpg`, `.jpeg`, `.png`) each with `root/<split>annot/` +
/// the same stem + `.png`. A photo without a label is an error naming both files.
pub fn read_split(root: &Path, split: &str) -> Result<SegmentationSplit> {
    let images = root.join(split);
    let labels = root.join(format!("{split}annot"));
    let mut samples = Vec::new();
    for entry in std::fs::read_dir(&images).map_err(|e| SegmentError::io(&images, e))? {
        let path = entry.map_err(|e| SegmentError::io(&images, e))?.path();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if !matches!(ext.as_deref(), Some("jpg" | "jpeg" | "png")) {
            continue;
        }
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        let label = labels.join(format!("{stem}.png"));
        if !label.is_file() {
            return Err(SegmentError::invalid(
                path.display().to_string(),
                format!("has no label: {} is missing", label.display()),
            ));
        }
        samples.push(LabelledImage { image: path, label });
    }
    if samples.is_empty() {
        return Err(SegmentError::invalid(
            images.display().to_string(),
            "holds no .jpg or .png photos",
        ));
    }
    samples.sort_by(|a, b| a.image.cmp(&b.image));
    Ok(SegmentationSplit {
        name: split.to_string(),
        samples,
    })
}

/// A label PNG as a mask, checked: one channel (class ids, not colours), every value a class
/// id below `classes` or the ignored id (stored as [`Mask::IGNORE`]).
pub fn read_label(path: &Path, classes: usize, ignore: u8) -> Result<Mask> {
    let bad = |reason: String| SegmentError::invalid(path.display().to_string(), reason);
    let decoded = image::open(path).map_err(|e| bad(format!("cannot decode the label: {e}")))?;
    let gray = match decoded {
        image::DynamicImage::ImageLuma8(g) => g,
        other => {
            return Err(bad(format!(
                "is a {:?} image; a label holds one class id a pixel (8-bit grayscale)",
                other.color()
            )));
        }
    };
    let (width, height) = (gray.width() as usize, gray.height() as usize);
    let mut data = gray.into_raw();
    for v in &mut data {
        if *v == ignore {
            *v = Mask::IGNORE;
        } else if usize::from(*v) >= classes {
            return Err(bad(format!(
                "holds class id {v}, but there are {classes} classes (0..{}) and {ignore} is ignored",
                classes - 1
            )));
        }
    }
    Ok(Mask {
        width,
        height,
        data,
    })
}

/// A photo (RGB) and its checked label, which must be the photo's size.
pub fn load_sample(sample: &LabelledImage, classes: &ClassList) -> Result<(Image, Mask)> {
    let image = decode_image(&sample.image, None)?.to_rgb();
    let mask = read_label(&sample.label, classes.len(), classes.ignore)?;
    if (mask.width, mask.height) != (image.width, image.height) {
        return Err(SegmentError::invalid(
            sample.label.display().to_string(),
            format!(
                "is {}×{} but its photo {} is {}×{}",
                mask.width,
                mask.height,
                sample.image.display(),
                image.width,
                image.height
            ),
        ));
    }
    Ok((image, mask))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `split/NAME.png` (RGB) and `splitannot/NAME.png` (ids) of `w`×`h`.
    fn write_pair(root: &Path, split: &str, name: &str, (w, h): (u32, u32), ids: &[u8]) {
        std::fs::create_dir_all(root.join(split)).unwrap();
        std::fs::create_dir_all(root.join(format!("{split}annot"))).unwrap();
        image::RgbImage::from_pixel(w, h, image::Rgb([10, 20, 30]))
            .save(root.join(split).join(format!("{name}.png")))
            .unwrap();
        image::GrayImage::from_raw(w, h, ids.to_vec())
            .unwrap()
            .save(
                root.join(format!("{split}annot"))
                    .join(format!("{name}.png")),
            )
            .unwrap();
    }

    #[test]
    fn pairs_are_read_sorted_and_labels_checked() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("camvid");
        write_pair(&root, "train", "b", (2, 2), &[0, 1, 11, 3]);
        write_pair(&root, "train", "a", (2, 2), &[0, 0, 0, 0]);
        assert_eq!(find_root(dir.path(), "train", dir.path()).unwrap(), root);
        let split = read_split(&root, "train").unwrap();
        assert_eq!(split.samples.len(), 2);
        assert!(split.samples[0].image.ends_with("train/a.png"));
        let classes = ClassList::camvid();
        let (image, mask) = load_sample(&split.samples[1], &classes).unwrap();
        assert_eq!((image.width, image.height), (2, 2));
        assert_eq!(mask.data, vec![0, 1, Mask::IGNORE, 3]);
    }

    #[test]
    fn bad_labels_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let classes = ClassList::camvid();
        // A class id out of range.
        write_pair(root, "val", "x", (2, 1), &[4, 12]);
        let split = read_split(root, "val").unwrap();
        let err = load_sample(&split.samples[0], &classes)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("valannot/x.png") && err.contains("class id 12"),
            "{err}"
        );
        // A label of another size than its photo.
        image::GrayImage::from_raw(1, 1, vec![0])
            .unwrap()
            .save(root.join("valannot/x.png"))
            .unwrap();
        let err = load_sample(&split.samples[0], &classes)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is 1×1 but its photo") && err.contains("2×1"),
            "{err}"
        );
        // A colour label.
        image::RgbImage::new(2, 1)
            .save(root.join("valannot/x.png"))
            .unwrap();
        let err = load_sample(&split.samples[0], &classes)
            .unwrap_err()
            .to_string();
        assert!(err.contains("one class id a pixel"), "{err}");
        // A photo without a label.
        std::fs::remove_file(root.join("valannot/x.png")).unwrap();
        let err = read_split(root, "val").unwrap_err().to_string();
        assert!(
            err.contains("has no label") && err.contains("valannot/x.png"),
            "{err}"
        );
        // No such split.
        let err = find_root(root, "test", root).unwrap_err().to_string();
        assert!(err.contains("no test/ and testannot/"), "{err}");
    }
}
