//! Depthwise convolution (one k×k filter per channel) on NCHW `f32` buffers: the forward pass
//! and both gradients, channel planes in parallel.
//!
//! Burn's generic weight gradient for grouped convolutions runs one small convolution per
//! channel; here each gradient is a few passes over each plane, and rows are contiguous slices
//! (vectorised) when the stride is 1.

use rayon::prelude::*;

use super::geometry::ConvGeometry;

/// `out = conv(x, weight) + bias` for a depthwise geometry; `weight` is `[C, 1, kh, kw]`.
pub fn forward(g: &ConvGeometry, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let [h, w] = g.input;
    let [oh, ow] = g.output;
    let taps = g.kernel[0] * g.kernel[1];
    let channels = g.in_channels;
    let mut out = vec![0f32; g.batch * channels * oh * ow];
    out.par_chunks_mut(oh * ow)
        .zip(x.par_chunks(h * w))
        .enumerate()
        .for_each(|(plane, (out, x))| {
            let c = plane % channels;
            out.fill(bias.map_or(0.0, |b| b[c]));
            let filter = &weight[c * taps..(c + 1) * taps];
            g.for_each_row_tap(|tap, oy, iy, range, start| {
                let value = filter[tap];
                let row = &mut out[oy * ow..(oy + 1) * ow][range.clone()];
                let input = &x[iy * w..(iy + 1) * w];
                axpy_strided(row, input, start, g.stride[1], value);
            });
        });
    out
}

/// The gradient of the input: each output gradient spread back onto the input positions its
/// taps read.
pub fn input_grad(g: &ConvGeometry, weight: &[f32], grad: &[f32]) -> Vec<f32> {
    let [h, w] = g.input;
    let [oh, ow] = g.output;
    let taps = g.kernel[0] * g.kernel[1];
    let channels = g.in_channels;
    let mut dx = vec![0f32; g.batch * channels * h * w];
    dx.par_chunks_mut(h * w)
        .zip(grad.par_chunks(oh * ow))
        .enumerate()
        .for_each(|(plane, (dx, grad))| {
            let filter = &weight[(plane % channels) * taps..][..taps];
            g.for_each_row_tap(|tap, oy, iy, range, start| {
                let value = filter[tap];
                let grad_row = &grad[oy * ow..(oy + 1) * ow][range.clone()];
                let dx_row = &mut dx[iy * w..(iy + 1) * w];
                scatter_strided(dx_row, grad_row, start, g.stride[1], value);
            });
        });
    dx
}

/// The gradients of the weight (`[C, 1, kh, kw]`) and of the bias (`[C]`): per channel, each
/// tap's products of output gradient and input summed over images and positions (in `f64`).
pub fn weight_grad(g: &ConvGeometry, x: &[f32], grad: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let [h, w] = g.input;
    let [oh, ow] = g.output;
    let taps = g.kernel[0] * g.kernel[1];
    let channels = g.in_channels;
    let per_channel: Vec<(Vec<f64>, f64)> = (0..channels)
        .into_par_iter()
        .map(|c| {
            let mut sums = vec![0f64; taps];
            let mut bias = 0f64;
            for n in 0..g.batch {
                let plane = n * channels + c;
                let x = &x[plane * h * w..][..h * w];
                let grad = &grad[plane * oh * ow..][..oh * ow];
                bias += grad.iter().map(|&v| v as f64).sum::<f64>();
                g.for_each_row_tap(|tap, oy, iy, range, start| {
                    let grad_row = &grad[oy * ow..(oy + 1) * ow][range.clone()];
                    let input = &x[iy * w..(iy + 1) * w];
                    sums[tap] += dot_strided(grad_row, input, start, g.stride[1]) as f64;
                });
            }
            (sums, bias)
        })
        .collect();
    let weight = per_channel
        .iter()
        .flat_map(|(sums, _)| sums.iter().map(|&v| v as f32))
        .collect();
    let bias = per_channel.iter().map(|&(_, b)| b as f32).collect();
    (weight, bias)
}

/// `out[j] += value · input[start + j·stride]`.
#[inline]
fn axpy_strided(out: &mut [f32], input: &[f32], start: usize, stride: usize, value: f32) {
    if stride == 1 {
        let input = &input[start..start + out.len()];
        for (o, &i) in out.iter_mut().zip(input) {
            *o += value * i;
        }
    } else {
        for (j, o) in out.iter_mut().enumerate() {
            *o += value * input[start + j * stride];
        }
    }
}

/// `dx[start + j·stride] += value · grad[j]`.
#[inline]
fn scatter_strided(dx: &mut [f32], grad: &[f32], start: usize, stride: usize, value: f32) {
    if stride == 1 {
        let dx = &mut dx[start..start + grad.len()];
        for (d, &g) in dx.iter_mut().zip(grad) {
            *d += value * g;
        }
    } else {
        for (j, &g) in grad.iter().enumerate() {
            dx[start + j * stride] += value * g;
        }
    }
}

/// `Σ_j grad[j] · input[start + j·stride]`, in eight lanes so it vectorises.
#[inline]
fn dot_strided(grad: &[f32], input: &[f32], start: usize, stride: usize) -> f32 {
    let mut lanes = [0f32; 8];
    if stride == 1 {
        let input = &input[start..start + grad.len()];
        let mut g_chunks = grad.chunks_exact(8);
        let mut i_chunks = input.chunks_exact(8);
        for (g, i) in (&mut g_chunks).zip(&mut i_chunks) {
            for l in 0..8 {
                lanes[l] += g[l] * i[l];
            }
        }
        for (g, i) in g_chunks.remainder().iter().zip(i_chunks.remainder()) {
            lanes[0] += g * i;
        }
    } else {
        for (j, &g) in grad.iter().enumerate() {
            lanes[j % 8] += g * input[start + j * stride];
        }
    }
    lanes.iter().sum()
}
