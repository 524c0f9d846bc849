//! Pascal VOC's instance masks: `SegmentationObject/<image stem>.png`, a palette PNG whose pixel
//! values are palette indices — 0 background, `k` the `k`-th object of the image's annotation
//! (1-based, in file order), 255 the void border VOC draws around objects (background here).

use std::io::BufReader;
use std::path::Path;

use super::Rle;
use super::voc::format_error;
use crate::{DetectError, Result};

/// The palette indices (or grey values) of an 8-bit indexed or greyscale PNG, row-major, with
/// its `(width, height)`.
fn read_indices(path: &Path) -> Result<(Vec<u8>, u32, u32)> {
    let file = std::fs::File::open(path).map_err(|e| DetectError::io(path, e))?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder
        .read_info()
        .map_err(|e| format_error(path, format!("not a PNG: {e}")))?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| format_error(path, "is too large to decode"))?;
    let mut buffer = vec![0u8; size];
    let info = reader
        .next_frame(&mut buffer)
        .map_err(|e| format_error(path, format!("cannot decode: {e}")))?;
    let palette_like = matches!(
        info.color_type,
        png::ColorType::Indexed | png::ColorType::Grayscale
    );
    if !palette_like || info.bit_depth != png::BitDepth::Eight {
        return Err(format_error(
            path,
            format!(
                "is a {:?} {:?}-bit PNG; VOC's SegmentationObject masks are 8-bit palette images \
                 whose index is the object's number",
                info.color_type, info.bit_depth
            ),
        ));
    }
    buffer.truncate(info.buffer_size());
    Ok((buffer, info.width, info.height))
}

/// The masks of `objects` objects from a `SegmentationObject` PNG that must be
/// `width × height`: mask `k` is the pixels of index `k + 1`. Errors name the file: a size other
/// than the image's, an index above the number of objects (other than 255), a PNG that is not
/// 8-bit palette or greyscale.
pub fn read_object_masks(path: &Path, width: u32, height: u32, objects: usize) -> Result<Vec<Rle>> {
    let (indices, w, h) = read_indices(path)?;
    if (w, h) != (width, height) {
        return Err(format_error(
            path,
            format!("is {w}x{h} but its image is {width}x{height}"),
        ));
    }
    if let Some(&bad) = indices
        .iter()
        .find(|&&v| v != 255 && usize::from(v) > objects)
    {
        return Err(format_error(
            path,
            format!(
                "marks object {bad}, but its annotation has {objects} objects (0 is background, \
                 255 the void border)"
            ),
        ));
    }
    Ok((1..=objects)
        .map(|k| {
            let pixels: Vec<u8> = indices
                .iter()
                .map(|&v| u8::from(usize::from(v) == k))
                .collect();
            Rle::from_bitmap(&pixels, height, width)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes an 8-bit palette PNG of `indices` (`width × height`).
    fn write_indexed(path: &Path, indices: &[u8], width: u32, height: u32) {
        let file = std::fs::File::create(path).unwrap();
        let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), width, height);
        encoder.set_color(png::ColorType::Indexed);
        encoder.set_depth(png::BitDepth::Eight);
        let mut palette = vec![0u8; 256 * 3];
        palette[3..6].copy_from_slice(&[128, 0, 0]);
        palette[6..9].copy_from_slice(&[0, 128, 0]);
        encoder.set_palette(palette);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(indices).unwrap();
    }

    #[test]
    fn palette_indices_are_objects_and_the_border_is_background() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("2007_000032.png");
        #[rustfmt::skip]
        let indices = [
            0, 1, 1, 255,
            0, 1, 255, 2,
            0, 0, 2, 2,
        ];
        write_indexed(&path, &indices, 4, 3);
        let masks = read_object_masks(&path, 4, 3, 2).unwrap();
        assert_eq!(masks[0].to_bitmap(), [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(masks[1].area(), 3);
        // A third annotated object without pixels gets an empty mask.
        assert_eq!(read_object_masks(&path, 4, 3, 3).unwrap()[2].area(), 0);
        let err = read_object_masks(&path, 4, 3, 1).unwrap_err().to_string();
        assert!(
            err.contains("2007_000032.png") && err.contains("marks object 2"),
            "{err}"
        );
        let err = read_object_masks(&path, 5, 3, 2).unwrap_err().to_string();
        assert!(err.contains("is 4x3 but its image is 5x3"), "{err}");
        // An RGB PNG is not an object mask.
        let rgb = dir.path().join("rgb.png");
        image::RgbImage::new(4, 3).save(&rgb).unwrap();
        let err = read_object_masks(&rgb, 4, 3, 2).unwrap_err().to_string();
        assert!(err.contains("palette"), "{err}");
    }
}
