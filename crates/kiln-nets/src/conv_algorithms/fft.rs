//! FFT convolution: by the convolution theorem a cross-correlation is a pointwise product in the
//! frequency domain, `x ⋆ w = F⁻¹(F(x) · conj(F(w)))`. Inputs and (dilated) kernels are
//! zero-padded to power-of-two planes at least as large as the padded input (so the circular
//! correlation never wraps into the outputs kept), transformed once each, multiplied and summed
//! over input channels per output channel, and transformed back; strides keep every s-th value.
//! The cost is independent of the kernel size, which is why FFT wins for large kernels.

use rayon::prelude::*;

use super::{ConvOutput, ConvShape, add_bias};

/// A complex number.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Complex {
    re: f32,
    im: f32,
}

impl Complex {
    fn mul(self, o: Self) -> Self {
        Self {
            re: self.re * o.re - self.im * o.im,
            im: self.re * o.im + self.im * o.re,
        }
    }
    /// `self · conj(o)`.
    fn mul_conj(self, o: Self) -> Self {
        Self {
            re: self.re * o.re + self.im * o.im,
            im: self.im * o.re - self.re * o.im,
        }
    }
}

/// Precomputed radix-2 transform of one power-of-two length.
struct Plan {
    n: usize,
    twiddles: Vec<Complex>,
    reversed: Vec<usize>,
}

impl Plan {
    fn new(n: usize) -> Self {
        assert!(n.is_power_of_two());
        let bits = n.trailing_zeros();
        let twiddles = (0..n / 2)
            .map(|k| {
                let angle = -2.0 * std::f64::consts::PI * k as f64 / n as f64;
                Complex {
                    re: angle.cos() as f32,
                    im: angle.sin() as f32,
                }
            })
            .collect();
        let reversed = (0..n)
            .map(|i| {
                if bits == 0 {
                    0
                } else {
                    i.reverse_bits() >> (usize::BITS - bits)
                }
            })
            .collect();
        Self {
            n,
            twiddles,
            reversed,
        }
    }

    /// In-place forward transform (or inverse without the 1/n scale) of `data`.
    fn run(&self, data: &mut [Complex], inverse: bool) {
        let n = self.n;
        for i in 0..n {
            let j = self.reversed[i];
            if j > i {
                data.swap(i, j);
            }
        }
        let mut len = 2;
        while len <= n {
            let step = n / len;
            for start in (0..n).step_by(len) {
                for k in 0..len / 2 {
                    let mut w = self.twiddles[k * step];
                    if inverse {
                        w.im = -w.im;
                    }
                    let a = data[start + k];
                    let b = data[start + k + len / 2].mul(w);
                    data[start + k] = Complex {
                        re: a.re + b.re,
                        im: a.im + b.im,
                    };
                    data[start + k + len / 2] = Complex {
                        re: a.re - b.re,
                        im: a.im - b.im,
                    };
                }
            }
            len *= 2;
        }
    }
}

/// Row-then-column transform of a `rows × cols` plane.
fn transform_2d(
    plane: &mut [Complex],
    rows: &Plan,
    cols: &Plan,
    inverse: bool,
    column: &mut Vec<Complex>,
) {
    let (p, q) = (rows.n, cols.n);
    for row in plane.chunks_exact_mut(q) {
        cols.run(row, inverse);
    }
    column.resize(p, Complex::default());
    for j in 0..q {
        for i in 0..p {
            column[i] = plane[i * q + j];
        }
        rows.run(column, inverse);
        for i in 0..p {
            plane[i * q + j] = column[i];
        }
    }
}

/// The convolution by FFT. Workspace: the spectra of every input plane and kernel, plus one
/// accumulator plane per worker.
pub fn conv2d(
    shape: &ConvShape,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
) -> ConvOutput {
    let [h, w] = shape.input;
    let [kh, kw] = shape.kernel;
    let [py, px] = shape.padding;
    let [sy, sx] = shape.stride;
    let [dy, dx] = shape.dilation;
    let [oh, ow] = shape.output();
    let (p, q) = (
        (h + 2 * py).next_power_of_two(),
        (w + 2 * px).next_power_of_two(),
    );
    let (row_plan, col_plan) = (Plan::new(p), Plan::new(q));
    let pq = p * q;
    let (c_in, c_out) = (shape.in_channels, shape.out_channels);

    let spectra = |count: usize, fill: &(dyn Fn(usize, &mut [Complex]) + Sync)| {
        let mut out = vec![Complex::default(); count * pq];
        out.par_chunks_mut(pq)
            .enumerate()
            .for_each_init(Vec::new, |column, (i, plane)| {
                fill(i, plane);
                transform_2d(plane, &row_plan, &col_plan, false, column);
            });
        out
    };
    // Kernels, dilated, at the origin.
    let kernels = spectra(c_out * c_in, &|i, plane| {
        let k = &weight[i * kh * kw..][..kh * kw];
        for y in 0..kh {
            for x in 0..kw {
                plane[y * dy * q + x * dx].re = k[y * kw + x];
            }
        }
    });
    // Inputs, shifted by the padding.
    let images = spectra(shape.batch * c_in, &|i, plane| {
        let src = &input[i * h * w..][..h * w];
        for y in 0..h {
            for x in 0..w {
                plane[(y + py) * q + x + px].re = src[y * w + x];
            }
        }
    });
    let scale = 1.0 / pq as f32;
    let mut values = vec![0f32; shape.batch * c_out * oh * ow];
    values.par_chunks_mut(oh * ow).enumerate().for_each_init(
        || (vec![Complex::default(); pq], Vec::new()),
        |(acc, column), (index, out)| {
            let (n, o) = (index / c_out, index % c_out);
            acc.fill(Complex::default());
            for c in 0..c_in {
                let x = &images[(n * c_in + c) * pq..][..pq];
                let k = &kernels[(o * c_in + c) * pq..][..pq];
                for ((a, &xv), &kv) in acc.iter_mut().zip(x).zip(k) {
                    let prod = xv.mul_conj(kv);
                    a.re += prod.re;
                    a.im += prod.im;
                }
            }
            transform_2d(acc, &row_plan, &col_plan, true, column);
            for oy in 0..oh {
                for ox in 0..ow {
                    out[oy * ow + ox] = acc[oy * sy * q + ox * sx].re * scale;
                }
            }
        },
    );
    add_bias(&mut values, bias, oh * ow);
    let workers = rayon::current_num_threads().min(shape.batch * c_out);
    ConvOutput {
        values,
        workspace_bytes: (kernels.len() + images.len() + workers * pq) * 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transform_round_trips_and_matches_the_dft() {
        let plan = Plan::new(8);
        let signal: Vec<Complex> = (0..8)
            .map(|i| Complex {
                re: (i as f32 * 0.7).sin(),
                im: (i * i) as f32 * 0.01,
            })
            .collect();
        let mut data = signal.clone();
        plan.run(&mut data, false);
        for (k, got) in data.iter().enumerate() {
            let (mut re, mut im) = (0f64, 0f64);
            for (t, s) in signal.iter().enumerate() {
                let angle = -2.0 * std::f64::consts::PI * (k * t) as f64 / 8.0;
                re += s.re as f64 * angle.cos() - s.im as f64 * angle.sin();
                im += s.re as f64 * angle.sin() + s.im as f64 * angle.cos();
            }
            assert!((got.re as f64 - re).abs() < 1e-5 && (got.im as f64 - im).abs() < 1e-5);
        }
        plan.run(&mut data, true);
        for (a, b) in data.iter().zip(&signal) {
            assert!((a.re / 8.0 - b.re).abs() < 1e-6 && (a.im / 8.0 - b.im).abs() < 1e-6);
        }
    }
}
