//! Occlusion augmentation: cutout.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::{Sample, Transform};

/// DeVries & Taylor's cutout: zeroes a `size`×`size` square whose centre is uniform over the
/// image (so it may be clipped by the border), with probability `p`. Targets are unchanged.
#[derive(Clone, Debug)]
pub struct Cutout {
    /// Side of the square.
    pub size: usize,
    /// Probability of applying it.
    pub p: f32,
}

impl Transform for Cutout {
    fn apply(&self, mut sample: Sample, rng: &mut ChaCha8Rng) -> Sample {
        if self.size == 0 || rng.random::<f32>() >= self.p {
            return sample;
        }
        let img = &mut sample.image;
        let cx = rng.random_range(0..img.width) as isize;
        let cy = rng.random_range(0..img.height) as isize;
        let half = (self.size / 2) as isize;
        let x0 = (cx - half).max(0) as usize;
        let y0 = (cy - half).max(0) as usize;
        let x1 = ((cx - half + self.size as isize).max(0) as usize).min(img.width);
        let y1 = ((cy - half + self.size as isize).max(0) as usize).min(img.height);
        let c = img.channels;
        for y in y0..y1 {
            let row = &mut img.data[(y * img.width + x0) * c..(y * img.width + x1) * c];
            row.fill(0);
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

    #[test]
    fn cutout_zeroes_at_most_one_square() {
        let t = Cutout { size: 4, p: 1.0 };
        for seed in 0..30 {
            let s = Sample {
                image: Image::filled(10, 10, 3, 9),
                target: Target::Label(0),
            };
            let out = t.apply(s, &mut ChaCha8Rng::seed_from_u64(seed));
            let zeroed = out.image.data.chunks(3).filter(|p| p[0] == 0).count();
            assert!((1..=16).contains(&zeroed), "{zeroed}");
            let zero_pixels: Vec<(usize, usize)> = (0..100)
                .filter(|i| out.image.data[i * 3] == 0)
                .map(|i| (i % 10, i / 10))
                .collect();
            let (xs, ys): (Vec<_>, Vec<_>) = zero_pixels.iter().copied().unzip();
            let w = xs.iter().max().unwrap() - xs.iter().min().unwrap() + 1;
            let h = ys.iter().max().unwrap() - ys.iter().min().unwrap() + 1;
            assert_eq!(w * h, zeroed, "not a rectangle");
        }
        let never = Cutout { size: 4, p: 0.0 };
        let s = Sample {
            image: Image::filled(5, 5, 1, 7),
            target: Target::Label(0),
        };
        assert_eq!(never.apply(s.clone(), &mut ChaCha8Rng::seed_from_u64(0)), s);
    }
}
