//! Host-side mask ops of Mask R-CNN: a ground-truth mask resampled into a region's `M×M`
//! grid (the training target) and a predicted `M×M` mask pasted back into its box in the
//! image (the output).

use crate::data::{BoundingBox, Rle};

/// The ground-truth `mask` (row-major 0/1, `width × height`) sampled into an `size × size`
/// grid over `region` (in the mask's pixels): each cell the mean of 2×2 bilinear samples, as
/// torchvision's `project_masks_on_boxes` (RoIAlign of the mask) computes it. Values in
/// `[0, 1]`, row-major.
pub fn mask_target(
    mask: &[u8],
    width: usize,
    height: usize,
    region: &BoundingBox,
    size: usize,
) -> Vec<f32> {
    let at = |x: f32, y: f32| -> f32 {
        // Bilinear on pixel centres; outside the image counts as background.
        if x < -1.0 || y < -1.0 || x > width as f32 || y > height as f32 {
            return 0.0;
        }
        let (x, y) = (x.max(0.0), y.max(0.0));
        let (x0, y0) = (x.floor() as usize, y.floor() as usize);
        let (x0, y0) = (x0.min(width - 1), y0.min(height - 1));
        let (x1, y1) = ((x0 + 1).min(width - 1), (y0 + 1).min(height - 1));
        let (fx, fy) = (
            (x - x0 as f32).clamp(0.0, 1.0),
            (y - y0 as f32).clamp(0.0, 1.0),
        );
        let v = |xx: usize, yy: usize| f32::from(mask[yy * width + xx]);
        v(x0, y0) * (1.0 - fx) * (1.0 - fy)
            + v(x1, y0) * fx * (1.0 - fy)
            + v(x0, y1) * (1.0 - fx) * fy
            + v(x1, y1) * fx * fy
    };
    let (bw, bh) = (
        (region.x2 - region.x1).max(1e-3) / size as f32,
        (region.y2 - region.y1).max(1e-3) / size as f32,
    );
    let mut out = Vec::with_capacity(size * size);
    for row in 0..size {
        for col in 0..size {
            let mut sum = 0.0;
            for (sy, sx) in [(0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75)] {
                // Sample points in continuous coordinates; pixel centres are at +0.5.
                let x = region.x1 + (col as f32 + sx) * bw - 0.5;
                let y = region.y1 + (row as f32 + sy) * bh - 0.5;
                sum += at(x, y);
            }
            out.push(sum / 4.0);
        }
    }
    out
}

/// Pastes a predicted mask (`size × size` probabilities, row-major) into `bbox` of a
/// `width × height` image: each pixel whose centre lies in the box takes the bilinear value of
/// the grid at its position, and is foreground at `threshold` or above (Mask R-CNN: 0.5).
pub fn paste_mask(
    probabilities: &[f32],
    size: usize,
    bbox: &BoundingBox,
    width: u32,
    height: u32,
    threshold: f32,
) -> Rle {
    let (w, h) = (width as usize, height as usize);
    let mut pixels = vec![0u8; w * h];
    let (bw, bh) = (bbox.x2 - bbox.x1, bbox.y2 - bbox.y1);
    if bw > 0.0 && bh > 0.0 {
        let x_lo = bbox.x1.floor().max(0.0) as usize;
        let x_hi = (bbox.x2.ceil() as usize).min(w);
        let y_lo = bbox.y1.floor().max(0.0) as usize;
        let y_hi = (bbox.y2.ceil() as usize).min(h);
        let grid = |g: f32| -> (usize, usize, f32) {
            let g = g.clamp(0.0, (size - 1) as f32);
            let lo = g.floor() as usize;
            (lo, (lo + 1).min(size - 1), g - lo as f32)
        };
        for y in y_lo..y_hi {
            let cy = y as f32 + 0.5;
            if cy < bbox.y1 || cy > bbox.y2 {
                continue;
            }
            let (r0, r1, fy) = grid((cy - bbox.y1) / bh * size as f32 - 0.5);
            for x in x_lo..x_hi {
                let cx = x as f32 + 0.5;
                if cx < bbox.x1 || cx > bbox.x2 {
                    continue;
                }
                let (c0, c1, fx) = grid((cx - bbox.x1) / bw * size as f32 - 0.5);
                let p = |r: usize, c: usize| probabilities[r * size + c];
                let v = p(r0, c0) * (1.0 - fx) * (1.0 - fy)
                    + p(r0, c1) * fx * (1.0 - fy)
                    + p(r1, c0) * (1.0 - fx) * fy
                    + p(r1, c1) * fx * fy;
                if v >= threshold {
                    pixels[y * w + x] = 1;
                }
            }
        }
    }
    Rle::from_bitmap(&pixels, height, width)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(x1: f32, y1: f32, x2: f32, y2: f32) -> BoundingBox {
        BoundingBox { x1, y1, x2, y2 }
    }

    #[test]
    fn targets_sample_the_mask_inside_the_region() {
        // A 8×8 mask whose left half is set; the region is the whole image: the left half of
        // a 4×4 grid is 1, the right half 0 (no cell straddles the edge at x = 4).
        let mut mask = vec![0u8; 64];
        for y in 0..8 {
            mask[y * 8..y * 8 + 4].fill(1);
        }
        let t = mask_target(&mask, 8, 8, &bx(0.0, 0.0, 8.0, 8.0), 4);
        for row in t.chunks(4) {
            assert_eq!(row, [1.0, 1.0, 0.0, 0.0]);
        }
        // A region inside the set half: all ones. One reaching its edge (x = 4) gets soft
        // values in its last column, where samples interpolate towards the unset pixels.
        let t = mask_target(&mask, 8, 8, &bx(0.0, 0.0, 3.0, 8.0), 4);
        assert!(t.iter().all(|&v| v == 1.0), "{t:?}");
        let t = mask_target(&mask, 8, 8, &bx(0.0, 0.0, 4.0, 8.0), 4);
        assert_eq!(&t[..4], [1.0, 1.0, 1.0, 0.875]);
    }

    #[test]
    fn pasting_a_full_grid_fills_the_box_and_a_target_pastes_back_to_its_mask() {
        let rle = paste_mask(&[1.0; 9], 3, &bx(2.0, 1.0, 6.0, 4.0), 8, 6, 0.5);
        assert_eq!(rle.area(), 12);
        let b = rle.bbox();
        assert_eq!((b.x1, b.y1, b.x2, b.y2), (2.0, 1.0, 6.0, 4.0));
        // A triangle-ish mask survives target → paste with high IoU.
        let (w, h) = (40usize, 30usize);
        let mut mask = vec![0u8; w * h];
        for y in 5..25 {
            for x in 10..(10 + (y - 5) * 3 / 2).min(39) {
                mask[y * w + x] = 1;
            }
        }
        let truth = Rle::from_bitmap(&mask, h as u32, w as u32);
        let region = truth.bbox();
        let grid = mask_target(&mask, w, h, &region, 28);
        let pasted = paste_mask(&grid, 28, &region, w as u32, h as u32, 0.5);
        assert!(
            pasted.iou(&truth, false) > 0.9,
            "{}",
            pasted.iou(&truth, false)
        );
    }
}
