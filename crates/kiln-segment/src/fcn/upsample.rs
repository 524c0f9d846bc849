//! Upsampling by transposed convolution ("deconvolution") initialised to bilinear
//! interpolation, as FCN does it: a kernel of side `2f` with stride `f` and padding `f/2` turns
//! an `h`×`w` map into exactly `f·h`×`f·w`, each output a bilinear blend of its nearest inputs
//! (pixel centres aligned, like `align_corners = false` away from the border).

use burn::module::{Module, Param};
use burn::tensor::module::conv_transpose2d;
use burn::tensor::ops::ConvTransposeOptions;
use burn::tensor::{Device, Tensor, TensorData};

/// FCN's bilinear kernel for upsampling by `factor`: `2·factor`×`2·factor` weights, row-major,
/// `(1 − |y − c| / f)(1 − |x − c| / f)` with the centre `c = f − ½`.
pub fn bilinear_kernel(factor: usize) -> Vec<f32> {
    let size = 2 * factor;
    let f = factor as f32;
    let centre = f - 0.5;
    let weight = |i: usize| 1.0 - (i as f32 - centre).abs() / f;
    (0..size * size)
        .map(|i| weight(i / size) * weight(i % size))
        .collect()
}

/// `×factor` upsampling of a `channels`-channel map: a learnable transposed convolution
/// starting as bilinear interpolation of each channel on its own (zero across channels, as
/// FCN's surgery sets it), or that interpolation fixed.
#[derive(Module, Debug)]
pub struct Upsample {
    /// `[channels, channels, 2·factor, 2·factor]` when learned; `None` when fixed.
    pub weight: Option<Param<Tensor<4>>>,
    /// The upsampling factor (even).
    pub factor: usize,
    /// Channels in and out.
    pub channels: usize,
}

impl Upsample {
    /// `×factor` upsampling (`factor` even, at least 2) of `channels` channels.
    ///
    /// # Panics
    /// When `factor` is odd or 0 (a bug: FCN's strides are powers of two).
    pub fn new(channels: usize, factor: usize, learnable: bool, device: &Device) -> Self {
        assert!(
            factor >= 2 && factor.is_multiple_of(2),
            "upsampling factor {factor} must be even"
        );
        let weight = learnable.then(|| {
            let k = 2 * factor;
            let kernel = bilinear_kernel(factor);
            let mut values = vec![0f32; channels * channels * k * k];
            for c in 0..channels {
                values[(c * channels + c) * k * k..][..k * k].copy_from_slice(&kernel);
            }
            Param::from_tensor(Tensor::from_data(
                TensorData::new(values, [channels, channels, k, k]),
                device,
            ))
        });
        Self {
            weight,
            factor,
            channels,
        }
    }

    /// Whether the weights learn.
    pub fn is_learnable(&self) -> bool {
        self.weight.is_some()
    }

    /// `[batch, channels, h, w]` → `[batch, channels, factor·h, factor·w]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let f = self.factor;
        let options =
            |groups| ConvTransposeOptions::new([f, f], [f / 2, f / 2], [0, 0], [1, 1], groups);
        match &self.weight {
            Some(weight) => conv_transpose2d(x, weight.val(), None, options(1)),
            None => {
                let k = 2 * f;
                let kernel: Vec<f32> = (0..self.channels)
                    .flat_map(|_| bilinear_kernel(f))
                    .collect();
                let weight = Tensor::from_data(
                    TensorData::new(kernel, [self.channels, 1, k, k]),
                    &x.device(),
                );
                conv_transpose2d(x, weight, None, options(self.channels))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_is_fcns_bilinear_filter() {
        // Factor 2: 1-D weights 0.25, 0.75, 0.75, 0.25.
        let k = bilinear_kernel(2);
        assert_eq!(k.len(), 16);
        let row = [0.25f32, 0.75, 0.75, 0.25];
        for (i, v) in k.iter().enumerate() {
            assert!((v - row[i / 4] * row[i % 4]).abs() < 1e-6);
        }
    }

    /// Bilinear interpolation with pixel centres aligned, clamped at the border.
    fn reference(input: &[f32], (h, w): (usize, usize), f: usize, y: usize, x: usize) -> f32 {
        let src = |o: usize, n: usize| {
            let s = (o as f32 + 0.5) / f as f32 - 0.5;
            let s = s.clamp(0.0, (n - 1) as f32);
            let i0 = s.floor() as usize;
            (i0, (i0 + 1).min(n - 1), s - i0 as f32)
        };
        let (y0, y1, ty) = src(y, h);
        let (x0, x1, tx) = src(x, w);
        let at = |y: usize, x: usize| input[y * w + x];
        (1.0 - ty) * ((1.0 - tx) * at(y0, x0) + tx * at(y0, x1))
            + ty * ((1.0 - tx) * at(y1, x0) + tx * at(y1, x1))
    }

    #[test]
    fn learned_and_fixed_start_as_bilinear_interpolation_inside_the_map() {
        let device = Device::flex();
        let (h, w) = (4, 5);
        let input: Vec<f32> = (0..2 * h * w).map(|i| ((i * 7) % 11) as f32).collect();
        let x = Tensor::<4>::from_data(TensorData::new(input.clone(), [1, 2, h, w]), &device);
        for factor in [2, 4] {
            for learnable in [true, false] {
                let up = Upsample::new(2, factor, learnable, &device);
                let out: Vec<f32> = up.forward(x.clone()).into_data().try_to_vec().unwrap();
                let (oh, ow) = (h * factor, w * factor);
                assert_eq!(out.len(), 2 * oh * ow);
                // Away from the border (where the transposed convolution sees zero padding)
                // every channel is its own bilinear interpolation.
                for c in 0..2 {
                    let plane = &input[c * h * w..][..h * w];
                    for y in factor / 2..oh - factor / 2 {
                        for xx in factor / 2..ow - factor / 2 {
                            let want = reference(plane, (h, w), factor, y, xx);
                            let got = out[(c * oh + y) * ow + xx];
                            assert!(
                                (got - want).abs() < 1e-4,
                                "factor {factor} learnable {learnable} c{c} ({y},{xx}): {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
