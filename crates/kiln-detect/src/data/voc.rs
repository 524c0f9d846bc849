//! Pascal VOC annotation files: one XML per image, read with `roxmltree`.
//!
//! A VOC file names its image (`<filename>`), may give the image's `<size>`, and lists its
//! `<object>`s, each with a class `<name>`, a `<bndbox>` of 1-based inclusive pixel indices, and
//! optional `<difficult>`, `<truncated>` and `<pose>` fields. [`read_voc_annotation`] reads one
//! such file as it is, before classes are mapped to indices or boxes checked against the image;
//! [`load_detection_data`](super::load_detection_data) does the rest.

use std::path::{Path, PathBuf};

use roxmltree::{Document, Node};

use super::BoundingBox;
use crate::{DetectError, Result};

/// The largest annotation file read (a VOC file is a few kilobytes).
const MAX_XML_BYTES: u64 = 16 << 20;

/// Image extensions tried, in order, when `<filename>` is missing or names no file.
const FALLBACK_EXTENSIONS: [&str; 3] = ["jpg", "png", "jpeg"];

/// One VOC annotation file, as written (classes are still names).
#[derive(Clone, Debug, PartialEq)]
pub struct VocAnnotation {
    /// The XML file read.
    pub xml: PathBuf,
    /// The `<filename>` element, when present and not blank.
    pub filename: Option<String>,
    /// The image file: `image_dir/<filename>` when that exists, else the XML's stem with a
    /// `.jpg`, `.png` or `.jpeg` extension that exists, else the first of these candidates
    /// (which does not exist; loading reports it as missing).
    pub image: PathBuf,
    /// `(width, height)` from `<size>`, when present and non-zero (tools write `0` when they do
    /// not know it).
    pub size: Option<(u32, u32)>,
    /// The objects, in file order.
    pub objects: Vec<VocObject>,
}

/// One `<object>` of a VOC file.
#[derive(Clone, Debug, PartialEq)]
pub struct VocObject {
    /// The class name (`<name>`, trimmed).
    pub name: String,
    /// The box in continuous pixel coordinates: VOC's 1-based inclusive
    /// `(xmin, ymin, xmax, ymax)` becomes `(xmin - 1, ymin - 1, xmax, ymax)`.
    pub bbox: BoundingBox,
    /// `<difficult>` (absent = not difficult).
    pub difficult: bool,
    /// `<truncated>` (absent = not truncated).
    pub truncated: bool,
}

/// A [`DetectError::Format`] about `path` whose reason is kept on one line: control characters
/// quoted from a file (a newline inside a class name, or one a parser reports) are escaped.
pub(crate) fn format_error(path: impl AsRef<Path>, reason: impl Into<String>) -> DetectError {
    let reason: String = reason.into();
    let one_line: String = reason
        .chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect();
    DetectError::format(path, one_line)
}

/// Reads one VOC annotation file and finds its image in `image_dir`.
///
/// Errors name the file and what is wrong in it: malformed XML, a root other than
/// `<annotation>`, an object without a name or box, a coordinate that is not a finite number,
/// or a box with `xmax <= xmin` or `ymax <= ymin`. The box is not checked against the image here
/// (its true size is known only once the image is decoded).
pub fn read_voc_annotation(xml: &Path, image_dir: &Path) -> Result<VocAnnotation> {
    let text = read_text(xml)?;
    parse_voc(&text, xml, image_dir)
}

/// The file's text, refusing huge or non-UTF-8 files.
fn read_text(xml: &Path) -> Result<String> {
    let len = std::fs::metadata(xml)
        .map_err(|e| DetectError::io(xml, e))?
        .len();
    if len > MAX_XML_BYTES {
        return Err(format_error(
            xml,
            format!("is {len} bytes, too large for a VOC annotation (at most {MAX_XML_BYTES})"),
        ));
    }
    let bytes = std::fs::read(xml).map_err(|e| DetectError::io(xml, e))?;
    String::from_utf8(bytes).map_err(|e| format_error(xml, format!("not UTF-8 text: {e}")))
}

/// Parses the text of a VOC file (`xml` is only used in messages and for the fallback stem).
pub(crate) fn parse_voc(text: &str, xml: &Path, image_dir: &Path) -> Result<VocAnnotation> {
    let bad = |reason: String| format_error(xml, reason);
    let doc = Document::parse(text).map_err(|e| bad(format!("malformed XML: {e}")))?;
    let root = doc.root_element();
    if !root.has_tag_name("annotation") {
        return Err(bad(format!(
            "root element is <{}>, expected VOC's <annotation>",
            root.tag_name().name()
        )));
    }

    let filename = child_text(root, "filename").map(str::to_string);
    let size = match child(root, "size") {
        None => None,
        Some(size) => {
            let width = size_field(size, "width", xml)?;
            let height = size_field(size, "height", xml)?;
            match (width, height) {
                (Some(w), Some(h)) if w > 0 && h > 0 => Some((w, h)),
                _ => None,
            }
        }
    };

    let mut objects = Vec::new();
    for (index, object) in root
        .children()
        .filter(|n| n.has_tag_name("object"))
        .enumerate()
    {
        objects.push(parse_object(object, index + 1, xml)?);
    }

    let image = find_image(xml, image_dir, filename.as_deref());
    Ok(VocAnnotation {
        xml: xml.to_path_buf(),
        filename,
        image,
        size,
        objects,
    })
}

/// The first child element called `name`.
fn child<'a, 'input>(node: Node<'a, 'input>, name: &str) -> Option<Node<'a, 'input>> {
    node.children().find(|n| n.has_tag_name(name))
}

/// The trimmed, non-empty text of the first child element called `name`.
fn child_text<'a>(node: Node<'a, '_>, name: &str) -> Option<&'a str> {
    child(node, name)
        .and_then(|n| n.text())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// A `<size>` field: absent or blank is `None`; anything else must be a whole number.
fn size_field(size: Node, name: &str, xml: &Path) -> Result<Option<u32>> {
    let Some(text) = child_text(size, name) else {
        return Ok(None);
    };
    // Some tools write sizes as "500.0".
    let value: f64 = text
        .parse()
        .map_err(|_| format_error(xml, format!("<size><{name}> is `{text}`, not a number")))?;
    if !(value.is_finite() && value >= 0.0 && value.fract() == 0.0 && value <= u32::MAX as f64) {
        return Err(format_error(
            xml,
            format!("<size><{name}> is `{text}`, not a whole number of pixels"),
        ));
    }
    Ok(Some(value as u32))
}

/// A VOC flag (`0`/`1`, also `true`/`false`); absent or blank is `false`.
fn flag(object: Node, name: &str, index: usize, xml: &Path) -> Result<bool> {
    let Some(text) = child_text(object, name) else {
        return Ok(false);
    };
    match text.to_ascii_lowercase().as_str() {
        "0" | "false" => Ok(false),
        "1" | "true" => Ok(true),
        _ => Err(format_error(
            xml,
            format!("object {index}: <{name}> is `{text}`, expected 0 or 1"),
        )),
    }
}

fn parse_object(object: Node, index: usize, xml: &Path) -> Result<VocObject> {
    let bad = |reason: String| format_error(xml, format!("object {index}: {reason}"));
    let name = child_text(object, "name")
        .ok_or_else(|| bad("has no <name>".into()))?
        .to_string();
    let bad = |reason: String| format_error(xml, format!("object {index} ({name}): {reason}"));
    let bndbox = child(object, "bndbox").ok_or_else(|| bad("has no <bndbox>".into()))?;
    let coordinate = |field: &str| -> Result<f64> {
        let text =
            child_text(bndbox, field).ok_or_else(|| bad(format!("<bndbox> has no <{field}>")))?;
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() && v.abs() < 1e7 => Ok(v),
            _ => Err(bad(format!(
                "<bndbox><{field}> is `{text}`, not a pixel coordinate"
            ))),
        }
    };
    let (xmin, ymin) = (coordinate("xmin")?, coordinate("ymin")?);
    let (xmax, ymax) = (coordinate("xmax")?, coordinate("ymax")?);
    if xmax <= xmin {
        return Err(bad(format!("box has xmax {xmax} <= xmin {xmin}")));
    }
    if ymax <= ymin {
        return Err(bad(format!("box has ymax {ymax} <= ymin {ymin}")));
    }
    let difficult = flag(object, "difficult", index, xml)?;
    let truncated = flag(object, "truncated", index, xml)?;
    Ok(VocObject {
        bbox: BoundingBox {
            x1: (xmin - 1.0) as f32,
            y1: (ymin - 1.0) as f32,
            x2: xmax as f32,
            y2: ymax as f32,
        },
        name,
        difficult,
        truncated,
    })
}

/// Where the image of `xml` is: see [`VocAnnotation::image`].
fn find_image(xml: &Path, image_dir: &Path, filename: Option<&str>) -> PathBuf {
    let mut candidates = Vec::new();
    // Only the last component counts: `<filename>` must not lead outside `image_dir`.
    if let Some(name) = filename.and_then(|f| Path::new(f).file_name()) {
        candidates.push(image_dir.join(name));
    }
    if let Some(stem) = xml.file_stem() {
        for ext in FALLBACK_EXTENSIONS {
            // Not `with_extension`: a stem may itself hold dots.
            let mut name = stem.to_os_string();
            name.push(".");
            name.push(ext);
            candidates.push(image_dir.join(name));
        }
    }
    candidates
        .iter()
        .find(|c| c.is_file())
        .or(candidates.first())
        .cloned()
        .unwrap_or_else(|| image_dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voc(objects: &str, extra: &str) -> String {
        format!(
            "<annotation><folder>images</folder><filename>a.jpg</filename>{extra}{objects}</annotation>"
        )
    }

    fn object(name: &str, b: [&str; 4], difficult: &str) -> String {
        format!(
            "<object><name>{name}</name><pose>Unspecified</pose><truncated>1</truncated>\
             <difficult>{difficult}</difficult><bndbox><xmin>{}</xmin><ymin>{}</ymin>\
             <xmax>{}</xmax><ymax>{}</ymax></bndbox></object>",
            b[0], b[1], b[2], b[3]
        )
    }

    fn parse(text: &str) -> Result<VocAnnotation> {
        parse_voc(
            text,
            Path::new("/d/annotations/a.xml"),
            Path::new("/d/images"),
        )
    }

    #[test]
    fn reads_objects_and_converts_coordinates() {
        let text = voc(
            &(object("dog", ["1", "2", "10", "20"], "0")
                + &object(" cat ", ["5", "5", "6.5", "9"], "1")),
            "<size><width>40</width><height>30</height><depth>3</depth></size>",
        );
        let a = parse(&text).unwrap();
        assert_eq!(a.filename.as_deref(), Some("a.jpg"));
        assert_eq!(a.size, Some((40, 30)));
        assert_eq!(a.image, Path::new("/d/images/a.jpg"));
        assert_eq!(a.objects.len(), 2);
        assert_eq!(
            a.objects[0].bbox,
            BoundingBox {
                x1: 0.0,
                y1: 1.0,
                x2: 10.0,
                y2: 20.0
            }
        );
        assert!(!a.objects[0].difficult && a.objects[0].truncated);
        assert_eq!(a.objects[1].name, "cat");
        assert!(a.objects[1].difficult);
        assert_eq!(a.objects[1].bbox.x2, 6.5);
    }

    #[test]
    fn missing_size_and_zero_size_are_unknown() {
        assert_eq!(parse(&voc("", "")).unwrap().size, None);
        let zero = voc("", "<size><width>0</width><height>0</height></size>");
        assert_eq!(parse(&zero).unwrap().size, None);
    }

    #[test]
    fn falls_back_to_the_xml_stem() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.png"), b"x").unwrap();
        let xml = dir.path().join("b.xml");
        std::fs::write(
            &xml,
            "<annotation><filename>gone.jpg</filename></annotation>",
        )
        .unwrap();
        let a = read_voc_annotation(&xml, dir.path()).unwrap();
        assert_eq!(a.image, dir.path().join("b.png"));
        std::fs::write(&xml, "<annotation></annotation>").unwrap();
        let a = read_voc_annotation(&xml, dir.path()).unwrap();
        assert_eq!((a.filename, a.image), (None, dir.path().join("b.png")));
    }

    #[test]
    fn bad_files_name_the_file_and_the_fault() {
        let cases = [
            ("<annotation><object>".to_string(), "malformed XML"),
            ("<root/>".to_string(), "expected VOC's <annotation>"),
            (
                voc("<object><bndbox/></object>", ""),
                "object 1: has no <name>",
            ),
            (
                voc("<object><name>x</name></object>", ""),
                "has no <bndbox>",
            ),
            (
                voc(&object("x", ["1", "2", "q", "4"], "0"), ""),
                "<xmax> is `q`",
            ),
            (
                voc(&object("x", ["5", "2", "5", "4"], "0"), ""),
                "xmax 5 <= xmin 5",
            ),
            (
                voc(&object("x", ["1", "9", "5", "4"], "0"), ""),
                "ymax 4 <= ymin 9",
            ),
            (
                voc(&object("x", ["1", "2", "5", "4"], "yes"), ""),
                "<difficult> is `yes`",
            ),
            (
                voc("", "<size><width>-3</width></size>"),
                "<size><width> is `-3`",
            ),
            (
                voc(&object("x", ["1", "2", "inf", "4"], "0"), ""),
                "not a pixel coordinate",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.starts_with("/d/annotations/a.xml: "), "{err}");
            assert!(err.contains(expected), "{err} lacks {expected}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn unreadable_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let xml = dir.path().join("a.xml");
        let err = read_voc_annotation(&xml, dir.path()).unwrap_err();
        assert!(err.to_string().contains("a.xml"), "{err}");
        std::fs::write(&xml, [0xFFu8, 0xFE, 0x00]).unwrap();
        let err = read_voc_annotation(&xml, dir.path()).unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }
}
