//! Per-pixel inputs of selective search: resizing, the colour spaces it segments and groups in,
//! Gaussian smoothing, and the colour and texture bins each pixel adds to its region's
//! histograms.

use image::imageops::FilterType;
use kiln_data::Image;
use serde::{Deserialize, Serialize};

/// A colour space selective search segments and measures colour and texture in (one axis of
/// its diversification). Every channel is scaled to 0–255.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColourSpace {
    /// Hue, saturation, value (hue 0–360° scaled to 0–255).
    Hsv,
    /// CIE L\*a\*b\* (D65) as 8-bit images store it: `L * 255 / 100`, `a + 128`, `b + 128`.
    Lab,
    /// The sRGB values as decoded.
    Rgb,
}

/// Number of colour histogram bins per channel (the paper's 25).
pub(crate) const COLOUR_BINS: usize = 25;
/// Length of a region's colour histogram: 25 bins for each of 3 channels.
pub(crate) const COLOUR_LEN: usize = 3 * COLOUR_BINS;
/// Number of texture histogram bins per orientation and channel (the paper's 10).
pub(crate) const TEXTURE_BINS: usize = 10;
/// Orientations of the Gaussian derivatives (the paper's 8).
pub(crate) const ORIENTATIONS: usize = 8;
/// Texture maps per pixel: 8 orientations for each of 3 channels.
pub(crate) const TEXTURE_MAPS: usize = 3 * ORIENTATIONS;
/// Length of a region's texture histogram (240).
pub(crate) const TEXTURE_LEN: usize = TEXTURE_MAPS * TEXTURE_BINS;

/// Three channels of `f32`, one plane each, row-major.
#[derive(Clone, Debug)]
pub(crate) struct Planes {
    pub width: usize,
    pub height: usize,
    pub channels: [Vec<f32>; 3],
}

/// `image` as RGB with its long side scaled to `long_side` (up or down, a triangle filter that
/// averages when shrinking), unchanged when `long_side` is `None` or already met.
pub(crate) fn resize_long_side(image: &Image, long_side: Option<usize>) -> Image {
    let rgb = if image.channels == 3 {
        None
    } else {
        Some(image.to_rgb())
    };
    let rgb_ref = rgb.as_ref().unwrap_or(image);
    let Some(long) = long_side.filter(|&l| l > 0) else {
        return rgb.unwrap_or_else(|| image.clone());
    };
    let (w, h) = (rgb_ref.width, rgb_ref.height);
    let scale = long as f64 / w.max(h).max(1) as f64;
    let nw = ((w as f64 * scale).round() as usize).max(1);
    let nh = ((h as f64 * scale).round() as usize).max(1);
    if (nw, nh) == (w, h) || w == 0 || h == 0 {
        return rgb.unwrap_or_else(|| image.clone());
    }
    let Some(buffer) = image::RgbImage::from_raw(w as u32, h as u32, rgb_ref.data.clone()) else {
        return rgb.unwrap_or_else(|| image.clone());
    };
    let resized = image::imageops::resize(&buffer, nw as u32, nh as u32, FilterType::Triangle);
    Image {
        width: nw,
        height: nh,
        channels: 3,
        data: resized.into_raw(),
    }
}

/// sRGB (0–255) to linear light, by table.
fn srgb_to_linear_table() -> [f32; 256] {
    let mut table = [0.0f32; 256];
    for (v, out) in table.iter_mut().enumerate() {
        let c = v as f32 / 255.0;
        *out = if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        };
    }
    table
}

/// CIE L\*a\*b\*'s companding function.
fn lab_f(t: f32) -> f32 {
    const DELTA: f32 = 6.0 / 29.0;
    if t > DELTA * DELTA * DELTA {
        t.cbrt()
    } else {
        t / (3.0 * DELTA * DELTA) + 4.0 / 29.0
    }
}

/// An RGB image (3 channels) in `space`, every channel on 0–255.
pub(crate) fn convert(rgb: &Image, space: ColourSpace) -> Planes {
    let n = rgb.width * rgb.height;
    let mut channels = [vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]];
    let [c0, c1, c2] = &mut channels;
    let pixels = rgb.data.chunks_exact(3);
    match space {
        ColourSpace::Rgb => {
            for (i, p) in pixels.enumerate() {
                c0[i] = p[0] as f32;
                c1[i] = p[1] as f32;
                c2[i] = p[2] as f32;
            }
        }
        ColourSpace::Hsv => {
            for (i, p) in pixels.enumerate() {
                let (r, g, b) = (p[0] as f32, p[1] as f32, p[2] as f32);
                let max = r.max(g).max(b);
                let min = r.min(g).min(b);
                let delta = max - min;
                let hue = if delta <= 0.0 {
                    0.0
                } else if max == r {
                    let h = 60.0 * (g - b) / delta;
                    if h < 0.0 { h + 360.0 } else { h }
                } else if max == g {
                    60.0 * (b - r) / delta + 120.0
                } else {
                    60.0 * (r - g) / delta + 240.0
                };
                c0[i] = hue * (255.0 / 360.0);
                c1[i] = if max > 0.0 { 255.0 * delta / max } else { 0.0 };
                c2[i] = max;
            }
        }
        ColourSpace::Lab => {
            let lin = srgb_to_linear_table();
            for (i, p) in pixels.enumerate() {
                let (r, g, b) = (lin[p[0] as usize], lin[p[1] as usize], lin[p[2] as usize]);
                // sRGB (D65) to XYZ, normalised by the D65 white point.
                let x = (0.412_456_4 * r + 0.357_576_1 * g + 0.180_437_5 * b) / 0.950_47;
                let y = 0.212_672_9 * r + 0.715_152_2 * g + 0.072_175 * b;
                let z = (0.019_333_9 * r + 0.119_192 * g + 0.950_304_1 * b) / 1.088_83;
                let (fx, fy, fz) = (lab_f(x), lab_f(y), lab_f(z));
                let l = 116.0 * fy - 16.0;
                c0[i] = (l * 2.55).clamp(0.0, 255.0);
                c1[i] = (500.0 * (fx - fy) + 128.0).clamp(0.0, 255.0);
                c2[i] = (200.0 * (fy - fz) + 128.0).clamp(0.0, 255.0);
            }
        }
    }
    Planes {
        width: rgb.width,
        height: rgb.height,
        channels,
    }
}

/// A normalised 1-D Gaussian of standard deviation `sigma`, radius `ceil(4 sigma)` (as
/// Felzenszwalb and Huttenlocher's code uses).
fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    let sigma = sigma.max(0.01);
    let radius = (4.0 * sigma).ceil() as i32;
    let mut k: Vec<f32> = (-radius..=radius)
        .map(|x| (-(x * x) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= sum);
    k
}

/// The derivative of a Gaussian of standard deviation `sigma` (radius `ceil(4 sigma)`), scaled so
/// that it maps a unit ramp to 1.
fn gaussian_derivative_kernel(sigma: f32) -> Vec<f32> {
    let radius = (4.0 * sigma).ceil() as i32;
    let mut k: Vec<f32> = (-radius..=radius)
        .map(|x| -(x as f32) * (-(x * x) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    // Normalise: sum_x k(x) * x = 1 (the response to f(x) = x), with the sign that gives a
    // positive response to an increasing ramp under `convolve_rows`' correlation.
    let moment: f32 = (-radius..=radius).zip(&k).map(|(x, v)| x as f32 * v).sum();
    if moment != 0.0 {
        k.iter_mut().for_each(|v| *v /= moment);
    }
    k
}

/// Correlates every row of `src` (`width`×`height`) with `kernel` (odd length, centred),
/// replicating border pixels.
fn filter_rows(src: &[f32], width: usize, height: usize, kernel: &[f32], dst: &mut [f32]) {
    let r = kernel.len() / 2;
    for y in 0..height {
        let row = &src[y * width..(y + 1) * width];
        let out = &mut dst[y * width..(y + 1) * width];
        for x in 0..width {
            let mut acc = 0.0;
            if x >= r && x + r < width {
                let window = &row[x - r..=x + r];
                for (a, b) in window.iter().zip(kernel) {
                    acc += a * b;
                }
            } else {
                for (i, kv) in kernel.iter().enumerate() {
                    let xi = (x + i).saturating_sub(r).min(width - 1);
                    acc += row[xi] * kv;
                }
            }
            out[x] = acc;
        }
    }
}

/// Correlates every column of `src` with `kernel`, replicating border pixels.
fn filter_cols(src: &[f32], width: usize, height: usize, kernel: &[f32], dst: &mut [f32]) {
    let r = kernel.len() / 2;
    dst.iter_mut().for_each(|v| *v = 0.0);
    for y in 0..height {
        let out = &mut dst[y * width..(y + 1) * width];
        for (i, kv) in kernel.iter().enumerate() {
            let yi = (y + i).saturating_sub(r).min(height - 1);
            let row = &src[yi * width..(yi + 1) * width];
            for (o, s) in out.iter_mut().zip(row) {
                *o += s * kv;
            }
        }
    }
}

/// Every channel smoothed by a Gaussian of standard deviation `sigma` (separable; borders
/// replicated). `sigma <= 0` returns a copy.
pub(crate) fn smooth(planes: &Planes, sigma: f32) -> Planes {
    if sigma <= 0.0 {
        return planes.clone();
    }
    let (w, h) = (planes.width, planes.height);
    let kernel = gaussian_kernel(sigma);
    let mut tmp = vec![0.0f32; w * h];
    let channels = planes.channels.clone().map(|c| {
        let mut out = vec![0.0f32; w * h];
        filter_rows(&c, w, h, &kernel, &mut tmp);
        filter_cols(&tmp, w, h, &kernel, &mut out);
        out
    });
    Planes {
        width: w,
        height: h,
        channels,
    }
}

/// Per pixel, its colour histogram bin for each channel, as indices into a 75-bin histogram
/// (`channel * 25 + bin`), three bytes a pixel.
pub(crate) fn colour_bins(planes: &Planes) -> Vec<u8> {
    let n = planes.width * planes.height;
    let mut out = vec![0u8; 3 * n];
    for (c, plane) in planes.channels.iter().enumerate() {
        for (i, &v) in plane.iter().enumerate() {
            let bin = ((v * (COLOUR_BINS as f32 / 256.0)) as usize).min(COLOUR_BINS - 1);
            out[3 * i + c] = (c * COLOUR_BINS + bin) as u8;
        }
    }
    out
}

/// Standard deviation of the Gaussian derivatives the texture histograms use (the paper's 1).
const TEXTURE_SIGMA: f32 = 1.0;

/// Per pixel, its texture histogram bin for each channel and orientation, as indices into a
/// 240-bin histogram (`(channel * 8 + orientation) * 10 + bin`), 24 bytes a pixel.
///
/// The paper's texture feature: Gaussian derivatives (sigma 1) of each channel in 8
/// orientations — the positive and negative halves of the derivatives along 0°, 45°, 90° and
/// 135° — each binned into 10 bins between zero and the largest response of that map in the
/// image (as OpenCV scales them).
pub(crate) fn texture_bins(planes: &Planes) -> Vec<u8> {
    let (w, h) = (planes.width, planes.height);
    let n = w * h;
    let mut out = vec![0u8; TEXTURE_MAPS * n];
    let smooth_k = gaussian_kernel(TEXTURE_SIGMA);
    let deriv_k = gaussian_derivative_kernel(TEXTURE_SIGMA);
    let mut tmp = vec![0.0f32; n];
    let mut gx = vec![0.0f32; n];
    let mut gy = vec![0.0f32; n];
    let diag = std::f32::consts::FRAC_1_SQRT_2;
    let mut response = vec![0.0f32; n];
    for (c, plane) in planes.channels.iter().enumerate() {
        filter_rows(plane, w, h, &deriv_k, &mut tmp);
        filter_cols(&tmp, w, h, &smooth_k, &mut gx);
        filter_rows(plane, w, h, &smooth_k, &mut tmp);
        filter_cols(&tmp, w, h, &deriv_k, &mut gy);
        // Directions 0°, 45°, 90°, 135°; each gives the orientation θ (positive half) and θ+180°
        // (negative half).
        for dir in 0..4 {
            let (cx, cy) = match dir {
                0 => (1.0, 0.0),
                1 => (diag, diag),
                2 => (0.0, 1.0),
                _ => (-diag, diag),
            };
            let (mut pos_max, mut neg_max) = (0.0f32, 0.0f32);
            for ((r, &x), &y) in response.iter_mut().zip(&gx).zip(&gy) {
                let v = cx * x + cy * y;
                *r = v;
                pos_max = pos_max.max(v);
                neg_max = neg_max.max(-v);
            }
            let pos_scale = if pos_max > 0.0 {
                TEXTURE_BINS as f32 / pos_max
            } else {
                0.0
            };
            let neg_scale = if neg_max > 0.0 {
                TEXTURE_BINS as f32 / neg_max
            } else {
                0.0
            };
            let pos_map = c * ORIENTATIONS + dir;
            let neg_map = c * ORIENTATIONS + dir + 4;
            for (i, &v) in response.iter().enumerate() {
                let pos_bin = ((v.max(0.0) * pos_scale) as usize).min(TEXTURE_BINS - 1);
                let neg_bin = ((-v).max(0.0) * neg_scale) as usize;
                out[TEXTURE_MAPS * i + pos_map] = (pos_map * TEXTURE_BINS + pos_bin) as u8;
                out[TEXTURE_MAPS * i + neg_map] =
                    (neg_map * TEXTURE_BINS + neg_bin.min(TEXTURE_BINS - 1)) as u8;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hsv_and_lab_of_primaries() {
        let img = Image::new(3, 1, 3, vec![255, 0, 0, 0, 255, 0, 255, 255, 255]).unwrap();
        let hsv = convert(&img, ColourSpace::Hsv);
        assert_eq!(hsv.channels[0][0], 0.0);
        assert!((hsv.channels[0][1] - 120.0 * 255.0 / 360.0).abs() < 1e-3);
        assert_eq!(hsv.channels[1][0], 255.0);
        assert_eq!(hsv.channels[1][2], 0.0);
        assert_eq!(hsv.channels[2][2], 255.0);
        let lab = convert(&img, ColourSpace::Lab);
        // White: L = 100, a = b = 0.
        assert!((lab.channels[0][2] - 255.0).abs() < 0.1);
        assert!((lab.channels[1][2] - 128.0).abs() < 0.1);
        assert!((lab.channels[2][2] - 128.0).abs() < 0.1);
        // Red: L ≈ 53.2, a ≈ 80.1, b ≈ 67.2.
        assert!((lab.channels[0][0] - 53.24 * 2.55).abs() < 0.5);
        assert!((lab.channels[1][0] - (80.09 + 128.0)).abs() < 0.5);
        assert!((lab.channels[2][0] - (67.20 + 128.0)).abs() < 0.5);
    }

    #[test]
    fn resize_scales_the_long_side() {
        let img = Image::filled(100, 40, 3, 7);
        let r = resize_long_side(&img, Some(500));
        assert_eq!((r.width, r.height), (500, 200));
        assert!(r.data.iter().all(|&v| v == 7));
        let grey = Image::filled(10, 20, 1, 9);
        let r = resize_long_side(&grey, None);
        assert_eq!((r.width, r.height, r.channels), (10, 20, 3));
    }

    #[test]
    fn derivative_kernel_measures_a_ramp() {
        let (w, h) = (20, 5);
        let ramp: Vec<f32> = (0..w * h).map(|i| (i % w) as f32 * 2.0).collect();
        let mut out = vec![0.0; w * h];
        filter_rows(&ramp, w, h, &gaussian_derivative_kernel(1.0), &mut out);
        assert!((out[2 * w + 10] - 2.0).abs() < 1e-4);
    }
}
