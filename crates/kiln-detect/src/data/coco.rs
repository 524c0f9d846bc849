//! COCO instances files (`instances_*.json`): images, box annotations and categories.
//!
//! Read: `images` (`id`, `file_name`, `width`, `height`), `annotations` (`id`, `image_id`,
//! `category_id`, `bbox` as `[x, y, w, h]`, `area`, optional `iscrowd`) and `categories`
//! (`id`, `name`), and an annotation's `segmentation` (polygons or RLE, see
//! [`super::segmentation`]) as its instance mask; other fields (licences, …) are ignored.
//! Written: the same fields (masks as compressed RLE), plus `"difficult": 1` on difficult
//! objects (a kiln extension other readers ignore, so that a VOC set survives a round trip
//! through COCO).
//!
//! Class indices follow the categories sorted by id, as `pycocotools`' `getCatIds` orders them.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::segmentation::{CompressedRle, parse_segmentation};
use super::voc::format_error;
use super::{AnnotatedImage, BoundingBox, Category, DetectionSet, Object};
use crate::{DetectError, Result};

/// The largest JSON file read (COCO 2017's train annotations are about 450 MiB).
pub(crate) const MAX_JSON_BYTES: u64 = 2 << 30;

/// An instances file; `A` is [`CocoAnnotation`] when reading and [`CocoAnnotationOut`] when
/// writing.
#[derive(Serialize, Deserialize)]
struct CocoFile<A> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    info: Option<serde_json::Value>,
    images: Vec<CocoImage>,
    annotations: Vec<A>,
    categories: Vec<CocoCategory>,
}

#[derive(Serialize, Deserialize)]
struct CocoImage {
    id: u64,
    file_name: String,
    width: u32,
    height: u32,
}

/// An annotation as read (numbers as `f64`, optional fields optional).
#[derive(Deserialize)]
struct CocoAnnotation {
    id: u64,
    image_id: u64,
    category_id: u64,
    bbox: [f64; 4],
    #[serde(default)]
    area: Option<f64>,
    #[serde(default)]
    iscrowd: Option<u8>,
    #[serde(default)]
    difficult: Option<u8>,
    #[serde(default)]
    segmentation: Option<serde_json::Value>,
}

/// An annotation as written (`f32` numbers, printed in their shortest exact form).
#[derive(Serialize)]
struct CocoAnnotationOut {
    id: u64,
    image_id: u64,
    category_id: u64,
    bbox: [f32; 4],
    area: f32,
    iscrowd: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    difficult: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    segmentation: Option<CompressedRle>,
}

#[derive(Serialize, Deserialize)]
struct CocoCategory {
    id: u64,
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    supercategory: Option<String>,
}

/// Reads a file of at most [`MAX_JSON_BYTES`] and parses it as `T`, naming `what` it should be
/// in the error.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let len = std::fs::metadata(path)
        .map_err(|e| DetectError::io(path, e))?
        .len();
    if len > MAX_JSON_BYTES {
        return Err(format_error(
            path,
            format!("is {len} bytes, more than the {MAX_JSON_BYTES} bytes kiln reads"),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| DetectError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| format_error(path, format!("not {what}: {e}")))
}

/// Writes `bytes` to `path` atomically: to a temporary file in the same folder, synced, then
/// renamed over `path`, so a failure never leaves a half-written file under the final name.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        DetectError::invalid("output path", format!("{} names no file", path.display()))
    })?;
    // Unique per process and call, so that concurrent writers never share a temporary file.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let temp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let write = || -> Result<()> {
        let mut file = std::fs::File::create(&temp).map_err(|e| DetectError::io(&temp, e))?;
        file.write_all(bytes)
            .map_err(|e| DetectError::io(&temp, e))?;
        file.sync_all().map_err(|e| DetectError::io(&temp, e))?;
        std::fs::rename(&temp, path).map_err(|e| DetectError::io(path, e))
    };
    let result = write();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Reads a COCO instances file; image paths are `image_dir/<file_name>`.
///
/// Errors name the file and, for a bad annotation, its id: malformed JSON or missing fields,
/// duplicate image, annotation or category ids, an annotation whose `image_id` or
/// `category_id` is unknown, a box with non-positive or non-finite width or height, a box
/// wholly outside its image, a negative area, an `iscrowd` other than 0 or 1, an image of zero
/// size, a `file_name` that is absolute or leads out of `image_dir`, a bad `segmentation`
/// (a polygon of fewer than 3 points, an RLE whose size is not the image's or whose counts do
/// not sum to its pixels).
pub fn read_coco_instances(json: &Path, image_dir: &Path) -> Result<DetectionSet> {
    let file: CocoFile<CocoAnnotation> = read_json(json, "COCO instances JSON")?;
    let bad = |reason: String| format_error(json, reason);

    let mut categories: Vec<&CocoCategory> = file.categories.iter().collect();
    categories.sort_by_key(|c| c.id);
    let mut class_of = HashMap::new();
    for (class, c) in categories.iter().enumerate() {
        if class_of.insert(c.id, class).is_some() {
            return Err(bad(format!("category id {} appears twice", c.id)));
        }
    }

    let mut images = Vec::with_capacity(file.images.len());
    let mut index_of = HashMap::new();
    for im in &file.images {
        if index_of.insert(im.id, images.len()).is_some() {
            return Err(bad(format!("image id {} appears twice", im.id)));
        }
        if im.width == 0 || im.height == 0 {
            return Err(bad(format!(
                "image {} ({}) has size {}x{}",
                im.id, im.file_name, im.width, im.height
            )));
        }
        let relative = Path::new(&im.file_name);
        let escapes = relative.components().any(|c| {
            !matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        });
        if im.file_name.is_empty() || escapes {
            return Err(bad(format!(
                "image {} has file_name `{}`; it must be a relative path inside the image folder",
                im.id, im.file_name
            )));
        }
        images.push(AnnotatedImage {
            id: im.id,
            path: image_dir.join(relative),
            width: im.width,
            height: im.height,
            objects: Vec::new(),
        });
    }

    let mut annotation_ids = HashSet::new();
    for a in &file.annotations {
        let bad = |reason: String| bad(format!("annotation {}: {reason}", a.id));
        if !annotation_ids.insert(a.id) {
            return Err(bad("its id appears twice".into()));
        }
        let &index = index_of
            .get(&a.image_id)
            .ok_or_else(|| bad(format!("image_id {} is not in `images`", a.image_id)))?;
        let &class = class_of.get(&a.category_id).ok_or_else(|| {
            bad(format!(
                "category_id {} is not in `categories`",
                a.category_id
            ))
        })?;
        let [x, y, w, h] = a.bbox;
        if !(w > 0.0 && h > 0.0 && w.is_finite() && h.is_finite() && x.is_finite() && y.is_finite())
        {
            return Err(bad(format!(
                "bbox [{x}, {y}, {w}, {h}] needs a finite position and positive width and height"
            )));
        }
        let image = &mut images[index];
        let (x2, y2) = (x + w, y + h);
        if x >= image.width as f64 || y >= image.height as f64 || x2 <= 0.0 || y2 <= 0.0 {
            return Err(bad(format!(
                "bbox [{x}, {y}, {w}, {h}] lies wholly outside its {}x{} image",
                image.width, image.height
            )));
        }
        let area = match a.area {
            None => w * h,
            Some(area) if area.is_finite() && area >= 0.0 => area,
            Some(area) => return Err(bad(format!("area {area} is not a non-negative number"))),
        };
        let flag = |value: Option<u8>, name: &str| match value {
            None | Some(0) => Ok(false),
            Some(1) => Ok(true),
            Some(v) => Err(bad(format!("{name} is {v}, expected 0 or 1"))),
        };
        let crowd = flag(a.iscrowd, "iscrowd")?;
        let difficult = flag(a.difficult, "difficult")?;
        let mask = match &a.segmentation {
            None => None,
            Some(value) => parse_segmentation(value, image.height, image.width).map_err(bad)?,
        };
        image.objects.push(Object {
            bbox: BoundingBox {
                x1: x as f32,
                y1: y as f32,
                x2: x2 as f32,
                y2: y2 as f32,
            },
            class,
            area: area as f32,
            difficult,
            crowd,
            mask,
        });
    }

    Ok(DetectionSet {
        categories: categories
            .iter()
            .map(|c| Category {
                id: c.id,
                name: c.name.clone(),
            })
            .collect(),
        images,
    })
}

/// The deepest folder holding every one of `paths` (their files' common ancestor).
fn common_folder(paths: &[&Path]) -> PathBuf {
    let mut common: Option<PathBuf> = None;
    for path in paths {
        let parent = path.parent().unwrap_or(Path::new(""));
        common = Some(match common {
            None => parent.to_path_buf(),
            Some(c) => c
                .components()
                .zip(parent.components())
                .take_while(|(a, b)| a == b)
                .map(|(a, _)| a)
                .collect(),
        });
    }
    common.unwrap_or_default()
}

/// Writes `set` as a COCO instances file, atomically.
///
/// Each `file_name` is the image's path relative to the deepest folder holding all the images
/// (its plain file name when they share one folder), so that [`read_coco_instances`] with that
/// folder reads the same set back. Annotation ids are numbered from 1 in image order; `bbox` is
/// `[x1, y1, x2 - x1, y2 - y1]`.
pub fn write_coco_instances(set: &DetectionSet, json: &Path) -> Result<()> {
    let paths: Vec<&Path> = set.images.iter().map(|im| im.path.as_path()).collect();
    let root = common_folder(&paths);
    let mut next_id = 1u64;
    let mut annotations = Vec::new();
    for image in &set.images {
        for object in &image.objects {
            let category = set.categories.get(object.class).ok_or_else(|| {
                DetectError::invalid(
                    "detection set",
                    format!(
                        "image {} has an object of class {}, but there are only {} categories",
                        image.id,
                        object.class,
                        set.categories.len()
                    ),
                )
            })?;
            let b = object.bbox;
            let finite = [b.x1, b.y1, b.x2, b.y2, object.area]
                .iter()
                .all(|v| v.is_finite());
            if !finite {
                return Err(DetectError::invalid(
                    "detection set",
                    format!(
                        "image {} has an object with box {b:?} and area {}; COCO needs finite numbers",
                        image.id, object.area
                    ),
                ));
            }
            annotations.push(CocoAnnotationOut {
                id: next_id,
                image_id: image.id,
                category_id: category.id,
                bbox: [b.x1, b.y1, b.x2 - b.x1, b.y2 - b.y1],
                area: object.area,
                iscrowd: object.crowd as u8,
                difficult: object.difficult.then_some(1),
                segmentation: object.mask.as_ref().map(CompressedRle::from),
            });
            next_id += 1;
        }
    }
    let file = CocoFile {
        info: Some(serde_json::json!({ "description": "written by kiln" })),
        images: set
            .images
            .iter()
            .map(|im| CocoImage {
                id: im.id,
                file_name: im
                    .path
                    .strip_prefix(&root)
                    .unwrap_or(&im.path)
                    .to_string_lossy()
                    .replace('\\', "/"),
                width: im.width,
                height: im.height,
            })
            .collect(),
        annotations,
        categories: set
            .categories
            .iter()
            .map(|c| CocoCategory {
                id: c.id,
                name: c.name.clone(),
                supercategory: None,
            })
            .collect(),
    };
    let bytes = serde_json::to_vec(&file)
        .map_err(|e| format_error(json, format!("cannot encode COCO JSON: {e}")))?;
    write_atomically(json, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_set(dir: &Path) -> DetectionSet {
        let bbox = |x1, y1, x2, y2| BoundingBox { x1, y1, x2, y2 };
        DetectionSet {
            categories: vec![
                Category {
                    id: 1,
                    name: "cat".into(),
                },
                Category {
                    id: 3,
                    name: "dog".into(),
                },
            ],
            images: vec![
                AnnotatedImage {
                    id: 1,
                    path: dir.join("a.jpg"),
                    width: 40,
                    height: 30,
                    objects: vec![
                        Object {
                            bbox: bbox(0.0, 1.0, 10.0, 20.0),
                            class: 0,
                            area: 190.0,
                            difficult: false,
                            crowd: false,
                            mask: Some(crate::data::polygon_to_rle(
                                &[0.0, 1.0, 10.0, 1.0, 5.0, 20.0],
                                30,
                                40,
                            )),
                        },
                        Object {
                            bbox: bbox(2.5, 3.25, 39.75, 30.0),
                            class: 1,
                            area: 12.0,
                            difficult: true,
                            crowd: false,
                            mask: None,
                        },
                    ],
                },
                AnnotatedImage {
                    id: 7,
                    path: dir.join("b.png"),
                    width: 8,
                    height: 9,
                    objects: vec![Object {
                        bbox: bbox(1.0, 1.0, 3.0, 4.0),
                        class: 1,
                        area: 6.0,
                        difficult: false,
                        crowd: true,
                        mask: None,
                    }],
                },
                AnnotatedImage {
                    id: 8,
                    path: dir.join("c.png"),
                    width: 5,
                    height: 5,
                    objects: vec![],
                },
            ],
        }
    }

    #[test]
    fn instances_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let set = sample_set(&dir.path().join("images"));
        let json = dir.path().join("instances.json");
        write_coco_instances(&set, &json).unwrap();
        let back = read_coco_instances(&json, &dir.path().join("images")).unwrap();
        assert_eq!(back, set);
        // Nothing but the file is left in the folder.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["instances.json"]);
    }

    #[test]
    fn categories_are_ordered_by_id_and_area_defaults_to_the_box() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("i.json");
        std::fs::write(
            &json,
            r#"{"images":[{"id":5,"file_name":"x.jpg","width":10,"height":10,"license":1}],
                "annotations":[{"id":9,"image_id":5,"category_id":2,"bbox":[1,2,3,4],"segmentation":[]}],
                "categories":[{"id":4,"name":"b"},{"id":2,"name":"a"}]}"#,
        )
        .unwrap();
        let set = read_coco_instances(&json, Path::new("imgs")).unwrap();
        assert_eq!(set.categories[0].name, "a");
        let object = &set.images[0].objects[0];
        assert_eq!((object.class, object.area, object.crowd), (0, 12.0, false));
        assert_eq!(
            object.bbox,
            BoundingBox {
                x1: 1.0,
                y1: 2.0,
                x2: 4.0,
                y2: 6.0
            }
        );
        assert_eq!(set.images[0].path, Path::new("imgs/x.jpg"));
    }

    #[test]
    fn bad_instances_name_the_file_and_annotation() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("bad.json");
        let with = |annotation: &str, image: &str| {
            format!(
                r#"{{"images":[{image}],"annotations":[{annotation}],"categories":[{{"id":1,"name":"a"}}]}}"#
            )
        };
        let image = r#"{"id":1,"file_name":"x.jpg","width":10,"height":10}"#;
        let cases = [
            ("{".to_string(), "not COCO instances JSON"),
            (r#"{"images":[]}"#.to_string(), "missing field"),
            (
                with(
                    r#"{"id":4,"image_id":2,"category_id":1,"bbox":[0,0,1,1]}"#,
                    image,
                ),
                "annotation 4: image_id 2",
            ),
            (
                with(
                    r#"{"id":5,"image_id":1,"category_id":9,"bbox":[0,0,1,1]}"#,
                    image,
                ),
                "annotation 5: category_id 9",
            ),
            (
                with(
                    r#"{"id":6,"image_id":1,"category_id":1,"bbox":[0,0,0,1]}"#,
                    image,
                ),
                "annotation 6: bbox",
            ),
            (
                with(
                    r#"{"id":7,"image_id":1,"category_id":1,"bbox":[0,0,1,-2]}"#,
                    image,
                ),
                "annotation 7: bbox",
            ),
            (
                with(
                    r#"{"id":8,"image_id":1,"category_id":1,"bbox":[20,0,1,1]}"#,
                    image,
                ),
                "annotation 8: bbox [20, 0, 1, 1] lies wholly outside",
            ),
            (
                with(
                    r#"{"id":9,"image_id":1,"category_id":1,"bbox":[0,0,1,1],"iscrowd":2}"#,
                    image,
                ),
                "annotation 9: iscrowd is 2",
            ),
            (
                with(
                    r#"{"id":3,"image_id":1,"category_id":1,"bbox":[0,0,1,1],"area":-1}"#,
                    image,
                ),
                "annotation 3: area -1",
            ),
            (
                with(
                    r#"{"id":11,"image_id":1,"category_id":1,"bbox":[0,0,1,1],"segmentation":[[0,0,1,1]]}"#,
                    image,
                ),
                "annotation 11: segmentation polygon 0 has 2 points",
            ),
            (
                with(
                    r#"{"id":12,"image_id":1,"category_id":1,"bbox":[0,0,1,1],"segmentation":{"size":[10,10],"counts":[3,4]}}"#,
                    image,
                ),
                "annotation 12: RLE counts sum to 7",
            ),
            (
                with(
                    r#"{"id":13,"image_id":1,"category_id":1,"bbox":[0,0,1,1],"segmentation":{"size":[10,12],"counts":"1"}}"#,
                    image,
                ),
                "annotation 13: segmentation RLE has size [10, 12] but the image is 10×10",
            ),
            (
                with(
                    "",
                    r#"{"id":1,"file_name":"../x.jpg","width":10,"height":10}"#,
                ),
                "file_name `../x.jpg`",
            ),
            (
                with("", r#"{"id":1,"file_name":"x.jpg","width":0,"height":10}"#),
                "has size 0x10",
            ),
            (
                with("", &format!("{image},{image}")),
                "image id 1 appears twice",
            ),
        ];
        for (text, expected) in cases {
            std::fs::write(&json, text).unwrap();
            let err = read_coco_instances(&json, dir.path())
                .unwrap_err()
                .to_string();
            assert!(err.contains("bad.json: "), "{err}");
            assert!(err.contains(expected), "{err} lacks {expected}");
        }
    }

    #[test]
    fn a_failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let set = sample_set(dir.path());
        // The target is a folder: the rename fails and the temporary file is removed.
        let target = dir.path().join("out.json");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("keep"), b"k").unwrap();
        assert!(write_coco_instances(&set, &target).is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["out.json"]);
    }
}
