//! COCO-layout data set folders: `annotations/instances_<split>.json` beside image folders
//! `<split>/` (COCO's own `instances_train2017.json` ↔ `train2017/`, and what
//! `kiln-detect shapes` writes). Training uses the `train*` file, testing the `test*` file
//! or, without one, the `val*` file.

use std::path::{Path, PathBuf};

use super::load::{LoadOptions, LoadReport, LoadedSplits, SplitSource};
use super::voc::format_error;
use super::{DetectionSet, read_coco_instances};
use crate::{DetectError, Result};

/// The instances file of `dir/annotations` whose split name starts with `prefix`, if one.
fn instances_file(annotations: &Path, prefix: &str) -> Result<Option<PathBuf>> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(annotations)
        .map_err(|e| DetectError::io(annotations, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with(&format!("instances_{prefix}")) && n.ends_with(".json")
            })
        })
        .collect();
    found.sort();
    match found.len() {
        0 | 1 => Ok(found.pop()),
        _ => Err(format_error(
            annotations,
            format!(
                "holds {} instances files for `{prefix}` ({}); keep one",
                found.len(),
                found
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// `(train, test)` instances files when `dir` is laid out as COCO, else `None`.
pub(crate) fn coco_layout(dir: &Path) -> Result<Option<(PathBuf, PathBuf)>> {
    let annotations = dir.join("annotations");
    if !annotations.is_dir() || dir.join("images").is_dir() {
        return Ok(None);
    }
    let Some(train) = instances_file(&annotations, "train")? else {
        return Ok(None);
    };
    let test = match instances_file(&annotations, "test")? {
        Some(test) => test,
        None => instances_file(&annotations, "val")?.ok_or_else(|| {
            format_error(
                &annotations,
                "has an instances_train*.json but no instances_test*.json or instances_val*.json",
            )
        })?,
    };
    Ok(Some((train, test)))
}

/// The image folder of an instances file: `instances_<split>.json` → `<root>/<split>/`.
fn image_folder(root: &Path, json: &Path) -> PathBuf {
    let stem = json
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    root.join(stem.trim_start_matches("instances_"))
}

/// Reads one split, checking that each image exists with its annotated size (or dropping it
/// under [`LoadOptions::skip_bad_images`]).
fn read_split(
    root: &Path,
    json: &Path,
    options: &LoadOptions,
    skipped: &mut Vec<(PathBuf, String)>,
) -> Result<DetectionSet> {
    let folder = image_folder(root, json);
    if !folder.is_dir() {
        return Err(format_error(
            json,
            format!(
                "its images belong in {}, which is not a folder",
                folder.display()
            ),
        ));
    }
    let mut set = read_coco_instances(json, &folder)?;
    let mut kept = Vec::with_capacity(set.images.len());
    for image in set.images {
        let problem = match image::image_dimensions(&image.path) {
            Err(e) => Some(format!("cannot be read: {e}")),
            Ok((w, h)) if (w, h) != (image.width, image.height) => Some(format!(
                "is {w}x{h} but {} annotates it as {}x{}; fix the width and height there",
                json.display(),
                image.width,
                image.height
            )),
            Ok(_) => None,
        };
        match problem {
            None => kept.push(image),
            Some(why) if options.skip_bad_images => skipped.push((image.path, why)),
            Some(why) => return Err(format_error(&image.path, why)),
        }
    }
    set.images = kept;
    Ok(set)
}

/// Loads a COCO-layout folder ([`coco_layout`]): train and test splits from their instances
/// files, with the categories of the training file, which the test file must repeat, and —
/// when [`LoadOptions::classes`] is given — equal to it in category-id order.
pub(crate) fn load_coco_folder(
    root: &Path,
    (train_json, test_json): (PathBuf, PathBuf),
    options: &LoadOptions,
) -> Result<LoadedSplits> {
    let mut skipped = Vec::new();
    let train = read_split(root, &train_json, options, &mut skipped)?;
    let test = read_split(root, &test_json, options, &mut skipped)?;
    if test.categories != train.categories {
        return Err(format_error(
            &test_json,
            format!(
                "its categories differ from those of {}; both splits need the same ids and names",
                train_json.display()
            ),
        ));
    }
    if let Some(classes) = &options.classes {
        let names: Vec<&str> = train.categories.iter().map(|c| c.name.as_str()).collect();
        if names != classes.iter().map(String::as_str).collect::<Vec<_>>() {
            return Err(format_error(
                &train_json,
                format!(
                    "its categories are {names:?} (by id), not the configured classes {classes:?}"
                ),
            ));
        }
    }
    Ok(LoadedSplits {
        train,
        test,
        report: LoadReport {
            clipped_boxes: 0,
            skipped_images: skipped,
            split: SplitSource::Files(root.join("annotations")),
            resized_annotations: 0,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::load_detection_data;
    use crate::data::shapes::{ShapesConfig, write_shapes_dataset};

    #[test]
    fn a_coco_folder_loads_its_train_and_test_files_with_masks() {
        let dir = tempfile::tempdir().unwrap();
        let config = ShapesConfig {
            size: 40,
            ..ShapesConfig::default()
        };
        let (train, test) = write_shapes_dataset(&config, 3, 2, dir.path()).unwrap();
        let loaded = load_detection_data(dir.path(), &LoadOptions::default()).unwrap();
        assert_eq!(loaded.train, train);
        assert_eq!(loaded.test, test);
        assert!(loaded.train.images[0].objects[0].mask.is_some());
        // The configured classes must be the categories.
        let options = LoadOptions {
            classes: Some(vec!["circle".into()]),
            ..LoadOptions::default()
        };
        let err = load_detection_data(dir.path(), &options)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not the configured classes"), "{err}");
    }

    #[test]
    fn images_of_the_wrong_size_or_missing_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let config = ShapesConfig {
            size: 40,
            ..ShapesConfig::default()
        };
        let (train, _) = write_shapes_dataset(&config, 2, 1, dir.path()).unwrap();
        image::RgbImage::new(30, 40)
            .save(&train.images[0].path)
            .unwrap();
        let err = load_detection_data(dir.path(), &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("000001.png") && err.contains("is 30x40"),
            "{err}"
        );
        std::fs::remove_file(&train.images[1].path).unwrap();
        let options = LoadOptions {
            skip_bad_images: true,
            ..LoadOptions::default()
        };
        let loaded = load_detection_data(dir.path(), &options).unwrap();
        assert_eq!(loaded.train.images.len(), 0);
        assert_eq!(loaded.report.skipped_images.len(), 2);
        std::fs::remove_file(dir.path().join("annotations/instances_test.json")).unwrap();
        let err = load_detection_data(dir.path(), &options)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no instances_test"), "{err}");
    }
}
