//! COCO's `segmentation` field in its three forms, read into an [`Rle`] and written back.
//!
//! - polygons: `[[x0, y0, x1, y1, …], …]`, rasterised as pycocotools does ([`polygons_to_rle`]);
//! - uncompressed RLE: `{"size": [h, w], "counts": [n0, n1, …]}` (crowd regions in COCO);
//! - compressed RLE: `{"size": [h, w], "counts": "…"}` (detector results, `pycocotools`'
//!   `mask.encode`).
//!
//! kiln writes compressed RLE, which every COCO tool reads.

use serde::Serialize;
use serde_json::Value;

use super::polygon::polygons_to_rle;
use super::rle::Rle;

/// A segmentation as written: compressed RLE.
#[derive(Serialize)]
pub(crate) struct CompressedRle {
    /// `[height, width]`.
    size: [u32; 2],
    /// [`Rle::to_compressed`].
    counts: String,
}

impl From<&Rle> for CompressedRle {
    fn from(rle: &Rle) -> Self {
        Self {
            size: [rle.height, rle.width],
            counts: rle.to_compressed(),
        }
    }
}

/// Reads a `segmentation` value for an image of `height × width`. `Ok(None)` for an empty
/// polygon list (some exporters write `[]` for objects without an outline). The error says
/// what is wrong, for the caller to prefix with the file and annotation: a polygon with an odd
/// number of coordinates or fewer than 3 points, a non-finite coordinate, an RLE whose size is
/// not the image's or whose counts do not sum to `height × width`, a value of another shape.
pub fn parse_segmentation(value: &Value, height: u32, width: u32) -> Result<Option<Rle>, String> {
    match value {
        Value::Array(parts) if parts.is_empty() => Ok(None),
        Value::Array(parts) => {
            let mut polygons = Vec::with_capacity(parts.len());
            for (i, part) in parts.iter().enumerate() {
                let coords = part
                    .as_array()
                    .ok_or_else(|| format!("segmentation polygon {i} is not a list of numbers"))?;
                let xy: Vec<f64> = coords
                    .iter()
                    .map(|c| c.as_f64().filter(|v| v.is_finite()))
                    .collect::<Option<_>>()
                    .ok_or_else(|| format!("segmentation polygon {i} has a non-number"))?;
                if !xy.len().is_multiple_of(2) {
                    return Err(format!(
                        "segmentation polygon {i} has {} coordinates, not x, y pairs",
                        xy.len()
                    ));
                }
                if xy.len() < 6 {
                    return Err(format!(
                        "segmentation polygon {i} has {} points; a polygon needs at least 3",
                        xy.len() / 2
                    ));
                }
                polygons.push(xy);
            }
            Ok(Some(polygons_to_rle(&polygons, height, width)))
        }
        Value::Object(fields) => {
            let size = fields
                .get("size")
                .and_then(Value::as_array)
                .filter(|s| s.len() == 2)
                .and_then(|s| Some([s[0].as_u64()?, s[1].as_u64()?]))
                .ok_or("segmentation RLE needs `size: [height, width]`")?;
            if size != [u64::from(height), u64::from(width)] {
                return Err(format!(
                    "segmentation RLE has size [{}, {}] but the image is {height}×{width} \
                     (size is [height, width])",
                    size[0], size[1]
                ));
            }
            match fields.get("counts") {
                Some(Value::String(s)) => Rle::from_compressed(s, height, width).map(Some),
                Some(Value::Array(counts)) => {
                    let counts: Vec<u32> = counts
                        .iter()
                        .map(|c| c.as_u64().and_then(|c| u32::try_from(c).ok()))
                        .collect::<Option<_>>()
                        .ok_or("segmentation RLE counts must be non-negative integers")?;
                    Rle::from_counts(counts, height, width).map(Some)
                }
                _ => Err("segmentation RLE needs `counts`, a list or a string".into()),
            }
        }
        Value::Null => Ok(None),
        _ => Err("segmentation is neither a list of polygons nor an RLE object".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_three_forms_give_the_same_mask() {
        let square = json!([[1.0, 1.0, 3.0, 1.0, 3.0, 3.0, 1.0, 3.0]]);
        let from_polygon = parse_segmentation(&square, 5, 5).unwrap().unwrap();
        let uncompressed = json!({"size": [5, 5], "counts": from_polygon.counts});
        let compressed = json!({"size": [5, 5], "counts": from_polygon.to_compressed()});
        assert_eq!(
            parse_segmentation(&uncompressed, 5, 5).unwrap().unwrap(),
            from_polygon
        );
        assert_eq!(
            parse_segmentation(&compressed, 5, 5).unwrap().unwrap(),
            from_polygon
        );
        let written = serde_json::to_value(CompressedRle::from(&from_polygon)).unwrap();
        assert_eq!(written, compressed);
    }

    #[test]
    fn bad_segmentations_say_what_is_wrong() {
        let err = |v: Value| parse_segmentation(&v, 4, 6).unwrap_err();
        assert!(err(json!([[0, 0, 1, 1]])).contains("needs at least 3"));
        assert!(err(json!([[0, 0, 1, 1, 2]])).contains("not x, y pairs"));
        assert!(err(json!([[0, 0, 1, "a", 2, 2]])).contains("non-number"));
        assert!(err(json!({"size": [6, 4], "counts": [24]})).contains("image is 4×6"));
        assert!(err(json!({"size": [4, 6], "counts": [20, 3]})).contains("sum to 23"));
        assert!(err(json!({"size": [4, 6], "counts": [-1, 25]})).contains("non-negative"));
        assert!(err(json!({"size": [4, 6]})).contains("needs `counts`"));
        assert!(err(json!("x")).contains("neither"));
        assert_eq!(parse_segmentation(&json!([]), 4, 6).unwrap(), None);
    }
}
