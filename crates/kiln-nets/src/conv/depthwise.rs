//! Depthwise convolution (one k×k filter per channel) on NCHW `f32` buffers: the forward pass
//! and both gradients, channel planes in parallel.
//!
//! Burn's generic weight gradient for grouped convolutions runs one small convolution per
//! channel; here each gradient is a few passes over each plane. Rows are walked as contiguous
//! slices (vectorised): for column strides above 1 each plane's columns are first regrouped by
//! their remainder modulo the stride (`ColumnPhases`).

use rayon::prelude::*;

use super::geometry::ConvGeometry;

/// A plane's columns regrouped by their remainder modulo the column stride: a strided walk
/// along a row (`start, start + s, start + 2s, …`) becomes a contiguous slice of the regrouped
/// row, so stride-2 layers vectorise like stride-1 ones. Stride 1 keeps the plane as it is.
#[derive(Clone, Copy, Debug)]
struct ColumnPhases {
    stride: usize,
    width: usize,
    /// Length of each phase: `⌈width / stride⌉`.
    phase: usize,
}

impl ColumnPhases {
    fn new(width: usize, stride: usize) -> Self {
        Self {
            stride,
            width,
            phase: width.div_ceil(stride),
        }
    }

    /// Length of a regrouped row.
    fn row_len(&self) -> usize {
        if self.stride == 1 {
            self.width
        } else {
            self.stride * self.phase
        }
    }

    /// Where input column `column` lands in a regrouped row.
    fn offset(&self, column: usize) -> usize {
        (column % self.stride) * self.phase + column / self.stride
    }

    /// The plane (`rows` × `width`) regrouped; borrowed as it is for stride 1.
    fn split<'a>(&self, plane: &'a [f32], rows: usize) -> std::borrow::Cow<'a, [f32]> {
        if self.stride == 1 {
            return std::borrow::Cow::Borrowed(plane);
        }
        let mut out = vec![0f32; rows * self.row_len()];
        for (row, dst) in plane
            .chunks_exact(self.width)
            .zip(out.chunks_exact_mut(self.row_len()))
        {
            for (p, phase) in dst.chunks_exact_mut(self.phase).enumerate() {
                for (d, &v) in phase
                    .iter_mut()
                    .zip(row.iter().skip(p).step_by(self.stride))
                {
                    *d = v;
                }
            }
        }
        std::borrow::Cow::Owned(out)
    }

    /// Writes regrouped rows back into the plane's column order.
    fn merge(&self, split: &[f32], plane: &mut [f32]) {
        for (row, src) in plane
            .chunks_exact_mut(self.width)
            .zip(split.chunks_exact(self.row_len()))
        {
            for (p, phase) in src.chunks_exact(self.phase).enumerate() {
                for (d, &v) in row.iter_mut().skip(p).step_by(self.stride).zip(phase) {
                    *d = v;
                }
            }
        }
    }
}

/// `out = conv(x, weight) + bias` for a depthwise geometry; `weight` is `[C, 1, kh, kw]`.
///
/// Each channel plane is first copied into a zero-padded plane holding exactly the rows and
/// columns the taps read (columns regrouped by their remainder modulo the column stride), so
/// every tap of an output row reads one contiguous slice. Outputs are then computed in blocks
/// of 64 columns kept in registers across all taps and written once.
pub fn forward(g: &ConvGeometry, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let [h, w] = g.input;
    let [oh, ow] = g.output;
    let taps = g.kernel[0] * g.kernel[1];
    let channels = g.in_channels;
    let padded = PaddedPlane::new(g);
    let mut out = vec![0f32; g.batch * channels * oh * ow];
    out.par_chunks_mut(oh * ow)
        .zip(x.par_chunks(h * w))
        .enumerate()
        .for_each_init(
            || vec![0f32; padded.len()],
            |buffer, (plane, (out, x))| {
                let c = plane % channels;
                padded.fill(x, buffer);
                plane_forward(
                    &padded,
                    buffer,
                    &weight[c * taps..(c + 1) * taps],
                    bias.map_or(0.0, |b| b[c]),
                    out,
                );
            },
        );
    out
}

/// Output columns computed together in [`plane_forward`]: four AVX-512 vectors.
const BLOCK: usize = 64;

/// One channel plane zero-padded to the rows and columns its outputs' taps read, columns
/// regrouped by their remainder modulo the column stride, and where each tap's first read
/// lies in it.
#[derive(Clone, Debug)]
struct PaddedPlane {
    geometry: ConvGeometry,
    rows: usize,
    phases: ColumnPhases,
    /// Per tap `ky·kw + kx`: the offset of the value output `(0, 0)` reads.
    tap_offsets: Vec<usize>,
}

impl PaddedPlane {
    fn new(g: &ConvGeometry) -> Self {
        let [oh, ow] = g.output;
        let [kh, kw] = g.kernel;
        let [sy, sx] = g.stride;
        let [dy, dx] = g.dilation;
        let rows = (oh - 1) * sy + (kh - 1) * dy + 1;
        let columns = (ow - 1) * sx + (kw - 1) * dx + 1;
        let phases = ColumnPhases::new(columns, sx);
        let tap_offsets = (0..kh)
            .flat_map(|ky| (0..kw).map(move |kx| (ky, kx)))
            .map(|(ky, kx)| ky * dy * phases.row_len() + phases.offset(kx * dx))
            .collect();
        Self {
            geometry: *g,
            rows,
            phases,
            tap_offsets,
        }
    }

    fn len(&self) -> usize {
        self.rows * self.phases.row_len()
    }

    /// Writes the input plane `x` into `buffer` (of [`Self::len`]), zeros around it.
    fn fill(&self, x: &[f32], buffer: &mut [f32]) {
        let g = &self.geometry;
        let [h, w] = g.input;
        let [top, left] = g.padding;
        let row_len = self.phases.row_len();
        let (stride, phase) = (self.phases.stride, self.phases.phase);
        let columns = self.phases.width;
        // Input columns that land inside the padded row.
        let n = w.min(columns.saturating_sub(left));
        buffer.fill(0.0);
        if n == 0 {
            return;
        }
        for (iy, row) in x.chunks_exact(w).enumerate().take(h) {
            let py = iy + top;
            if py >= self.rows {
                break;
            }
            let dst = &mut buffer[py * row_len..][..row_len];
            let row = &row[..n];
            match stride {
                1 => dst[left..left + n].copy_from_slice(row),
                2 => {
                    let (even, odd) = dst.split_at_mut(phase);
                    // An odd first padded column goes to the odd phase alone; the rest
                    // come in (even, odd) pairs.
                    let (row, first_even) = if left % 2 == 1 {
                        odd[left / 2] = row[0];
                        (&row[1..], left + 1)
                    } else {
                        (row, left)
                    };
                    let k = first_even / 2;
                    let pairs = row.chunks_exact(2);
                    if let [last] = pairs.remainder() {
                        even[k + row.len() / 2] = *last;
                    }
                    for ((pair, e), o) in pairs.zip(&mut even[k..]).zip(&mut odd[k..]) {
                        *e = pair[0];
                        *o = pair[1];
                    }
                }
                _ => {
                    for (ix, &v) in row.iter().enumerate() {
                        dst[self.phases.offset(left + ix)] = v;
                    }
                }
            }
        }
    }
}

/// Writes one output plane from its padded input plane: `out[oy, ox] = bias + Σ_taps
/// filter[tap] · padded[oy·sy + ky·dy, ox·sx + kx·dx]`, taps in order, as Burn sums them.
#[inline(always)]
fn plane_forward_body(
    padded: &PaddedPlane,
    buffer: &[f32],
    filter: &[f32],
    bias: f32,
    out: &mut [f32],
) {
    let g = &padded.geometry;
    let ow = g.output[1];
    let row_step = g.stride[0] * padded.phases.row_len();
    for (oy, out_row) in out.chunks_exact_mut(ow).enumerate() {
        let base = oy * row_step;
        let mut start = 0;
        while start + BLOCK <= ow {
            let mut acc = [bias; BLOCK];
            for (&offset, &value) in padded.tap_offsets.iter().zip(filter) {
                let src: &[f32; BLOCK] = buffer[base + offset + start..][..BLOCK]
                    .try_into()
                    .expect("a block of columns");
                for (a, &s) in acc.iter_mut().zip(src) {
                    *a += value * s;
                }
            }
            out_row[start..start + BLOCK].copy_from_slice(&acc);
            start += BLOCK;
        }
        if start < ow {
            let tail = &mut out_row[start..];
            tail.fill(bias);
            for (&offset, &value) in padded.tap_offsets.iter().zip(filter) {
                let src = &buffer[base + offset + start..][..tail.len()];
                for (a, &s) in tail.iter_mut().zip(src) {
                    *a += value * s;
                }
            }
        }
    }
}

crate::simd::widest_vectors! {
    /// [`plane_forward_body`] compiled for this CPU's widest vectors.
    fn plane_forward(
        padded: &PaddedPlane,
        buffer: &[f32],
        filter: &[f32],
        bias: f32,
        out: &mut [f32],
    ) = plane_forward_body;
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
            plane_input_grad(g, filter, grad, dx);
        });
    dx
}

/// One channel plane's input gradient `dx` from its output gradient `grad`.
#[inline(always)]
fn plane_input_grad_body(g: &ConvGeometry, filter: &[f32], grad: &[f32], dx: &mut [f32]) {
    let [h, w] = g.input;
    let ow = g.output[1];
    let phases = ColumnPhases::new(w, g.stride[1]);
    let row_len = phases.row_len();
    let mut split = (g.stride[1] > 1).then(|| vec![0f32; h * row_len]);
    let target: &mut [f32] = match split.as_mut() {
        Some(split) => split,
        None => dx,
    };
    g.for_each_row_tap(|tap, oy, iy, range, start| {
        let grad_row = &grad[oy * ow..(oy + 1) * ow][range];
        let dx_row = &mut target[iy * row_len + phases.offset(start)..][..grad_row.len()];
        axpy(dx_row, grad_row, filter[tap]);
    });
    if let Some(split) = split {
        phases.merge(&split, dx);
    }
}

crate::simd::widest_vectors! {
    /// [`plane_input_grad_body`] compiled for this CPU's widest vectors.
    fn plane_input_grad(g: &ConvGeometry, filter: &[f32], grad: &[f32], dx: &mut [f32])
        = plane_input_grad_body;
}

/// The gradients of the weight (`[C, 1, kh, kw]`) and of the bias (`[C]`): per channel, each
/// tap's products of output gradient and input summed over images and positions (in `f64`).
pub fn weight_grad(g: &ConvGeometry, x: &[f32], grad: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let taps = g.kernel[0] * g.kernel[1];
    let channels = g.in_channels;
    let per_channel: Vec<(Vec<f64>, f64)> = (0..channels)
        .into_par_iter()
        .map(|c| {
            let mut sums = vec![0f64; taps];
            let mut bias = 0f64;
            for n in 0..g.batch {
                bias += plane_weight_grad(g, x, grad, n * channels + c, &mut sums);
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

/// Adds plane `plane`'s products of output gradient and input to each tap's `sums`; returns
/// the plane's output-gradient sum (its bias gradient).
#[inline(always)]
fn plane_weight_grad_body(
    g: &ConvGeometry,
    x: &[f32],
    grad: &[f32],
    plane: usize,
    sums: &mut [f64],
) -> f64 {
    let [h, w] = g.input;
    let [oh, ow] = g.output;
    let phases = ColumnPhases::new(w, g.stride[1]);
    let row_len = phases.row_len();
    let x = phases.split(&x[plane * h * w..][..h * w], h);
    let grad = &grad[plane * oh * ow..][..oh * ow];
    g.for_each_row_tap(|tap, oy, iy, range, start| {
        let grad_row = &grad[oy * ow..(oy + 1) * ow][range];
        let input = &x[iy * row_len + phases.offset(start)..][..grad_row.len()];
        sums[tap] += dot(grad_row, input) as f64;
    });
    grad.iter().map(|&v| v as f64).sum::<f64>()
}

crate::simd::widest_vectors! {
    /// [`plane_weight_grad_body`] compiled for this CPU's widest vectors.
    fn plane_weight_grad(
        g: &ConvGeometry,
        x: &[f32],
        grad: &[f32],
        plane: usize,
        sums: &mut [f64],
    ) -> f64 = plane_weight_grad_body;
}

/// `out[j] += value · input[j]`.
#[inline(always)]
fn axpy(out: &mut [f32], input: &[f32], value: f32) {
    for (o, &i) in out.iter_mut().zip(input) {
        *o += value * i;
    }
}

/// `Σ_j a[j] · b[j]`, in eight lanes so it vectorises.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let mut a_chunks = a.chunks_exact(8);
    let mut b_chunks = b.chunks_exact(8);
    for (x, y) in (&mut a_chunks).zip(&mut b_chunks) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    for (x, y) in a_chunks.remainder().iter().zip(b_chunks.remainder()) {
        lanes[0] += x * y;
    }
    lanes.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::ColumnPhases;

    #[test]
    fn regrouped_columns_turn_strided_walks_into_slices_and_merge_back() {
        // Two rows of 5 columns, stride 2: phases [0, 2, 4] and [1, 3] (padded to 3).
        let plane: Vec<f32> = (0..10).map(|v| v as f32).collect();
        let phases = ColumnPhases::new(5, 2);
        let split = phases.split(&plane, 2);
        assert_eq!(&split[..6], &[0.0, 2.0, 4.0, 1.0, 3.0, 0.0]);
        // The walk 1, 3 of row 1 (values 6, 8) is one slice.
        let row = &split[phases.row_len()..];
        assert_eq!(&row[phases.offset(1)..][..2], &[6.0, 8.0]);
        let mut back = vec![0.0; 10];
        phases.merge(&split, &mut back);
        assert_eq!(back, plane);
        // Stride 1 borrows the plane.
        assert!(matches!(
            ColumnPhases::new(5, 1).split(&plane, 2),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
