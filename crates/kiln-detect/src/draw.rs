//! Drawing detections: boxes with class and score on the photo, instance masks as translucent
//! class colours, ground truth beside them, and a grid of several images saved as one PNG.

use std::path::Path;

use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_filled_rect_mut, draw_hollow_rect_mut, draw_text_mut, text_size};
use imageproc::rect::Rect;
use kiln_data::Image;

use crate::data::{BoundingBox, Detection, MaskDetection};
use crate::{DetectError, Result};

/// Colour of ground-truth boxes.
const TRUTH: Rgb<u8> = Rgb([40, 220, 60]);
/// Colours of detections, one per class (cycled).
const PALETTE: [Rgb<u8>; 6] = [
    Rgb([255, 60, 40]),
    Rgb([40, 140, 255]),
    Rgb([255, 200, 0]),
    Rgb([220, 60, 255]),
    Rgb([0, 220, 220]),
    Rgb([255, 120, 180]),
];

fn font() -> ab_glyph::FontRef<'static> {
    ab_glyph::FontRef::try_from_slice(dejavu::sans::regular())
        .expect("the embedded DejaVu font is valid")
}

/// An RGB copy of a kiln image.
fn to_rgb_image(image: &Image) -> RgbImage {
    let rgb = image.to_rgb();
    RgbImage::from_raw(rgb.width as u32, rgb.height as u32, rgb.data)
        .unwrap_or_else(|| RgbImage::new(1, 1))
}

fn rect_of(b: &BoundingBox, width: u32, height: u32) -> Option<Rect> {
    let x1 = b.x1.clamp(0.0, width as f32 - 1.0).round() as i32;
    let y1 = b.y1.clamp(0.0, height as f32 - 1.0).round() as i32;
    let x2 = b.x2.clamp(0.0, width as f32).round() as i32;
    let y2 = b.y2.clamp(0.0, height as f32).round() as i32;
    (x2 > x1 && y2 > y1).then(|| Rect::at(x1, y1).of_size((x2 - x1) as u32, (y2 - y1) as u32))
}

/// Draws a 2-pixel box.
fn thick_box(canvas: &mut RgbImage, b: &BoundingBox, colour: Rgb<u8>) -> Option<Rect> {
    let (w, h) = canvas.dimensions();
    let rect = rect_of(b, w, h)?;
    draw_hollow_rect_mut(canvas, rect, colour);
    let inner = BoundingBox {
        x1: b.x1 + 1.0,
        y1: b.y1 + 1.0,
        x2: b.x2 - 1.0,
        y2: b.y2 - 1.0,
    };
    if let Some(r) = rect_of(&inner, w, h) {
        draw_hollow_rect_mut(canvas, r, colour);
    }
    Some(rect)
}

/// The image with its ground-truth boxes (green) and the detections scoring at least
/// `min_score` (coloured by class, labelled "class score").
pub fn draw_detections(
    image: &Image,
    detections: &[Detection],
    truth: &[BoundingBox],
    class_names: &[String],
    min_score: f32,
) -> RgbImage {
    let mut canvas = to_rgb_image(image);
    let font = font();
    let scale = (canvas.height().max(canvas.width()) as f32 / 40.0).clamp(11.0, 24.0);
    for b in truth {
        thick_box(&mut canvas, b, TRUTH);
    }
    let mut shown: Vec<&Detection> = detections.iter().filter(|d| d.score >= min_score).collect();
    shown.sort_by(|a, b| a.score.total_cmp(&b.score));
    for d in shown {
        let colour = PALETTE[d.class % PALETTE.len()];
        let Some(rect) = thick_box(&mut canvas, &d.bbox, colour) else {
            continue;
        };
        let name = class_names.get(d.class).map_or("?", String::as_str);
        let label = format!("{name} {:.2}", d.score);
        let (tw, th) = text_size(scale, &font, &label);
        let y = (rect.top() - th as i32 - 2).max(0);
        draw_filled_rect_mut(
            &mut canvas,
            Rect::at(rect.left(), y).of_size(tw + 4, th + 2),
            colour,
        );
        draw_text_mut(
            &mut canvas,
            Rgb([0, 0, 0]),
            rect.left() + 2,
            y,
            scale,
            &font,
            &label,
        );
    }
    canvas
}

/// A copy of `image` with the masks of `detections` scoring at least `min_score` blended in
/// their class colours (`alpha` of the colour), lowest score first. Masks are at the original
/// image's size (`original`, `[width, height]`) and sampled to `image`'s by nearest pixel.
pub fn tint_masks(
    image: &Image,
    detections: &[&MaskDetection],
    original: [u32; 2],
    min_score: f32,
    alpha: f32,
) -> Image {
    let mut out = image.to_rgb();
    let (w, h) = (out.width, out.height);
    let mut shown: Vec<&&MaskDetection> = detections
        .iter()
        .filter(|d| d.detection.score >= min_score)
        .collect();
    shown.sort_by(|a, b| a.detection.score.total_cmp(&b.detection.score));
    for d in shown {
        let colour = PALETTE[d.detection.class % PALETTE.len()].0;
        let (mw, mh) = (d.mask.width as usize, d.mask.height as usize);
        if (mw, mh) != (original[0] as usize, original[1] as usize) || mw == 0 || mh == 0 {
            continue;
        }
        let bitmap = d.mask.to_bitmap();
        for y in 0..h {
            let my = (y * mh / h).min(mh - 1);
            for x in 0..w {
                let mx = (x * mw / w).min(mw - 1);
                if bitmap[my * mw + mx] == 0 {
                    continue;
                }
                let pixel = &mut out.data[(y * w + x) * 3..(y * w + x) * 3 + 3];
                for (v, &c) in pixel.iter_mut().zip(&colour) {
                    *v = (f32::from(*v) * (1.0 - alpha) + f32::from(c) * alpha).round() as u8;
                }
            }
        }
    }
    out
}

/// Saves the first `count` training items of epoch 0, as augmentation gives them to the
/// network, with their boxes (green) as one PNG grid at `path`: what the network learns from,
/// to check a config's `[[augment]]` steps by eye (YOLOv5's `train_batch0.jpg`).
pub fn save_training_samples<D>(train: &D, count: usize, path: &Path) -> Result<()>
where
    D: burn::data::dataset::Dataset<crate::batch::DetectionItem>,
{
    let images: Vec<RgbImage> = (0..count.min(train.len()))
        .filter_map(|i| train.get(i).ok())
        .map(|item| draw_detections(&item.image, &[], &item.boxes, &[], 1.0))
        .collect();
    if images.is_empty() {
        return Ok(());
    }
    save_grid(&images, 4, 256, path)
}

/// Saves `images` as one PNG grid, `columns` wide, each cell scaled to `cell` pixels on its
/// long side; written atomically.
pub fn save_grid(images: &[RgbImage], columns: usize, cell: u32, path: &Path) -> Result<()> {
    if images.is_empty() {
        return Err(DetectError::invalid("prediction grid", "no images to draw"));
    }
    let columns = columns.clamp(1, images.len());
    let rows = images.len().div_ceil(columns);
    let mut grid = RgbImage::from_pixel(
        columns as u32 * cell,
        rows as u32 * cell,
        Rgb([255, 255, 255]),
    );
    for (k, img) in images.iter().enumerate() {
        let (w, h) = img.dimensions();
        let scale = cell as f32 / w.max(h).max(1) as f32;
        let (nw, nh) = (
            ((w as f32 * scale) as u32).max(1),
            ((h as f32 * scale) as u32).max(1),
        );
        let small = image::imageops::resize(img, nw, nh, image::imageops::FilterType::Triangle);
        let (x, y) = ((k % columns) as u32 * cell, (k / columns) as u32 * cell);
        image::imageops::overlay(&mut grid, &small, x as i64, y as i64);
    }
    save_png(&grid, path)
}

/// Writes `image` as a PNG at `path` atomically (a temporary file, then rename).
pub fn save_png(image: &RgbImage, path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    image
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .map_err(|e| DetectError::format(path, format!("encoding PNG: {e}")))?;
    kiln_train::write_atomic(path, &bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_are_drawn_where_they_are() {
        let image = Image::filled(60, 40, 3, 0);
        let det = Detection {
            image_id: 1,
            class: 0,
            bbox: BoundingBox {
                x1: 10.0,
                y1: 20.0,
                x2: 50.0,
                y2: 39.0,
            },
            score: 0.9,
        };
        let truth = [BoundingBox {
            x1: 0.0,
            y1: 0.0,
            x2: 5.0,
            y2: 5.0,
        }];
        let drawn = draw_detections(&image, &[det], &truth, &["raccoon".into()], 0.5);
        assert_eq!(*drawn.get_pixel(10, 30), PALETTE[0]);
        assert_eq!(*drawn.get_pixel(0, 2), TRUTH);
        assert_eq!(
            *drawn.get_pixel(30, 30),
            Rgb([0, 0, 0]),
            "inside the box stays as it was"
        );
        // A mask tints its pixels in the class colour, at the image's scale.
        let mut pixels = vec![0u8; 120 * 80];
        pixels[0] = 1;
        let masked = MaskDetection {
            detection: det,
            mask: crate::data::Rle::from_bitmap(&pixels, 80, 120),
            area: 1.0,
        };
        let tinted = tint_masks(&image, &[&masked], [120, 80], 0.5, 0.5);
        assert_eq!(tinted.data[..3], [128, 30, 20]);
        assert_eq!(tinted.data[3..6], [0, 0, 0], "outside the mask");
        let low = Detection { score: 0.1, ..det };
        let drawn = draw_detections(&image, &[low], &[], &[], 0.5);
        assert_eq!(
            *drawn.get_pixel(10, 30),
            Rgb([0, 0, 0]),
            "scores below the threshold are not drawn"
        );
    }
}
