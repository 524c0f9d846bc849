//! R-CNN's "warp with context padding": a proposal is dilated so that, once the dilated window
//! is warped (anisotropically) to `size`×`size`, the proposal fills the central
//! `(size − 2p)`×`(size − 2p)` square and `p` pixels of its surroundings frame it. Where the
//! window leaves the image the warp is filled with the mean colour (ImageNet's mean, which
//! normalises to zero).

use kiln_data::Image;
use kiln_nets::IMAGENET_MEAN;

use super::config::WarpConfig;
use crate::data::BoundingBox;

/// ImageNet's mean colour as 8-bit RGB: what the warp shows outside the image.
pub fn mean_rgb() -> [u8; 3] {
    IMAGENET_MEAN.map(|m| (m * 255.0).round() as u8)
}

/// The window of the image (continuous pixel coordinates, possibly outside it) that a warp of
/// `b` covers: `b` dilated by `padding · w / (size − 2·padding)` horizontally and alike
/// vertically. Boxes thinner than a pixel are widened to one pixel about their centre.
pub fn context_window(b: &BoundingBox, warp: &WarpConfig) -> BoundingBox {
    let inner = warp.size.saturating_sub(2 * warp.padding).max(1) as f32;
    let p = warp.padding as f32;
    let side = |lo: f32, hi: f32| {
        let (c, len) = ((lo + hi) / 2.0, (hi - lo).max(1.0));
        let half = len / 2.0 + p * len / inner;
        (c - half, c + half)
    };
    let (x1, x2) = side(b.x1, b.x2);
    let (y1, y2) = side(b.y1, b.y2);
    BoundingBox { x1, y1, x2, y2 }
}

/// Where each output pixel samples along one axis: for output pixel `o` of `n`, up to 4
/// source positions (in pixel-index space, centres at integers) spread over its footprint,
/// each `None` when it falls outside the image (`0..len` in continuous coordinates).
fn axis_samples(lo: f32, hi: f32, n: usize, len: usize) -> Vec<Vec<Option<(usize, usize, f32)>>> {
    let step = (hi - lo) / n as f32;
    // Supersample when shrinking, so that large proposals are averaged, not aliased.
    let k = (step.ceil() as usize).clamp(1, 4);
    (0..n)
        .map(|o| {
            (0..k)
                .map(|s| {
                    let x = lo + (o as f32 + (s as f32 + 0.5) / k as f32) * step;
                    if !(0.0..=len as f32).contains(&x) || len == 0 {
                        return None;
                    }
                    let u = (x - 0.5).clamp(0.0, (len - 1) as f32);
                    let i = u.floor() as usize;
                    Some((i, (i + 1).min(len - 1), u - i as f32))
                })
                .collect()
        })
        .collect()
}

/// Warps `b` of `image` (RGB) with context to a `size`×`size` RGB image: bilinear sampling,
/// averaged over up to 4×4 points per pixel when shrinking; samples outside the image take
/// `fill`.
pub fn warp_box(image: &Image, b: &BoundingBox, warp: &WarpConfig, fill: [u8; 3]) -> Image {
    let size = warp.size;
    let win = context_window(b, warp);
    let xs = axis_samples(win.x1, win.x2, size, image.width);
    let ys = axis_samples(win.y1, win.y2, size, image.height);
    let c = image.channels;
    let at =
        |x: usize, y: usize, k: usize| image.data[(y * image.width + x) * c + k.min(c - 1)] as f32;
    let mut data = vec![0u8; size * size * 3];
    for (oy, ry) in ys.iter().enumerate() {
        for (ox, rx) in xs.iter().enumerate() {
            let mut sum = [0f32; 3];
            for sy in ry {
                for sx in rx {
                    match (sy, sx) {
                        (Some((y0, y1, fy)), Some((x0, x1, fx))) => {
                            for (k, s) in sum.iter_mut().enumerate() {
                                let top = at(*x0, *y0, k) * (1.0 - fx) + at(*x1, *y0, k) * fx;
                                let bottom = at(*x0, *y1, k) * (1.0 - fx) + at(*x1, *y1, k) * fx;
                                *s += top * (1.0 - fy) + bottom * fy;
                            }
                        }
                        _ => {
                            for (k, s) in sum.iter_mut().enumerate() {
                                *s += fill[k] as f32;
                            }
                        }
                    }
                }
            }
            let count = (ry.len() * rx.len()) as f32;
            let out = &mut data[(oy * size + ox) * 3..(oy * size + ox) * 3 + 3];
            for k in 0..3 {
                out[k] = (sum[k] / count).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    Image {
        width: size,
        height: size,
        channels: 3,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x1: f32, y1: f32, x2: f32, y2: f32) -> BoundingBox {
        BoundingBox { x1, y1, x2, y2 }
    }

    /// A 100×80 image whose red channel is the column index and green the row index.
    fn ramp() -> Image {
        let (w, h) = (100, 80);
        let mut data = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                data.extend([x as u8, y as u8, 7]);
            }
        }
        Image::new(w, h, 3, data).unwrap()
    }

    #[test]
    fn context_window_puts_the_box_in_the_central_square() {
        let warp = WarpConfig {
            size: 64,
            padding: 16,
        };
        // 40 pixels of box fill 32 warped pixels: 16 warped pixels of context are 20 image pixels.
        let win = context_window(&b(10.0, 20.0, 50.0, 40.0), &warp);
        assert_eq!(win, b(-10.0, 10.0, 70.0, 50.0));
        let none = context_window(
            &b(10.0, 20.0, 50.0, 40.0),
            &WarpConfig {
                size: 64,
                padding: 0,
            },
        );
        assert_eq!(none, b(10.0, 20.0, 50.0, 40.0));
    }

    #[test]
    fn warp_maps_the_box_to_the_expected_window_and_fills_outside_with_the_mean() {
        let warp = WarpConfig {
            size: 64,
            padding: 16,
        };
        let fill = mean_rgb();
        assert_eq!(fill, [124, 116, 104]);
        // Box (10, 20)–(50, 40): window x −10..70 (1.25 px per warped px), y 10..50 (0.625).
        let out = warp_box(&ramp(), &b(10.0, 20.0, 50.0, 40.0), &warp, fill);
        assert_eq!((out.width, out.height), (64, 64));
        // Columns whose sample lies left of x = 0 (x = −10 + 1.25 (o + ½) < 0: o ≤ 7) are the
        // mean; columns inside read the ramp at x − ½.
        for o in 0..64 {
            let px = out.pixel(o, 32);
            let x = -10.0 + 1.25 * (o as f32 + 0.5);
            if x < 0.0 {
                assert_eq!(px, &fill, "column {o}");
            } else {
                // Two samples per pixel (1.25 → k = 2), each at the ramp's value x − ½ (clamped).
                let k = 2.0;
                let expect: f32 = (0..2)
                    .map(|s| {
                        (-10.0 + 1.25 * (o as f32 + (s as f32 + 0.5) / k) - 0.5).clamp(0.0, 99.0)
                    })
                    .sum::<f32>()
                    / k;
                assert!(
                    (px[0] as f32 - expect).abs() <= 0.51,
                    "column {o}: {} vs {expect}",
                    px[0]
                );
                assert_eq!(px[2], 7);
            }
        }
        // The box's left edge (x = 10) sits at warped column 16, its right edge (x = 50) at 48.
        assert_eq!(out.pixel(16, 32)[0], 10);
        assert_eq!(out.pixel(47, 32)[0], 49);
        // Vertically the window (10..50) is inside the image: rows read y − ½.
        assert_eq!(out.pixel(40, 0)[1], 10);
        assert_eq!(out.pixel(40, 16)[1], 20);
    }

    #[test]
    fn a_window_past_every_border_is_mean_outside_and_image_inside() {
        let warp = WarpConfig {
            size: 32,
            padding: 8,
        };
        let image = Image::filled(20, 20, 3, 200);
        // The whole image as the box: the 8-pixel context frame is all outside.
        let out = warp_box(&image, &b(0.0, 0.0, 20.0, 20.0), &warp, [1, 2, 3]);
        for y in 0..32 {
            for x in 0..32 {
                let inside = (8..24).contains(&x) && (8..24).contains(&y);
                let expect: &[u8] = if inside { &[200; 3] } else { &[1, 2, 3] };
                assert_eq!(out.pixel(x, y), expect, "({x}, {y})");
            }
        }
        // A degenerate box still warps (to a one-pixel-wide window about its centre).
        let thin = warp_box(&image, &b(5.0, 5.0, 5.0, 5.0), &warp, [1, 2, 3]);
        assert_eq!(thin.pixel(16, 16), &[200; 3]);
    }
}
