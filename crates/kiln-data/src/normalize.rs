//! Pixel normalisation fitted on the training split and applied unchanged to every split.
//!
//! Statistics are only ever computed by [`Normalization::fit`] from an [`ImageSet`] that the
//! caller declares to be training data ([`crate::Splits`] passes its train split, so validation
//! and test statistics cannot leak in). They are saved with a run as JSON so that prediction
//! applies exactly the same transform.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{DataError, ImageSet, Result};

/// Which normalisation to fit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NormalizationKind {
    /// `x / 255`, into [0, 1].
    Unit,
    /// `x / 127.5 - 1`, into [-1, 1].
    Symmetric,
    /// `(x / 255 - mean_c) / std_c` with per-channel training statistics.
    #[default]
    PerChannel,
    /// `x - mean_image`, in pixel units (0–255) as in CS231n's linear-classifier lessons.
    MeanImage,
}

/// A fitted pixel transform from `u8` to `f32`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Normalization {
    /// `x / 255`.
    Unit,
    /// `x / 127.5 - 1`.
    Symmetric,
    /// `(x / 255 - mean[c]) / std[c]`.
    PerChannel {
        /// Channel means of the training images, on the [0, 1] scale.
        mean: Vec<f32>,
        /// Channel standard deviations of the training images, on the [0, 1] scale.
        std: Vec<f32>,
    },
    /// `x - mean[pixel]`, in pixel units.
    MeanImage {
        /// The mean training image, HWC, in pixel units.
        mean: Vec<f32>,
    },
}

impl Normalization {
    /// Fits `kind` on `train`, which must be the training split only.
    pub fn fit(kind: NormalizationKind, train: &ImageSet) -> Result<Self> {
        if train.is_empty() {
            return Err(DataError::invalid(
                "normalisation",
                "cannot fit statistics on an empty training set",
            ));
        }
        Ok(match kind {
            NormalizationKind::Unit => Self::Unit,
            NormalizationKind::Symmetric => Self::Symmetric,
            NormalizationKind::PerChannel => {
                let (mean, std) = channel_mean_std(train);
                if let Some(c) = std.iter().position(|&s| s < 1e-6) {
                    return Err(DataError::invalid(
                        "normalisation",
                        format!("channel {c} is constant in the training set; use unit scaling"),
                    ));
                }
                Self::PerChannel { mean, std }
            }
            NormalizationKind::MeanImage => {
                let per = train.image_len();
                let mut sum = vec![0u64; per];
                for i in 0..train.len() {
                    for (s, &v) in sum.iter_mut().zip(train.pixels_of(i)) {
                        *s += v as u64;
                    }
                }
                let n = train.len() as f64;
                Self::MeanImage {
                    mean: sum.iter().map(|&s| (s as f64 / n) as f32).collect(),
                }
            }
        })
    }

    /// Converts one HWC `u8` image with `channels` channels into CHW `f32` values in `out`.
    pub fn apply(&self, pixels: &[u8], channels: usize, out: &mut [f32]) {
        let hw = pixels.len() / channels;
        debug_assert_eq!(out.len(), pixels.len());
        match self {
            Self::Unit | Self::Symmetric | Self::PerChannel { .. } => {
                let (scale, shift) = self.affine(channels);
                for c in 0..channels {
                    let plane = &mut out[c * hw..(c + 1) * hw];
                    for (o, p) in plane.iter_mut().zip(pixels[c..].iter().step_by(channels)) {
                        *o = *p as f32 * scale[c] + shift[c];
                    }
                }
            }
            Self::MeanImage { mean } => {
                for c in 0..channels {
                    let plane = &mut out[c * hw..(c + 1) * hw];
                    for (p, o) in plane.iter_mut().enumerate() {
                        let at = p * channels + c;
                        *o = pixels[at] as f32 - mean[at];
                    }
                }
            }
        }
    }

    /// Normalises every image of `set` into one row-major `[len, channels·height·width]`
    /// matrix (each row CHW), in parallel.
    pub fn apply_set(&self, set: &ImageSet) -> Vec<f32> {
        use rayon::prelude::*;
        let per = set.image_len();
        let mut out = vec![0f32; set.len() * per];
        out.par_chunks_mut(per)
            .zip(set.pixels.par_chunks(per))
            .for_each(|(row, pixels)| self.apply(pixels, set.channels, row));
        out
    }

    /// Per-channel `(scale, shift)` so that `y = x * scale + shift` for the affine kinds.
    fn affine(&self, channels: usize) -> (Vec<f32>, Vec<f32>) {
        match self {
            Self::Unit => (vec![1.0 / 255.0; channels], vec![0.0; channels]),
            Self::Symmetric => (vec![1.0 / 127.5; channels], vec![-1.0; channels]),
            Self::PerChannel { mean, std } => (
                std.iter().map(|s| 1.0 / (255.0 * s)).collect(),
                mean.iter().zip(std).map(|(m, s)| -m / s).collect(),
            ),
            Self::MeanImage { .. } => unreachable!("not an affine per-channel map"),
        }
    }

    /// Checks that the statistics fit images of `width`×`height`×`channels`.
    pub fn check_geometry(&self, width: usize, height: usize, channels: usize) -> Result<()> {
        let ok = match self {
            Self::Unit | Self::Symmetric => true,
            Self::PerChannel { mean, std } => mean.len() == channels && std.len() == channels,
            Self::MeanImage { mean } => mean.len() == width * height * channels,
        };
        ok.then_some(()).ok_or_else(|| {
            DataError::invalid(
                "normalisation",
                format!("statistics do not fit {width}x{height}x{channels} images"),
            )
        })
    }

    /// Writes the statistics as JSON (atomically: temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("serialisable");
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, json).map_err(|e| DataError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))
    }

    /// Reads statistics written by [`Normalization::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| DataError::format(path, format!("not a kiln normalisation file: {e}")))
    }
}

/// Per-channel mean and standard deviation of a set on the [0, 1] scale.
pub fn channel_mean_std(set: &ImageSet) -> (Vec<f32>, Vec<f32>) {
    let c = set.channels;
    let mut sum = vec![0u64; c];
    let mut sum_sq = vec![0u64; c];
    for (i, &v) in set.pixels.iter().enumerate() {
        sum[i % c] += v as u64;
        sum_sq[i % c] += (v as u64) * (v as u64);
    }
    let n = (set.pixels.len() / c) as f64;
    let mut mean = Vec::with_capacity(c);
    let mut std = Vec::with_capacity(c);
    for ch in 0..c {
        let m = sum[ch] as f64 / n;
        let var = (sum_sq[ch] as f64 / n - m * m).max(0.0);
        mean.push((m / 255.0) as f32);
        std.push((var.sqrt() / 255.0) as f32);
    }
    (mean, std)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(values: &[[u8; 2]]) -> ImageSet {
        // 1x1 images with two channels.
        let pixels = values.iter().flatten().copied().collect();
        ImageSet::new(1, 1, 2, pixels, vec![0; values.len()], vec!["x".into()]).unwrap()
    }

    #[test]
    fn per_channel_uses_training_statistics_only() {
        let train = set(&[[0, 100], [255, 100], [0, 50], [255, 150]]);
        let test = set(&[[255, 255]]);
        let norm = Normalization::fit(NormalizationKind::PerChannel, &train).unwrap();
        let Normalization::PerChannel { mean, std } = &norm else {
            panic!()
        };
        assert!((mean[0] - 0.5).abs() < 1e-6 && (std[0] - 0.5).abs() < 1e-6);
        assert!((mean[1] - 100.0 / 255.0).abs() < 1e-6);
        // Training data comes out zero-mean, test data is mapped with the same numbers.
        let mut out = [0.0; 2];
        let mut total = [0.0; 2];
        for i in 0..train.len() {
            norm.apply(train.pixels_of(i), 2, &mut out);
            total[0] += out[0];
            total[1] += out[1];
        }
        assert!(total[0].abs() < 1e-5 && total[1].abs() < 1e-5);
        norm.apply(test.pixels_of(0), 2, &mut out);
        assert!((out[0] - 1.0).abs() < 1e-5);
    }

    #[test]
    fn mean_image_and_ranges() {
        let train = set(&[[10, 20], [30, 40]]);
        let norm = Normalization::fit(NormalizationKind::MeanImage, &train).unwrap();
        let mut out = [0.0; 2];
        norm.apply(&[20, 30], 2, &mut out);
        assert_eq!(out, [0.0, 0.0]);
        Normalization::Symmetric.apply(&[0, 255], 2, &mut out);
        assert_eq!(out, [-1.0, 1.0]);
        Normalization::Unit.apply(&[0, 255], 2, &mut out);
        assert_eq!(out, [0.0, 1.0]);
    }

    #[test]
    fn whole_sets_become_rows() {
        let train = set(&[[10, 20], [30, 40]]);
        let rows = Normalization::Unit.apply_set(&train);
        assert_eq!(rows.len(), 4);
        assert!((rows[2] - 30.0 / 255.0).abs() < 1e-7);
    }

    #[test]
    fn hwc_becomes_chw() {
        let mut out = [0.0; 6];
        // Two pixels of three channels: (1,2,3) and (4,5,6).
        Normalization::Unit.apply(&[1, 2, 3, 4, 5, 6], 3, &mut out);
        for (o, v) in out.iter().zip([1, 4, 2, 5, 3, 6]) {
            assert!((o - v as f32 / 255.0).abs() < 1e-7);
        }
    }

    #[test]
    fn round_trips_through_json_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("normalization.json");
        let norm = Normalization::PerChannel {
            mean: vec![0.1, 0.2],
            std: vec![0.3, 0.4],
        };
        norm.save(&path).unwrap();
        assert_eq!(Normalization::load(&path).unwrap(), norm);
        std::fs::write(&path, "{\"kind\": \"nope\"}").unwrap();
        assert!(
            Normalization::load(&path)
                .unwrap_err()
                .to_string()
                .contains("normalization.json")
        );
        assert!(norm.check_geometry(4, 4, 3).is_err());
    }

    #[test]
    fn constant_channel_is_an_error() {
        let train = set(&[[5, 1], [5, 2]]);
        assert!(Normalization::fit(NormalizationKind::PerChannel, &train).is_err());
    }
}
