//! Loading a Pascal VOC style detection folder (or a `.tar.gz` of one) into train and test
//! [`DetectionSet`]s, checking every annotation and decoding every image on the way.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::split::{
    SplitFiles, check_test_fraction, find_split_files, read_split_file, seeded_split,
};
use super::voc::format_error;
use super::voc::{VocAnnotation, read_voc_annotation};
use super::{AnnotatedImage, BoundingBox, Category, DetectionSet, Object};
use crate::{DetectError, Result};

/// How [`load_detection_data`] reads a data set.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadOptions {
    /// Share of the images held out for testing when the folder has no split files; strictly
    /// between 0 and 1 (default 0.2).
    pub test_fraction: f32,
    /// Seed of the shuffle that splits a folder without split files (default 0).
    pub seed: u64,
    /// Drop images that are missing or fail to decode (listed in
    /// [`LoadReport::skipped_images`]) instead of failing.
    pub skip_bad_images: bool,
    /// The classes, in class-index order; an object of any other class is an error. `None`:
    /// every class found in the annotations, sorted by name.
    pub classes: Option<Vec<String>>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            test_fraction: 0.2,
            seed: 0,
            skip_bad_images: false,
            classes: None,
        }
    }
}

/// Where the train/test split came from.
#[derive(Clone, Debug, PartialEq)]
pub enum SplitSource {
    /// The data set's own split files, in this folder (`ImageSets/Main/` or `splits/`): the
    /// training list `trainval.txt` or `train.txt`, the test list `test.txt` or `val.txt`.
    Files(PathBuf),
    /// A seeded shuffle of every annotated image.
    Seeded {
        /// The shuffle's seed.
        seed: u64,
        /// The share held out for testing.
        test_fraction: f32,
    },
}

/// What loading found and did besides the data itself.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadReport {
    /// Boxes that crossed the image border and were clipped to it.
    pub clipped_boxes: usize,
    /// Images dropped under [`LoadOptions::skip_bad_images`]: the image path and why.
    pub skipped_images: Vec<(PathBuf, String)>,
    /// Where the split came from.
    pub split: SplitSource,
    /// Annotations whose `<size>` differed from the decoded image: the image's size was used
    /// and the boxes scaled from the annotated size to it.
    pub resized_annotations: usize,
}

/// A loaded data set: train and test sets (sharing the category list) and the report.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedSplits {
    /// The training images.
    pub train: DetectionSet,
    /// The test images.
    pub test: DetectionSet,
    /// What loading found.
    pub report: LoadReport,
}

/// Loads a detection data set in Pascal VOC format, or a COCO-layout folder
/// (`annotations/instances_{train,test}*.json` beside `train*/` and `test*/`, see
/// [`super::coco_folder`]), and splits it into train and test.
///
/// `path`: a `.tar.gz` archive (extracted into kiln's cache once), a VOCdevkit year folder
/// (`JPEGImages/`, `Annotations/`, `ImageSets/Main/{train,val,trainval,test}.txt`, and instance
/// masks from `SegmentationObject/` where it has them: train is
/// `trainval` (or `train`) and test `test`, or train `train` and test `val` when there is no
/// `test`), the flat layout (`images/`, `annotations/`, optional `splits/{train,test}.txt`), or
/// a folder holding exactly one such data set folder (like an extracted archive's single
/// top-level folder). Split files list image names, with or without extension, one per line.
///
/// Images are numbered from 1 over the whole data set, in sorted annotation file order, so an
/// image keeps its id whatever the split or the images skipped; categories are numbered from 1
/// in class order. Every image used is decoded (in parallel) to check it and to learn its true
/// size. A folder without split files is split by a seeded shuffle.
///
/// Errors name the file and what is wrong: a malformed annotation, a box with `xmax <= xmin`
/// or `ymax <= ymin` or wholly outside its image, a class not in [`LoadOptions::classes`], a
/// split file naming an image without an annotation (or an image twice), a missing or
/// undecodable image (unless [`LoadOptions::skip_bad_images`]), a test fraction outside (0, 1).
pub fn load_detection_data(path: &Path, options: &LoadOptions) -> Result<LoadedSplits> {
    load_with_cache(path, options, &kiln_data::download::cache_dir())
}

/// [`load_detection_data`] with archives extracted below `cache` instead of kiln's cache.
fn load_with_cache(path: &Path, options: &LoadOptions, cache: &Path) -> Result<LoadedSplits> {
    check_test_fraction(options.test_fraction)?;
    if let Some(classes) = &options.classes {
        check_classes(classes)?;
    }
    if path.is_dir()
        && let Some(files) = super::coco_folder::coco_layout(path)?
    {
        return super::coco_folder::load_coco_folder(path, files, options);
    }
    let dataset = open_dataset_dir(path, cache)?;
    load_dataset(&dataset, options)
}

fn check_classes(classes: &[String]) -> Result<()> {
    if classes.is_empty() {
        return Err(DetectError::invalid("classes", "the class list is empty"));
    }
    for (i, name) in classes.iter().enumerate() {
        if name.trim().is_empty() || name.trim() != name {
            return Err(DetectError::invalid(
                "classes",
                format!(
                    "class {i} is `{name}`; names must be non-blank without surrounding spaces"
                ),
            ));
        }
        if classes[..i].contains(name) {
            return Err(DetectError::invalid(
                "classes",
                format!("`{name}` appears twice"),
            ));
        }
    }
    Ok(())
}

/// The folders of one detection data set.
#[derive(Clone, Debug, PartialEq)]
struct DatasetDir {
    root: PathBuf,
    images: PathBuf,
    annotations: PathBuf,
    /// Where split files would be.
    splits: PathBuf,
}

/// The data set laid out directly in `dir`, if any.
fn layout_of(dir: &Path) -> Option<DatasetDir> {
    let both = |images: &str, annotations: &str, splits: &str| {
        (dir.join(images).is_dir() && dir.join(annotations).is_dir()).then(|| DatasetDir {
            root: dir.to_path_buf(),
            images: dir.join(images),
            annotations: dir.join(annotations),
            splits: dir.join(splits),
        })
    };
    both("JPEGImages", "Annotations", "ImageSets/Main")
        .or_else(|| both("images", "annotations", "splits"))
}

/// The data set in `dir`, or in the one folder below it (up to `depth` levels) that holds one.
fn find_dataset(dir: &Path, depth: usize) -> Result<Option<DatasetDir>> {
    if let Some(found) = layout_of(dir) {
        return Ok(Some(found));
    }
    if depth == 0 {
        return Ok(None);
    }
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| DetectError::io(dir, e))? {
        let entry = entry.map_err(|e| DetectError::io(dir, e))?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden
            && entry.path().is_dir()
            && let Some(dataset) = find_dataset(&entry.path(), depth - 1)?
        {
            found.push(dataset);
        }
    }
    found.sort_by(|a, b| a.root.cmp(&b.root));
    match found.len() {
        0 | 1 => Ok(found.pop()),
        _ => Err(format_error(
            dir,
            format!(
                "holds {} detection data sets ({}); pass one of them",
                found.len(),
                found
                    .iter()
                    .map(|d| d.root.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

fn is_archive(path: &Path) -> bool {
    let name = path.to_string_lossy();
    name.ends_with(".tar.gz") || name.ends_with(".tgz") || name.ends_with(".tar")
}

/// The data set at `path` (extracting an archive first).
fn open_dataset_dir(path: &Path, cache: &Path) -> Result<DatasetDir> {
    if !path.exists() {
        return Err(format_error(path, "no such file or folder"));
    }
    let dir = if path.is_file() {
        if !is_archive(path) {
            return Err(format_error(
                path,
                "is a file; expected a detection data set folder or a .tar.gz archive of one",
            ));
        }
        kiln_data::extract_into(path, cache)?
    } else {
        path.to_path_buf()
    };
    find_dataset(&dir, 2)?.ok_or_else(|| {
        format_error(
            &dir,
            "holds no detection data set: expected JPEGImages/ and Annotations/ (a VOCdevkit \
             year folder) or images/ and annotations/ (the flat layout), here or in its one \
             sub-folder",
        )
    })
}

/// The `.xml` files of `dir`, sorted by name (hidden files skipped).
fn annotation_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| DetectError::io(dir, e))? {
        let path = entry.map_err(|e| DetectError::io(dir, e))?.path();
        let is_xml = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("xml"));
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if is_xml && !hidden && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(format_error(dir, "holds no .xml annotation files"));
    }
    Ok(files)
}

/// The first error of `results` in order, else their values.
fn first_error<T>(results: Vec<Result<T>>) -> Result<Vec<T>> {
    results.into_iter().collect()
}

/// Maps the names of a split file to annotation indices.
struct NameIndex<'a> {
    by_name: HashMap<&'a str, usize>,
}

impl<'a> NameIndex<'a> {
    /// Names an annotation goes by: its XML stem, its image's file name and stem.
    fn new(annotations: &'a [VocAnnotation]) -> Self {
        let mut by_name = HashMap::new();
        // Later inserts do not replace earlier ones: the XML stem wins.
        let stems = annotations
            .iter()
            .enumerate()
            .filter_map(|(i, a)| Some((a.xml.file_stem()?.to_str()?, i)));
        let image_names = annotations
            .iter()
            .enumerate()
            .filter_map(|(i, a)| Some((a.image.file_name()?.to_str()?, i)));
        let image_stems = annotations
            .iter()
            .enumerate()
            .filter_map(|(i, a)| Some((a.image.file_stem()?.to_str()?, i)));
        for (name, i) in stems.chain(image_names).chain(image_stems) {
            by_name.entry(name).or_insert(i);
        }
        Self { by_name }
    }

    fn get(&self, entry: &str) -> Option<usize> {
        let name = Path::new(entry).file_name()?.to_str()?;
        self.by_name.get(name).copied().or_else(|| {
            let stem = Path::new(name).file_stem()?.to_str()?;
            self.by_name.get(stem).copied()
        })
    }
}

/// The (train, test) annotation indices listed by `files`.
fn split_from_files(
    files: &SplitFiles,
    annotations: &[VocAnnotation],
    annotation_dir: &Path,
) -> Result<(Vec<usize>, Vec<usize>)> {
    let index = NameIndex::new(annotations);
    let mut side_of: Vec<Option<&Path>> = vec![None; annotations.len()];
    let mut sides = Vec::new();
    for list in [&files.train, &files.test] {
        let mut indices = Vec::new();
        for (line, name) in read_split_file(list)? {
            let i = index.get(&name).ok_or_else(|| {
                format_error(
                    list,
                    format!(
                        "line {line} names `{name}`, which has no annotation in {}",
                        annotation_dir.display()
                    ),
                )
            })?;
            if let Some(earlier) = side_of[i] {
                let where_ = if earlier == list.as_path() {
                    "earlier in this file".to_string()
                } else {
                    format!("in {}", earlier.display())
                };
                return Err(format_error(
                    list,
                    format!("line {line} names `{name}`, which is already listed {where_}"),
                ));
            }
            side_of[i] = Some(list);
            indices.push(i);
        }
        indices.sort_unstable();
        sides.push(indices);
    }
    let test = sides.pop().unwrap_or_default();
    let train = sides.pop().unwrap_or_default();
    Ok((train, test))
}

/// Gives the objects of `image` their masks from VOC's `root/SegmentationObject/<stem>.png`
/// when that file exists (VOC 2007–2012 annotate masks for a subset of images).
fn attach_object_masks(image: &mut AnnotatedImage, root: &Path) -> Result<()> {
    let Some(stem) = image.path.file_stem() else {
        return Ok(());
    };
    let path = root
        .join("SegmentationObject")
        .join(Path::new(stem).with_extension("png"));
    if !path.is_file() {
        return Ok(());
    }
    let masks =
        super::voc_masks::read_object_masks(&path, image.width, image.height, image.objects.len())?;
    for (object, mask) in image.objects.iter_mut().zip(masks) {
        object.mask = Some(mask);
    }
    Ok(())
}

/// A decoded image's size, or why the image cannot be used.
enum ImageCheck {
    Size(u32, u32),
    Missing,
    Bad(kiln_data::DataError),
}

fn check_image(path: &Path) -> ImageCheck {
    if !path.is_file() {
        return ImageCheck::Missing;
    }
    match kiln_data::image_folder::decode_image(path, None) {
        Ok(image) => ImageCheck::Size(image.width as u32, image.height as u32),
        Err(e) => ImageCheck::Bad(e),
    }
}

/// Turns one annotation into an image of the set: scales its boxes to the decoded size when
/// `<size>` disagrees, clips them to the image, maps classes. Returns the image, whether it
/// was rescaled, and how many boxes were clipped.
fn build_image(
    id: u64,
    annotation: &VocAnnotation,
    (width, height): (u32, u32),
    class_of: &HashMap<&str, usize>,
) -> Result<(AnnotatedImage, bool, usize)> {
    let (sx, sy, resized) = match annotation.size {
        Some((w, h)) if (w, h) != (width, height) => {
            (width as f32 / w as f32, height as f32 / h as f32, true)
        }
        _ => (1.0, 1.0, false),
    };
    let (w, h) = (width as f32, height as f32);
    let mut clipped = 0;
    let mut objects = Vec::with_capacity(annotation.objects.len());
    for (i, object) in annotation.objects.iter().enumerate() {
        let bad = |reason: String| {
            format_error(
                &annotation.xml,
                format!("object {} ({}): {reason}", i + 1, object.name),
            )
        };
        let &class = class_of
            .get(object.name.as_str())
            .ok_or_else(|| bad("its class is not in the class list".into()))?;
        let b = object.bbox;
        let scaled = BoundingBox {
            x1: b.x1 * sx,
            y1: b.y1 * sy,
            x2: b.x2 * sx,
            y2: b.y2 * sy,
        };
        if resized && (scaled.x2 <= scaled.x1 || scaled.y2 <= scaled.y1) {
            return Err(bad(format!(
                "box becomes empty when scaled from the annotated size {}x{} to the image's {width}x{height}",
                annotation.size.map_or(0, |s| s.0),
                annotation.size.map_or(0, |s| s.1),
            )));
        }
        let bbox = BoundingBox {
            x1: scaled.x1.clamp(0.0, w),
            y1: scaled.y1.clamp(0.0, h),
            x2: scaled.x2.clamp(0.0, w),
            y2: scaled.y2.clamp(0.0, h),
        };
        if bbox.x2 <= bbox.x1 || bbox.y2 <= bbox.y1 {
            return Err(bad(format!(
                "box ({}, {}, {}, {}) lies wholly outside the {width}x{height} image {}",
                scaled.x1,
                scaled.y1,
                scaled.x2,
                scaled.y2,
                annotation.image.display()
            )));
        }
        if bbox != scaled {
            clipped += 1;
        }
        objects.push(Object {
            bbox,
            class,
            area: bbox.width() * bbox.height(),
            difficult: object.difficult,
            crowd: false,
            mask: None,
        });
    }
    let image = AnnotatedImage {
        id,
        path: annotation.image.clone(),
        width,
        height,
        objects,
    };
    Ok((image, resized, clipped))
}

fn load_dataset(dataset: &DatasetDir, options: &LoadOptions) -> Result<LoadedSplits> {
    let xml_files = annotation_files(&dataset.annotations)?;
    let annotations = first_error(
        xml_files
            .par_iter()
            .map(|xml| read_voc_annotation(xml, &dataset.images))
            .collect(),
    )?;

    // Classes: the given list, or every name found, sorted.
    let classes: Vec<String> = match &options.classes {
        Some(classes) => classes.clone(),
        None => {
            let mut names: Vec<String> = annotations
                .iter()
                .flat_map(|a| a.objects.iter().map(|o| o.name.clone()))
                .collect();
            names.sort();
            names.dedup();
            names
        }
    };
    let class_of: HashMap<&str, usize> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    for annotation in &annotations {
        for (i, object) in annotation.objects.iter().enumerate() {
            if !class_of.contains_key(object.name.as_str()) {
                return Err(format_error(
                    &annotation.xml,
                    format!(
                        "object {} has class `{}`, which is not one of the classes asked for ({})",
                        i + 1,
                        object.name,
                        classes.join(", ")
                    ),
                ));
            }
        }
    }

    let (train, test, split) = match find_split_files(&dataset.splits)? {
        Some(files) => {
            let (train, test) = split_from_files(&files, &annotations, &dataset.annotations)?;
            (train, test, SplitSource::Files(files.dir))
        }
        None => {
            if annotations.len() < 2 {
                return Err(format_error(
                    &dataset.annotations,
                    "holds a single annotation; a train/test split needs at least two images",
                ));
            }
            let (train, test) =
                seeded_split(annotations.len(), options.test_fraction, options.seed);
            let split = SplitSource::Seeded {
                seed: options.seed,
                test_fraction: options.test_fraction,
            };
            (train, test, split)
        }
    };

    // Decode every image used, once, in parallel.
    let mut used: Vec<usize> = train.iter().chain(&test).copied().collect();
    used.sort_unstable();
    let checks: Vec<ImageCheck> = used
        .par_iter()
        .map(|&i| check_image(&annotations[i].image))
        .collect();

    let mut report = LoadReport {
        clipped_boxes: 0,
        skipped_images: Vec::new(),
        split,
        resized_annotations: 0,
    };
    let mut built: Vec<Option<AnnotatedImage>> = vec![None; annotations.len()];
    for (&i, check) in used.iter().zip(checks) {
        let annotation = &annotations[i];
        let size = match check {
            ImageCheck::Size(w, h) => (w, h),
            ImageCheck::Missing => {
                let reason = "the image file does not exist".to_string();
                if !options.skip_bad_images {
                    return Err(format_error(
                        &annotation.xml,
                        format!("its image {} does not exist", annotation.image.display()),
                    ));
                }
                report
                    .skipped_images
                    .push((annotation.image.clone(), reason));
                continue;
            }
            ImageCheck::Bad(e) => {
                if !options.skip_bad_images {
                    return Err(e.into());
                }
                let reason = match e {
                    kiln_data::DataError::Decode { reason, .. } => {
                        format!("cannot decode the image ({reason})")
                    }
                    other => other.to_string(),
                };
                report
                    .skipped_images
                    .push((annotation.image.clone(), reason));
                continue;
            }
        };
        let (mut image, resized, clipped) = build_image(i as u64 + 1, annotation, size, &class_of)?;
        attach_object_masks(&mut image, &dataset.root)?;
        report.resized_annotations += resized as usize;
        report.clipped_boxes += clipped;
        built[i] = Some(image);
    }

    let categories: Vec<Category> = classes
        .iter()
        .enumerate()
        .map(|(i, name)| Category {
            id: i as u64 + 1,
            name: name.clone(),
        })
        .collect();
    let mut take = |indices: &[usize]| DetectionSet {
        categories: categories.clone(),
        images: indices.iter().filter_map(|&i| built[i].take()).collect(),
    };
    Ok(LoadedSplits {
        train: take(&train),
        test: take(&test),
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    /// An object of a fixture: class and VOC `(xmin, ymin, xmax, ymax)`.
    type Obj<'a> = (&'a str, [i32; 4]);

    fn voc_xml(
        filename: &str,
        size: Option<(u32, u32)>,
        objects: &[Obj],
        difficult: bool,
    ) -> String {
        let mut xml =
            format!("<annotation>\n  <folder>images</folder>\n  <filename>{filename}</filename>\n");
        if let Some((w, h)) = size {
            writeln!(
                xml,
                "  <size><width>{w}</width><height>{h}</height><depth>3</depth></size>"
            )
            .unwrap();
        }
        for (name, [x1, y1, x2, y2]) in objects {
            writeln!(
                xml,
                "  <object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>\
                 <difficult>{}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>\
                 <xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>",
                difficult as u8
            )
            .unwrap();
        }
        xml + "</annotation>\n"
    }

    fn write_image(path: &Path, (w, h): (u32, u32)) {
        image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]))
            .save(path)
            .unwrap();
    }

    /// A flat data set of `n` 32×24 images `img-<i>.{jpg|png}`, each with one "cat" box and
    /// every third with a "dog"; returns its root.
    fn flat(dir: &Path, n: usize) -> PathBuf {
        let root = dir.join("set");
        fs::create_dir_all(root.join("images")).unwrap();
        fs::create_dir_all(root.join("annotations")).unwrap();
        for i in 0..n {
            let name = format!("img-{i}.{}", if i % 2 == 0 { "jpg" } else { "png" });
            write_image(&root.join("images").join(&name), (32, 24));
            let mut objects = vec![("cat", [1, 1, 10, 12])];
            if i % 3 == 0 {
                objects.push(("dog", [5, 6, 32, 24]));
            }
            let xml = voc_xml(&name, Some((32, 24)), &objects, false);
            fs::write(root.join("annotations").join(format!("img-{i}.xml")), xml).unwrap();
        }
        root
    }

    fn load(path: &Path, options: &LoadOptions) -> Result<LoadedSplits> {
        // Nothing is extracted: these tests load folders.
        load_with_cache(path, options, Path::new("/nonexistent/kiln-cache"))
    }

    fn boxes(set: &DetectionSet) -> usize {
        set.images.iter().map(|im| im.objects.len()).sum()
    }

    #[test]
    fn flat_layout_is_split_by_seed() {
        let dir = tempfile::tempdir().unwrap();
        let root = flat(dir.path(), 10);
        let data = load(&root, &LoadOptions::default()).unwrap();
        assert_eq!((data.train.images.len(), data.test.images.len()), (8, 2));
        assert_eq!(
            data.report.split,
            SplitSource::Seeded {
                seed: 0,
                test_fraction: 0.2
            }
        );
        assert_eq!(boxes(&data.train) + boxes(&data.test), 14);
        let names: Vec<&str> = data
            .train
            .categories
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["cat", "dog"]);
        assert_eq!(data.train.categories[1].id, 2);
        assert_eq!(data.test.categories, data.train.categories);
        // Ids number the sorted annotation files from 1: img-0, img-1, img-2, …, img-9.
        let mut ids: Vec<u64> = data
            .train
            .images
            .iter()
            .chain(&data.test.images)
            .map(|im| im.id)
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, (1..=10).collect::<Vec<_>>());
        let first = data
            .train
            .images
            .iter()
            .chain(&data.test.images)
            .find(|im| im.id == 1)
            .unwrap();
        assert_eq!(first.path, root.join("images/img-0.jpg"));
        assert_eq!((first.width, first.height), (32, 24));
        // VOC (1, 1, 10, 12) is (0, 0, 10, 12); the dog box touches the border, unclipped.
        assert_eq!(
            first.objects[0].bbox,
            BoundingBox {
                x1: 0.0,
                y1: 0.0,
                x2: 10.0,
                y2: 12.0
            }
        );
        assert_eq!(first.objects[0].area, 120.0);
        assert_eq!(
            first.objects[1].bbox,
            BoundingBox {
                x1: 4.0,
                y1: 5.0,
                x2: 32.0,
                y2: 24.0
            }
        );
        assert_eq!(
            (data.report.clipped_boxes, data.report.resized_annotations),
            (0, 0)
        );
        assert!(data.report.skipped_images.is_empty());
    }

    #[test]
    fn seeded_split_is_deterministic_and_follows_the_fraction() {
        let dir = tempfile::tempdir().unwrap();
        let root = flat(dir.path(), 20);
        let ids =
            |data: &LoadedSplits| -> Vec<u64> { data.test.images.iter().map(|im| im.id).collect() };
        let options = LoadOptions {
            test_fraction: 0.25,
            seed: 3,
            ..LoadOptions::default()
        };
        let a = load(&root, &options).unwrap();
        assert_eq!((a.train.images.len(), a.test.images.len()), (15, 5));
        assert_eq!(ids(&load(&root, &options).unwrap()), ids(&a));
        let other = load(
            &root,
            &LoadOptions {
                seed: 4,
                ..options.clone()
            },
        )
        .unwrap();
        assert_ne!(ids(&other), ids(&a));
        for bad in [0.0, 1.0, 1.5] {
            let err = load(
                &root,
                &LoadOptions {
                    test_fraction: bad,
                    ..options.clone()
                },
            )
            .unwrap_err();
            assert!(matches!(err, DetectError::Invalid { .. }), "{err}");
        }
    }

    #[test]
    fn split_files_are_used_with_or_without_extensions() {
        let dir = tempfile::tempdir().unwrap();
        let root = flat(dir.path(), 5);
        fs::create_dir(root.join("splits")).unwrap();
        fs::write(
            root.join("splits/train.txt"),
            "img-0.jpg\nimg-1.png\nimg-3\n",
        )
        .unwrap();
        fs::write(root.join("splits/test.txt"), "img-4.jpg\n").unwrap();
        let data = load(&root, &LoadOptions::default()).unwrap();
        let ids = |s: &DetectionSet| s.images.iter().map(|im| im.id).collect::<Vec<_>>();
        assert_eq!(ids(&data.train), [1, 2, 4]);
        assert_eq!(ids(&data.test), [5]);
        assert_eq!(data.report.split, SplitSource::Files(root.join("splits")));

        fs::write(root.join("splits/test.txt"), "img-4.jpg\nimg-9.jpg\n").unwrap();
        let err = load(&root, &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("test.txt: line 2 names `img-9.jpg`, which has no annotation"),
            "{err}"
        );
        fs::write(root.join("splits/test.txt"), "img-0\n").unwrap();
        let err = load(&root, &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("test.txt: line 1 names `img-0`, which is already listed in"),
            "{err}"
        );
        assert!(err.contains("train.txt"), "{err}");
    }

    #[test]
    fn vocdevkit_layout_inside_its_parent_folders() {
        let dir = tempfile::tempdir().unwrap();
        let year = dir.path().join("VOCdevkit/VOC2007");
        for sub in ["JPEGImages", "Annotations", "ImageSets/Main"] {
            fs::create_dir_all(year.join(sub)).unwrap();
        }
        for i in 1..=4 {
            let stem = format!("{i:06}");
            write_image(&year.join(format!("JPEGImages/{stem}.jpg")), (20, 10));
            // The filename is missing for one file: found by the XML's stem.
            let filename = if i == 2 {
                String::new()
            } else {
                format!("{stem}.jpg")
            };
            let xml = voc_xml(
                &filename,
                Some((20, 10)),
                &[("person", [2, 2, 8, 9])],
                i == 3,
            );
            fs::write(year.join(format!("Annotations/{stem}.xml")), xml).unwrap();
        }
        let main = year.join("ImageSets/Main");
        fs::write(main.join("train.txt"), "000001\n").unwrap();
        fs::write(main.join("val.txt"), "000002\n").unwrap();
        fs::write(main.join("trainval.txt"), "000001\n000002\n").unwrap();
        fs::write(main.join("test.txt"), "000003\n000004\n").unwrap();
        // Found from the folder above VOCdevkit (two levels down).
        let data = load(dir.path(), &LoadOptions::default()).unwrap();
        assert_eq!(data.report.split, SplitSource::Files(main.clone()));
        assert_eq!(data.train.images.len(), 2);
        assert_eq!(data.test.images.len(), 2);
        assert_eq!(
            data.train.images[1].path,
            year.join("JPEGImages/000002.jpg")
        );
        assert!(data.test.images[0].objects[0].difficult);
        assert!(!data.test.images[1].objects[0].difficult);

        // Without test.txt: train.txt against val.txt.
        fs::remove_file(main.join("test.txt")).unwrap();
        let data = load(&year, &LoadOptions::default()).unwrap();
        assert_eq!((data.train.images[0].id, data.test.images[0].id), (1, 2));
        assert_eq!((data.train.images.len(), data.test.images.len()), (1, 1));

        // SegmentationObject/000001.png gives image 1's object its mask (index 1); a mask of
        // the wrong size is an error naming it.
        let masks = year.join("SegmentationObject");
        fs::create_dir_all(&masks).unwrap();
        let mut indices = image::GrayImage::new(20, 10);
        for y in 2..9 {
            for x in 2..8 {
                indices.put_pixel(x, y, image::Luma([1]));
            }
        }
        indices.save(masks.join("000001.png")).unwrap();
        let data = load(&year, &LoadOptions::default()).unwrap();
        let mask = data.train.images[0].objects[0].mask.as_ref().unwrap();
        assert_eq!(mask.area(), 42);
        assert!(data.test.images[0].objects[0].mask.is_none());
        image::GrayImage::new(10, 10)
            .save(masks.join("000001.png"))
            .unwrap();
        let err = load(&year, &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("000001.png") && err.contains("is 10x10"),
            "{err}"
        );
    }

    #[test]
    fn archives_are_extracted_into_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        flat(&dir.path().join("src"), 4);
        let archive = dir.path().join("tiny-voc.tar.gz");
        // kiln-detect has no tar writer of its own: the system's `tar` builds the fixture.
        let made = std::process::Command::new("tar")
            .arg("czf")
            .arg(&archive)
            .arg("-C")
            .arg(dir.path().join("src"))
            .arg("set")
            .status();
        if !made.is_ok_and(|status| status.success()) {
            eprintln!("skipped: no working `tar` command to build the archive fixture");
            return;
        }
        let cache = dir.path().join("cache");
        let data = load_with_cache(&archive, &LoadOptions::default(), &cache).unwrap();
        assert_eq!(data.train.images.len() + data.test.images.len(), 4);
        assert!(
            data.train.images[0]
                .path
                .starts_with(cache.join("extracted"))
        );
        // A second load reuses the extraction.
        let again = load_with_cache(&archive, &LoadOptions::default(), &cache).unwrap();
        assert_eq!(again, data);
        assert_eq!(fs::read_dir(cache.join("extracted")).unwrap().count(), 1);
    }

    #[test]
    fn boxes_crossing_the_border_are_clipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let root = flat(dir.path(), 2);
        let xml = voc_xml(
            "img-0.jpg",
            None,
            &[("cat", [0, -3, 40, 12]), ("cat", [3, 3, 5, 5])],
            false,
        );
        fs::write(root.join("annotations/img-0.xml"), xml).unwrap();
        let data = load(&root, &LoadOptions::default()).unwrap();
        assert_eq!(data.report.clipped_boxes, 1);
        let image = data
            .train
            .images
            .iter()
            .chain(&data.test.images)
            .find(|im| im.id == 1)
            .unwrap();
        assert_eq!(
            image.objects[0].bbox,
            BoundingBox {
                x1: 0.0,
                y1: 0.0,
                x2: 32.0,
                y2: 12.0
            }
        );
        assert_eq!(image.objects[0].area, 384.0);
    }

    #[test]
    fn a_wrong_size_is_replaced_by_the_image_size_and_boxes_scaled() {
        let dir = tempfile::tempdir().unwrap();
        let root = flat(dir.path(), 2);
        // Annotated at half the image's size.
        let xml = voc_xml("img-0.jpg", Some((16, 12)), &[("cat", [3, 3, 8, 6])], false);
        fs::write(root.join("annotations/img-0.xml"), xml).unwrap();
        let data = load(&root, &LoadOptions::default()).unwrap();
        assert_eq!(data.report.resized_annotations, 1);
        let image = data
            .train
            .images
            .iter()
            .chain(&data.test.images)
            .find(|im| im.id == 1)
            .unwrap();
        assert_eq!((image.width, image.height), (32, 24));
        assert_eq!(
            image.objects[0].bbox,
            BoundingBox {
                x1: 4.0,
                y1: 4.0,
                x2: 16.0,
                y2: 12.0
            }
        );
    }

    #[test]
    fn class_list_orders_and_restricts() {
        let dir = tempfile::tempdir().unwrap();
        let root = flat(dir.path(), 4);
        let classes = Some(vec![
            "dog".to_string(),
            "cat".to_string(),
            "bird".to_string(),
        ]);
        let data = load(
            &root,
            &LoadOptions {
                classes,
                ..LoadOptions::default()
            },
        )
        .unwrap();
        let names: Vec<_> = data
            .test
            .categories
            .iter()
            .map(|c| (c.id, c.name.as_str()))
            .collect();
        assert_eq!(names, [(1, "dog"), (2, "cat"), (3, "bird")]);
        let cat = data
            .train
            .images
            .iter()
            .chain(&data.test.images)
            .flat_map(|im| &im.objects)
            .next()
            .unwrap();
        assert_eq!(cat.class, 1);

        let only_cat = Some(vec!["cat".to_string()]);
        let err = load(
            &root,
            &LoadOptions {
                classes: only_cat,
                ..LoadOptions::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("img-0.xml: object 2 has class `dog`, which is not one of"),
            "{err}"
        );
        for bad in [
            vec![],
            vec!["a".to_string(), "a".to_string()],
            vec![" a".to_string()],
        ] {
            let err = load(
                &root,
                &LoadOptions {
                    classes: Some(bad),
                    ..LoadOptions::default()
                },
            )
            .unwrap_err();
            assert!(matches!(err, DetectError::Invalid { .. }), "{err}");
        }
    }

    #[test]
    fn bad_annotations_name_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = flat(dir.path(), 3);
        let cases = [
            (
                "<annotation><object>".to_string(),
                "img-1.xml: malformed XML",
            ),
            (
                voc_xml("img-1.png", None, &[("cat", [40, 30, 50, 40])], false),
                "img-1.xml: object 1 (cat): box (39, 29, 50, 40) lies wholly outside the 32x24 image",
            ),
            (
                voc_xml("img-1.png", None, &[("cat", [9, 3, 4, 8])], false),
                "img-1.xml: object 1 (cat): box has xmax 4 <= xmin 9",
            ),
            (
                voc_xml("img-1.png", None, &[("cat", [3, 9, 8, 9])], false),
                "img-1.xml: object 1 (cat): box has ymax 9 <= ymin 9",
            ),
        ];
        for (xml, expected) in cases {
            fs::write(root.join("annotations/img-1.xml"), xml).unwrap();
            let err = load(
                &root,
                &LoadOptions {
                    skip_bad_images: true,
                    ..LoadOptions::default()
                },
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains(expected), "{err} lacks {expected}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn missing_and_truncated_images_fail_or_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let root = flat(dir.path(), 6);
        fs::remove_file(root.join("images/img-1.png")).unwrap();
        let jpeg = fs::read(root.join("images/img-2.jpg")).unwrap();
        fs::write(root.join("images/img-2.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();

        let err = load(&root, &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("img-1.xml: its image") && err.contains("img-1.png does not exist"),
            "{err}"
        );
        fs::copy(root.join("images/img-3.png"), root.join("images/img-1.png")).unwrap();
        let err = load(&root, &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("img-2.jpg: cannot decode image"), "{err}");
        fs::remove_file(root.join("images/img-1.png")).unwrap();

        let options = LoadOptions {
            skip_bad_images: true,
            ..LoadOptions::default()
        };
        let data = load(&root, &options).unwrap();
        let skipped: Vec<&Path> = data
            .report
            .skipped_images
            .iter()
            .map(|(p, _)| p.as_path())
            .collect();
        assert_eq!(
            skipped,
            [root.join("images/img-1.png"), root.join("images/img-2.jpg")]
        );
        assert!(
            data.report.skipped_images[1].1.contains("cut short"),
            "{:?}",
            data.report.skipped_images
        );
        assert_eq!(data.train.images.len() + data.test.images.len(), 4);
        // The others keep their ids.
        let mut ids: Vec<u64> = data
            .train
            .images
            .iter()
            .chain(&data.test.images)
            .map(|im| im.id)
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, [1, 4, 5, 6]);
    }

    #[test]
    fn folders_without_a_data_set_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(&dir.path().join("nope"), &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope: no such file or folder"), "{err}");
        fs::create_dir(dir.path().join("empty")).unwrap();
        let err = load(&dir.path().join("empty"), &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("empty: holds no detection data set"), "{err}");
        let file = dir.path().join("x.txt");
        fs::write(&file, "x").unwrap();
        let err = load(&file, &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.txt: is a file"), "{err}");
        let two = dir.path().join("two");
        flat(&two.join("a"), 2);
        flat(&two.join("b"), 2);
        let err = load(&two, &LoadOptions::default()).unwrap_err().to_string();
        assert!(err.contains("holds 2 detection data sets"), "{err}");
    }
}
