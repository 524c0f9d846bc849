//! COCO results files: a JSON list of `{image_id, category_id, bbox: [x, y, w, h], score}`, the
//! form detectors submit to the COCO evaluation server and `pycocotools`' `loadRes` reads; for
//! instance segmentation each entry also has a `segmentation` (compressed RLE).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::coco::{read_json, write_atomically};
use super::segmentation::{CompressedRle, parse_segmentation};
use super::voc::format_error;
use super::{BoundingBox, Detection, DetectionSet, MaskDetection, Rle};
use crate::{DetectError, Result};

/// One detection as read (numbers as `f64`).
#[derive(Deserialize)]
struct ResultIn {
    image_id: u64,
    category_id: u64,
    #[serde(default)]
    bbox: Option<[f64; 4]>,
    score: f64,
    #[serde(default)]
    segmentation: Option<serde_json::Value>,
}

/// One detection as written (`f32` numbers, printed in their shortest exact form).
#[derive(Serialize)]
struct ResultOut {
    image_id: u64,
    category_id: u64,
    bbox: [f32; 4],
    score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    segmentation: Option<CompressedRle>,
}

/// A results entry as read: the detection (its box from the mask when the entry has none)
/// and its mask, if any.
struct ReadEntry {
    detection: Detection,
    has_box: bool,
    mask: Option<Rle>,
}

/// Reads and checks a results file; see [`read_coco_results`].
fn read_entries(json: &Path, set: &DetectionSet, want_masks: bool) -> Result<Vec<ReadEntry>> {
    let entries: Vec<ResultIn> = read_json(json, "a COCO results JSON list")?;
    let images: HashMap<u64, [u32; 2]> = set
        .images
        .iter()
        .map(|im| (im.id, [im.height, im.width]))
        .collect();
    let classes: HashMap<u64, usize> = set
        .categories
        .iter()
        .enumerate()
        .map(|(class, c)| (c.id, class))
        .collect();
    entries
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let bad = |reason: String| {
                format_error(json, format!("detection {i} (image_id {}): {reason}", r.image_id))
            };
            let &[height, width] = images
                .get(&r.image_id)
                .ok_or_else(|| bad("image_id is not in the data set".into()))?;
            let &class = classes
                .get(&r.category_id)
                .ok_or_else(|| bad(format!("category_id {} is not a category", r.category_id)))?;
            if !r.score.is_finite() {
                return Err(bad(format!("score {} is not a finite number", r.score)));
            }
            let mask = match (&r.segmentation, want_masks) {
                (Some(value), true) => parse_segmentation(value, height, width).map_err(bad)?,
                _ => None,
            };
            if want_masks && mask.is_none() {
                return Err(bad(
                    "has no segmentation; mask results need one (compressed RLE)".into(),
                ));
            }
            let bbox = match (r.bbox, &mask) {
                (Some([x, y, w, h]), _) => {
                    if !(r.bbox.iter().flatten().all(|v| v.is_finite()) && w >= 0.0 && h >= 0.0) {
                        return Err(bad(format!(
                            "bbox [{x}, {y}, {w}, {h}] needs finite numbers and a non-negative width and height"
                        )));
                    }
                    BoundingBox {
                        x1: x as f32,
                        y1: y as f32,
                        x2: (x + w) as f32,
                        y2: (y + h) as f32,
                    }
                }
                (None, Some(mask)) => mask.bbox(),
                (None, None) => return Err(bad("has no bbox".into())),
            };
            Ok(ReadEntry {
                detection: Detection {
                    image_id: r.image_id,
                    class,
                    bbox,
                    score: r.score as f32,
                },
                has_box: r.bbox.is_some(),
                mask,
            })
        })
        .collect()
}

/// Reads a COCO results file for the images and categories of `set`.
///
/// `category_id`s are mapped to class indices through `set.categories`. Errors name the file
/// and the entry (its position in the list, from 0): malformed JSON, an `image_id` that is not
/// in `set`, an unknown `category_id`, a missing box, a box with a non-finite coordinate or a
/// negative width or height, a non-finite score. Segmentations are not read.
pub fn read_coco_results(json: &Path, set: &DetectionSet) -> Result<Vec<Detection>> {
    Ok(read_entries(json, set, false)?
        .into_iter()
        .map(|e| e.detection)
        .collect())
}

/// Reads a COCO `segm` results file: as [`read_coco_results`], and every entry needs a
/// `segmentation` of its image's size (compressed or uncompressed RLE, or polygons). An entry
/// without `bbox` gets its mask's box, and its mask's area for COCO's area ranges, as
/// pycocotools' `loadRes` gives them.
pub fn read_coco_mask_results(json: &Path, set: &DetectionSet) -> Result<Vec<MaskDetection>> {
    Ok(read_entries(json, set, true)?
        .into_iter()
        .filter_map(|e| {
            let mask = e.mask?;
            let area = if e.has_box {
                e.detection.bbox.width() as f64 * e.detection.bbox.height() as f64
            } else {
                mask.area() as f64
            };
            Some(MaskDetection {
                detection: e.detection,
                mask,
                area,
            })
        })
        .collect())
}

/// Writes results entries, checking image, class and numbers first.
fn write_entries<'a>(
    entries: impl Iterator<Item = (&'a Detection, Option<&'a Rle>)>,
    set: &DetectionSet,
    json: &Path,
) -> Result<()> {
    let images: HashSet<u64> = set.images.iter().map(|im| im.id).collect();
    let out = entries
        .enumerate()
        .map(|(i, (d, mask))| {
            let bad = |reason: String| DetectError::invalid(format!("detection {i}"), reason);
            if !images.contains(&d.image_id) {
                return Err(bad(format!(
                    "image id {} is not in the data set",
                    d.image_id
                )));
            }
            let category = set.categories.get(d.class).ok_or_else(|| {
                bad(format!(
                    "class {} has no category (there are {})",
                    d.class,
                    set.categories.len()
                ))
            })?;
            let b = d.bbox;
            let bbox = [b.x1, b.y1, b.x2 - b.x1, b.y2 - b.y1];
            if !(bbox.iter().all(|v| v.is_finite()) && d.score.is_finite()) {
                return Err(bad(format!("box {b:?} or score {} is not finite", d.score)));
            }
            Ok(ResultOut {
                image_id: d.image_id,
                category_id: category.id,
                bbox,
                score: d.score,
                segmentation: mask.map(CompressedRle::from),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = serde_json::to_vec(&out)
        .map_err(|e| format_error(json, format!("cannot encode COCO results: {e}")))?;
    write_atomically(json, &bytes)
}

/// Writes `detections` as a COCO results file, atomically, with class indices mapped to the
/// category ids of `set`.
///
/// Refuses (as [`DetectError::Invalid`]) a detection of an image not in `set`, of a class
/// index with no category, or with a non-finite box or score.
pub fn write_coco_results(detections: &[Detection], set: &DetectionSet, json: &Path) -> Result<()> {
    write_entries(detections.iter().map(|d| (d, None)), set, json)
}

/// Writes mask detections as a COCO `segm` results file (box, score and compressed-RLE
/// segmentation per entry), atomically; refuses what [`write_coco_results`] refuses.
pub fn write_coco_mask_results(
    detections: &[MaskDetection],
    set: &DetectionSet,
    json: &Path,
) -> Result<()> {
    write_entries(
        detections.iter().map(|d| (&d.detection, Some(&d.mask))),
        set,
        json,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{AnnotatedImage, Category};

    fn set() -> DetectionSet {
        let image = |id| AnnotatedImage {
            id,
            path: format!("{id}.jpg").into(),
            width: 50,
            height: 40,
            objects: vec![],
        };
        DetectionSet {
            categories: vec![
                Category {
                    id: 1,
                    name: "cat".into(),
                },
                Category {
                    id: 18,
                    name: "dog".into(),
                },
            ],
            images: vec![image(3), image(4)],
        }
    }

    fn detection(image_id: u64, class: usize, x1: f32, score: f32) -> Detection {
        Detection {
            image_id,
            class,
            bbox: BoundingBox {
                x1,
                y1: 2.25,
                x2: 30.5,
                y2: 39.0,
            },
            score,
        }
    }

    #[test]
    fn results_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("results.json");
        let detections = vec![
            detection(3, 1, 1.0, 0.9),
            detection(4, 0, 0.5, 0.123_456_79),
            detection(3, 0, 12.75, 1e-4),
        ];
        write_coco_results(&detections, &set(), &json).unwrap();
        let text = std::fs::read_to_string(&json).unwrap();
        assert!(text.contains(r#""category_id":18"#), "{text}");
        assert_eq!(read_coco_results(&json, &set()).unwrap(), detections);
        write_coco_results(&[], &set(), &json).unwrap();
        assert_eq!(read_coco_results(&json, &set()).unwrap(), []);
    }

    #[test]
    fn mask_results_round_trip_and_take_the_mask_box_when_they_have_none() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("segm.json");
        let mut pixels = vec![0u8; 40 * 50];
        pixels[10 * 50 + 20..10 * 50 + 25].fill(1);
        let mask = Rle::from_bitmap(&pixels, 40, 50);
        let detections = vec![MaskDetection {
            detection: detection(3, 1, 1.0, 0.75),
            mask: mask.clone(),
            area: 29.5 * 36.75,
        }];
        write_coco_mask_results(&detections, &set(), &json).unwrap();
        let text = std::fs::read_to_string(&json).unwrap();
        assert!(
            text.contains(r#""segmentation":{"size":[40,50],"counts":"#),
            "{text}"
        );
        assert_eq!(read_coco_mask_results(&json, &set()).unwrap(), detections);
        // Without a box: the mask's box and area, as pycocotools' loadRes.
        let entry = format!(
            r#"[{{"image_id":4,"category_id":1,"score":0.5,"segmentation":{{"size":[40,50],"counts":"{}"}}}}]"#,
            mask.to_compressed()
        );
        std::fs::write(&json, entry).unwrap();
        let read = read_coco_mask_results(&json, &set()).unwrap();
        let b = read[0].detection.bbox;
        assert_eq!((b.x1, b.y1, b.x2, b.y2), (20.0, 10.0, 25.0, 11.0));
        assert_eq!(read[0].area, 5.0);
        // A mask of another size, or none, is refused.
        std::fs::write(
            &json,
            r#"[{"image_id":4,"category_id":1,"score":0.5,"bbox":[0,0,1,1]}]"#,
        )
        .unwrap();
        let err = read_coco_mask_results(&json, &set())
            .unwrap_err()
            .to_string();
        assert!(err.contains("has no segmentation"), "{err}");
        std::fs::write(
            &json,
            r#"[{"image_id":4,"category_id":1,"score":0.5,"segmentation":{"size":[50,40],"counts":[2000]}}]"#,
        )
        .unwrap();
        let err = read_coco_mask_results(&json, &set())
            .unwrap_err()
            .to_string();
        assert!(err.contains("image is 40×50"), "{err}");
    }

    #[test]
    fn bad_results_name_the_file_and_entry() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("dets.json");
        let entry = r#"{"image_id":3,"category_id":1,"bbox":[0,0,1,1],"score":0.5}"#;
        let cases = [
            ("[".to_string(), "not a COCO results JSON list"),
            (
                r#"{"image_id":3}"#.to_string(),
                "not a COCO results JSON list",
            ),
            (
                format!(
                    r#"[{entry},{{"image_id":9,"category_id":1,"bbox":[0,0,1,1],"score":0.5}}]"#
                ),
                "detection 1 (image_id 9): image_id is not in",
            ),
            (
                r#"[{"image_id":3,"category_id":2,"bbox":[0,0,1,1],"score":0.5}]"#.into(),
                "detection 0 (image_id 3): category_id 2",
            ),
            (
                r#"[{"image_id":3,"category_id":1,"bbox":[0,0,-1,1],"score":0.5}]"#.into(),
                "bbox [0, 0, -1, 1]",
            ),
            (
                r#"[{"image_id":3,"category_id":1,"bbox":[0,0,1],"score":0.5}]"#.into(),
                "not a COCO results JSON list",
            ),
            (
                r#"[{"image_id":3,"category_id":1,"score":0.5}]"#.into(),
                "detection 0 (image_id 3): has no bbox",
            ),
        ];
        for (text, expected) in cases {
            std::fs::write(&json, text).unwrap();
            let err = read_coco_results(&json, &set()).unwrap_err().to_string();
            assert!(err.contains("dets.json: "), "{err}");
            assert!(err.contains(expected), "{err} lacks {expected}");
        }
    }

    #[test]
    fn writing_refuses_unknown_images_and_classes() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("r.json");
        let err = write_coco_results(&[detection(5, 0, 1.0, 0.5)], &set(), &json).unwrap_err();
        assert!(err.to_string().contains("image id 5"), "{err}");
        let err = write_coco_results(&[detection(3, 2, 1.0, 0.5)], &set(), &json).unwrap_err();
        assert!(err.to_string().contains("class 2"), "{err}");
        let err = write_coco_results(&[detection(3, 0, 1.0, f32::NAN)], &set(), &json).unwrap_err();
        assert!(err.to_string().contains("not finite"), "{err}");
        assert!(!json.exists());
    }
}
