//! Photometric augmentation: torchvision-style colour jitter.

use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::{Sample, Transform};

/// Random brightness, contrast, saturation and hue changes, applied in a random order with
/// clamping to [0, 255] after each, as torchvision's `ColorJitter` does. Targets are unchanged.
#[derive(Clone, Debug)]
pub struct ColorJitter {
    /// Brightness factor range half-width.
    pub brightness: f32,
    /// Contrast factor range half-width.
    pub contrast: f32,
    /// Saturation factor range half-width.
    pub saturation: f32,
    /// Hue shift range half-width, in turns.
    pub hue: f32,
}

fn luma(p: &[f32]) -> f32 {
    0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]
}

/// Blends every value toward `other(pixel)` by `1 - factor`.
fn blend(values: &mut [f32], channels: usize, factor: f32, other: impl Fn(&[f32]) -> f32) {
    for p in values.chunks_exact_mut(channels) {
        let o = other(p) * (1.0 - factor);
        for v in p {
            *v = (*v * factor + o).clamp(0.0, 255.0);
        }
    }
}

/// Rotates the hue of RGB pixels by `shift` turns.
fn shift_hue(values: &mut [f32], shift: f32) {
    for p in values.chunks_exact_mut(3) {
        let (r, g, b) = (p[0], p[1], p[2]);
        let max = r.max(g).max(b);
        let min = r.min(g).min(b);
        let delta = max - min;
        if delta <= 0.0 {
            continue;
        }
        let h = if max == r {
            ((g - b) / delta).rem_euclid(6.0)
        } else if max == g {
            (b - r) / delta + 2.0
        } else {
            (r - g) / delta + 4.0
        };
        let h = (h / 6.0 + shift).rem_euclid(1.0) * 6.0;
        // Back to RGB with the same value (max) and chroma (delta).
        let x = delta * (1.0 - ((h % 2.0) - 1.0).abs());
        let (r1, g1, b1) = match h as u32 {
            0 => (delta, x, 0.0),
            1 => (x, delta, 0.0),
            2 => (0.0, delta, x),
            3 => (0.0, x, delta),
            4 => (x, 0.0, delta),
            _ => (delta, 0.0, x),
        };
        p[0] = r1 + min;
        p[1] = g1 + min;
        p[2] = b1 + min;
    }
}

impl ColorJitter {
    fn factor(range: f32, rng: &mut ChaCha8Rng) -> Option<f32> {
        (range > 0.0).then(|| rng.random_range((1.0 - range).max(0.0)..=1.0 + range))
    }
}

impl Transform for ColorJitter {
    fn apply(&self, mut sample: Sample, rng: &mut ChaCha8Rng) -> Sample {
        let channels = sample.image.channels;
        let colour = channels == 3;
        let mut order = [0usize, 1, 2, 3];
        order.shuffle(rng);
        let brightness = Self::factor(self.brightness, rng);
        let contrast = Self::factor(self.contrast, rng);
        let saturation = Self::factor(self.saturation, rng).filter(|_| colour);
        let hue = (self.hue > 0.0 && colour).then(|| rng.random_range(-self.hue..=self.hue));
        if brightness.is_none() && contrast.is_none() && saturation.is_none() && hue.is_none() {
            return sample;
        }
        let mut values: Vec<f32> = sample.image.data.iter().map(|&v| v as f32).collect();
        for op in order {
            match (op, brightness, contrast, saturation, hue) {
                (0, Some(f), ..) => blend(&mut values, channels, f, |_| 0.0),
                (1, _, Some(f), ..) => {
                    let pixels = (values.len() / channels) as f32;
                    let mean = if colour {
                        values.chunks_exact(3).map(luma).sum::<f32>() / pixels
                    } else {
                        values.iter().sum::<f32>() / pixels
                    };
                    blend(&mut values, channels, f, |_| mean);
                }
                (2, _, _, Some(f), _) => blend(&mut values, channels, f, luma),
                (3, .., Some(shift)) => shift_hue(&mut values, shift),
                _ => {}
            }
        }
        for (d, v) in sample.image.data.iter_mut().zip(values) {
            *d = v.round().clamp(0.0, 255.0) as u8;
        }
        sample
    }
}

#[cfg(test)]
mod tests {
    use super::super::Target;
    use super::*;
    use crate::Image;
    use rand::SeedableRng;

    fn sample(data: Vec<u8>) -> Sample {
        let n = data.len() / 3;
        Sample {
            image: Image::new(n, 1, 3, data).unwrap(),
            target: Target::Label(4),
        }
    }

    #[test]
    fn zero_jitter_is_identity() {
        let s = sample(vec![10, 200, 30, 40, 50, 60]);
        let t = ColorJitter {
            brightness: 0.0,
            contrast: 0.0,
            saturation: 0.0,
            hue: 0.0,
        };
        assert_eq!(t.apply(s.clone(), &mut ChaCha8Rng::seed_from_u64(0)), s);
    }

    #[test]
    fn full_hue_turn_and_grey_pixels_are_fixed_points() {
        let mut v = vec![200.0, 40.0, 90.0, 128.0, 128.0, 128.0];
        let before = v.clone();
        shift_hue(&mut v, 1.0);
        for (a, b) in v.iter().zip(&before) {
            assert!((a - b).abs() < 1e-3);
        }
        // A third of a turn maps red to green.
        let mut red = vec![255.0, 0.0, 0.0];
        shift_hue(&mut red, 1.0 / 3.0);
        assert!(red[1] > 254.0 && red[0] < 1.0 && red[2] < 1.0, "{red:?}");
    }

    #[test]
    fn saturation_zero_gives_grey_and_brightness_scales() {
        let mut v = vec![200.0, 40.0, 90.0];
        blend(&mut v, 3, 0.0, luma);
        assert!((v[0] - v[1]).abs() < 1e-3 && (v[1] - v[2]).abs() < 1e-3);
        let mut v = vec![100.0, 200.0];
        blend(&mut v, 1, 1.5, |_| 0.0);
        assert_eq!(v, vec![150.0, 255.0]);
    }

    #[test]
    fn jitter_changes_pixels_within_range_and_keeps_label() {
        let s = sample((0..96).map(|v| (v * 2) as u8).collect());
        let t = ColorJitter {
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.4,
            hue: 0.1,
        };
        let out = t.apply(s.clone(), &mut ChaCha8Rng::seed_from_u64(3));
        assert_ne!(out.image, s.image);
        assert_eq!(out.target, Target::Label(4));
    }
}
