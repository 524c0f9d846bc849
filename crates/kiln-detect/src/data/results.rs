//! COCO results files: a JSON list of `{image_id, category_id, bbox: [x, y, w, h], score}`, the
//! form detectors submit to the COCO evaluation server and `pycocotools`' `loadRes` reads.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::coco::{read_json, write_atomically};
use super::voc::format_error;
use super::{BoundingBox, Detection, DetectionSet};
use crate::{DetectError, Result};

/// One detection as read (numbers as `f64`).
#[derive(Deserialize)]
struct ResultIn {
    image_id: u64,
    category_id: u64,
    bbox: [f64; 4],
    score: f64,
}

/// One detection as written (`f32` numbers, printed in their shortest exact form).
#[derive(Serialize)]
struct ResultOut {
    image_id: u64,
    category_id: u64,
    bbox: [f32; 4],
    score: f32,
}

/// Reads a COCO results file for the images and categories of `set`.
///
/// `category_id`s are mapped to class indices through `set.categories`. Errors name the file
/// and the entry (its position in the list, from 0): malformed JSON, an `image_id` that is not
/// in `set`, an unknown `category_id`, a box with a non-finite coordinate or a negative width
/// or height, a non-finite score.
pub fn read_coco_results(json: &Path, set: &DetectionSet) -> Result<Vec<Detection>> {
    let entries: Vec<ResultIn> = read_json(json, "a COCO results JSON list")?;
    let images: HashSet<u64> = set.images.iter().map(|im| im.id).collect();
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
            if !images.contains(&r.image_id) {
                return Err(bad("image_id is not in the data set".into()));
            }
            let &class = classes
                .get(&r.category_id)
                .ok_or_else(|| bad(format!("category_id {} is not a category", r.category_id)))?;
            let [x, y, w, h] = r.bbox;
            if !(r.bbox.iter().all(|v| v.is_finite()) && w >= 0.0 && h >= 0.0) {
                return Err(bad(format!(
                    "bbox [{x}, {y}, {w}, {h}] needs finite numbers and a non-negative width and height"
                )));
            }
            if !r.score.is_finite() {
                return Err(bad(format!("score {} is not a finite number", r.score)));
            }
            Ok(Detection {
                image_id: r.image_id,
                class,
                bbox: BoundingBox {
                    x1: x as f32,
                    y1: y as f32,
                    x2: (x + w) as f32,
                    y2: (y + h) as f32,
                },
                score: r.score as f32,
            })
        })
        .collect()
}

/// Writes `detections` as a COCO results file, atomically, with class indices mapped to the
/// category ids of `set`.
///
/// Refuses (as [`DetectError::Invalid`]) a detection of an image not in `set`, of a class
/// index with no category, or with a non-finite box or score.
pub fn write_coco_results(detections: &[Detection], set: &DetectionSet, json: &Path) -> Result<()> {
    let images: HashSet<u64> = set.images.iter().map(|im| im.id).collect();
    let out = detections
        .iter()
        .enumerate()
        .map(|(i, d)| {
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
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = serde_json::to_vec(&out)
        .map_err(|e| format_error(json, format!("cannot encode COCO results: {e}")))?;
    write_atomically(json, &bytes)
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
