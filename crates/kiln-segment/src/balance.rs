//! Class balancing by median frequency (Eigen & Fergus 2015, as SegNet weights CamVid): the
//! frequency of class `c` is its pixels divided by the pixels of the images in which it appears,
//! and its weight is the median of those frequencies divided by its own. Rare classes (poles,
//! cyclists) weigh more in the cross-entropy, common ones (road, sky) less.

use kiln_data::augment::Mask;

/// Per-class pixel counts of a set of labels, and the pixels of the images each class appears in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClassPixels {
    /// Pixels of each class.
    pub pixels: Vec<u64>,
    /// For each class, the total pixels of the images in which it appears.
    pub image_pixels: Vec<u64>,
}

impl ClassPixels {
    /// Empty counts for `classes` classes.
    pub fn new(classes: usize) -> Self {
        Self {
            pixels: vec![0; classes],
            image_pixels: vec![0; classes],
        }
    }

    /// Counts one label (ignored pixels and ids beyond the classes are skipped; the image's
    /// size counts all its pixels, as SegNet's script does).
    pub fn add(&mut self, mask: &Mask) {
        let mut own = vec![0u64; self.pixels.len()];
        for &v in &mask.data {
            if let Some(count) = own.get_mut(usize::from(v)) {
                *count += 1;
            }
        }
        let size = mask.data.len() as u64;
        for (c, n) in own.into_iter().enumerate() {
            if n > 0 {
                self.pixels[c] += n;
                self.image_pixels[c] += size;
            }
        }
    }

    /// Median-frequency weights; a class that never appears gets 0 (it cannot be learnt from
    /// these labels, and a weight would divide by zero).
    pub fn median_frequency_weights(&self) -> Vec<f64> {
        let freq: Vec<Option<f64>> = self
            .pixels
            .iter()
            .zip(&self.image_pixels)
            .map(|(&p, &t)| (p > 0).then(|| p as f64 / t as f64))
            .collect();
        let mut present: Vec<f64> = freq.iter().flatten().copied().collect();
        if present.is_empty() {
            return vec![0.0; freq.len()];
        }
        present.sort_by(f64::total_cmp);
        let n = present.len();
        let median = if n % 2 == 1 {
            present[n / 2]
        } else {
            (present[n / 2 - 1] + present[n / 2]) / 2.0
        };
        freq.iter().map(|f| f.map_or(0.0, |f| median / f)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(data: Vec<u8>) -> Mask {
        Mask {
            width: data.len(),
            height: 1,
            data,
        }
    }

    #[test]
    fn weights_follow_the_median_frequency_rule() {
        let mut counts = ClassPixels::new(4);
        // Image 1 (4 px): class 0 ×3, class 1 ×1. Image 2 (4 px): class 0 ×1, class 2 ×2, ignored ×1.
        counts.add(&mask(vec![0, 0, 0, 1]));
        counts.add(&mask(vec![0, 2, 2, Mask::IGNORE]));
        assert_eq!(counts.pixels, vec![4, 1, 2, 0]);
        assert_eq!(counts.image_pixels, vec![8, 4, 4, 0]);
        // freq = 0.5, 0.25, 0.5 → median 0.5 → weights 1, 2, 1; class 3 never appears: 0.
        assert_eq!(counts.median_frequency_weights(), vec![1.0, 2.0, 1.0, 0.0]);
        // An even count of present classes takes the mean of the middle two.
        let mut even = ClassPixels::new(2);
        even.add(&mask(vec![0, 1, 1, 1]));
        // freq 0.25 and 0.75 → median 0.5 → weights 2 and 2/3.
        let w = even.median_frequency_weights();
        assert!(
            (w[0] - 2.0).abs() < 1e-12 && (w[1] - 2.0 / 3.0).abs() < 1e-12,
            "{w:?}"
        );
    }
}
