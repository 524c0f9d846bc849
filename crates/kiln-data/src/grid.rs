//! Sample grids: images laid out in rows and written as one PNG, for looking at what a model sees.

use std::path::Path;

use crate::{DataError, Image, Result};

/// Layout of a grid.
#[derive(Clone, Copy, Debug)]
pub struct GridOptions {
    /// Each image pixel becomes a `scale`×`scale` block (nearest neighbour).
    pub scale: usize,
    /// Pixels of background between cells.
    pub gap: usize,
    /// Background grey level.
    pub background: u8,
}

impl Default for GridOptions {
    fn default() -> Self {
        Self {
            scale: 2,
            gap: 2,
            background: 255,
        }
    }
}

/// Writes `rows` of images (of any sizes) as a PNG grid at `path`, atomically.
pub fn save_grid(rows: &[Vec<Image>], options: GridOptions, path: &Path) -> Result<()> {
    let s = options.scale.max(1);
    let cell_w = rows.iter().flatten().map(|i| i.width).max().unwrap_or(0) * s;
    let cell_h = rows.iter().flatten().map(|i| i.height).max().unwrap_or(0) * s;
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    if cols == 0 {
        return Err(DataError::invalid("grid", "no images to draw"));
    }
    let g = options.gap;
    let width = cols * (cell_w + g) + g;
    let height = rows.len() * (cell_h + g) + g;
    let mut canvas = image::RgbImage::from_pixel(
        width as u32,
        height as u32,
        image::Rgb([options.background; 3]),
    );
    for (r, row) in rows.iter().enumerate() {
        for (c, img) in row.iter().enumerate() {
            let rgb = img.to_rgb();
            let (ox, oy) = (g + c * (cell_w + g), g + r * (cell_h + g));
            for y in 0..rgb.height * s {
                for x in 0..rgb.width * s {
                    let p = rgb.pixel(x / s, y / s);
                    canvas.put_pixel(
                        (ox + x) as u32,
                        (oy + y) as u32,
                        image::Rgb([p[0], p[1], p[2]]),
                    );
                }
            }
        }
    }
    let tmp = path.with_extension("png.tmp");
    canvas
        .save_with_format(&tmp, image::ImageFormat::Png)
        .map_err(|e| DataError::Io {
            path: tmp.clone(),
            source: std::io::Error::other(e),
        })?;
    std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_places_scaled_images() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grid.png");
        let red = Image::new(1, 1, 3, vec![255, 0, 0]).unwrap();
        let grey = Image::new(1, 1, 1, vec![7]).unwrap();
        let options = GridOptions {
            scale: 3,
            gap: 1,
            background: 200,
        };
        save_grid(&[vec![red.clone(), grey], vec![red]], options, &path).unwrap();
        let png = image::open(&path).unwrap().to_rgb8();
        assert_eq!((png.width(), png.height()), (2 * 4 + 1, 2 * 4 + 1));
        assert_eq!(png.get_pixel(0, 0).0, [200, 200, 200]);
        assert_eq!(png.get_pixel(3, 3).0, [255, 0, 0]);
        assert_eq!(png.get_pixel(5, 1).0, [7, 7, 7]);
        assert!(save_grid(&[], options, &path).is_err());
    }
}
