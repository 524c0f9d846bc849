//! Max pooling on NCHW `f32` buffers: the pooled values with (when training) the position of
//! each window's maximum, and the gradient routed back to those positions.
//!
//! Positions are `u32` offsets inside the input's `h × w` plane (Burn keeps `i64` offsets and
//! the whole input for the backward pass). A window's maximum is its first largest value in
//! row-major order, and a NaN wins (the last one in the window), as in Burn and PyTorch.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// The shapes of one max pool: input, window, and the output they give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolGeometry {
    /// Images in the batch.
    pub batch: usize,
    /// Channels (planes per image).
    pub channels: usize,
    /// Input height and width.
    pub input: [usize; 2],
    /// Window height and width.
    pub kernel: [usize; 2],
    /// Step between windows.
    pub stride: [usize; 2],
    /// Implicit padding before and after each axis (never a maximum).
    pub padding: [usize; 2],
    /// Spacing between a window's taps.
    pub dilation: [usize; 2],
    /// Output height and width (floor rule).
    pub output: [usize; 2],
}

impl PoolGeometry {
    /// The geometry of pooling an `[n, c, h, w]` input, or `None` when a window does not fit,
    /// the padding exceeds half a window (Burn's and PyTorch's limit), a size is zero or a
    /// plane has more positions than `u32` holds.
    pub fn new(
        [batch, channels, h, w]: [usize; 4],
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
    ) -> Option<Self> {
        let mut output = [0; 2];
        for axis in 0..2 {
            let span = dilation[axis] * (kernel[axis].checked_sub(1)?) + 1;
            let padded = [h, w][axis] + 2 * padding[axis];
            if stride[axis] == 0 || padding[axis] > kernel[axis] / 2 || padded < span {
                return None;
            }
            output[axis] = (padded - span) / stride[axis] + 1;
        }
        if h * w > u32::MAX as usize || batch * channels == 0 {
            return None;
        }
        let g = Self {
            batch,
            channels,
            input: [h, w],
            kernel,
            stride,
            padding,
            dilation,
            output,
        };
        // Every window must hold at least one input tap (large dilations can skip them all).
        let every_window_sees_input = (0..2).all(|axis| {
            (0..g.output[axis]).all(|o| {
                let (first, end) = g.valid_taps(axis, o);
                first < end
            })
        });
        every_window_sees_input.then_some(g)
    }

    /// Whether this is the non-overlapping 2×2 pool of the classic conv nets (a fast path).
    fn is_two_by_two(&self) -> bool {
        self.kernel == [2, 2] && self.stride == [2, 2] && self.padding == [0, 0]
    }

    /// Input and output positions per plane.
    fn plane_sizes(&self) -> (usize, usize) {
        (
            self.input[0] * self.input[1],
            self.output[0] * self.output[1],
        )
    }

    /// Planes that one parallel task handles: at least about 16K output values.
    fn planes_per_task(&self) -> usize {
        (16_384 / self.plane_sizes().1.max(1)).max(1)
    }

    /// The taps `(first, end)` of window `o` along `axis` that fall inside the input (the
    /// dilated offsets `first..end` of the kernel).
    fn valid_taps(&self, axis: usize, o: usize) -> (usize, usize) {
        let (k, s, p, d) = (
            self.kernel[axis],
            self.stride[axis],
            self.padding[axis],
            self.dilation[axis],
        );
        let size = self.input[axis];
        let start = o * s; // window start in padded coordinates
        // First tap at or after the padding, last before the input's end.
        let first = if start >= p {
            0
        } else {
            (p - start).div_ceil(d)
        };
        let end = (0..k)
            .rev()
            .find(|&t| start + t * d < p + size)
            .map_or(0, |t| t + 1);
        (first.min(end), end)
    }
}

/// The pooled values `[n, c, oh, ow]` and, when `with_positions`, each value's position in its
/// input plane.
pub fn forward(g: &PoolGeometry, x: &[f32], with_positions: bool) -> (Vec<f32>, Vec<u32>) {
    let (in_plane, out_plane) = g.plane_sizes();
    let planes = g.batch * g.channels;
    assert_eq!(x.len(), planes * in_plane, "max pool input size");
    let mut out = vec![0f32; planes * out_plane];
    let mut positions = vec![0u32; if with_positions { out.len() } else { 0 }];
    let chunk = g.planes_per_task();
    let rows = tap_ranges(g, 0);
    let cols = tap_ranges(g, 1);
    let run = |x: &[f32], out: &mut [f32], pos: Option<&mut [u32]>| {
        let mut pos = pos;
        for (p, plane) in x.chunks(in_plane).enumerate() {
            let out = &mut out[p * out_plane..][..out_plane];
            let pos = pos
                .as_deref_mut()
                .map(|v| &mut v[p * out_plane..][..out_plane]);
            if g.is_two_by_two() {
                pool_two_by_two(g, plane, out, pos);
            } else {
                pool_plane(g, &rows, &cols, plane, out, pos);
            }
        }
    };
    let inputs = x.par_chunks(chunk * in_plane);
    if with_positions {
        out.par_chunks_mut(chunk * out_plane)
            .zip(positions.par_chunks_mut(chunk * out_plane))
            .zip(inputs)
            .for_each(|((out, pos), x)| run(x, out, Some(pos)));
    } else {
        out.par_chunks_mut(chunk * out_plane)
            .zip(inputs)
            .for_each(|(out, x)| run(x, out, None));
    }
    (out, positions)
}

/// The input gradient `[n, c, h, w]`: each output gradient added at its window's maximum.
pub fn backward(g: &PoolGeometry, positions: &[u32], grad: &[f32]) -> Vec<f32> {
    let (in_plane, out_plane) = g.plane_sizes();
    let planes = g.batch * g.channels;
    assert_eq!(
        grad.len(),
        planes * out_plane,
        "max pool output gradient size"
    );
    assert_eq!(positions.len(), grad.len(), "max pool positions");
    if g.is_two_by_two() && g.dilation == [1, 1] {
        let len = planes * in_plane;
        let mut dx = Vec::with_capacity(len);
        for_each_plane(
            g,
            &mut dx.spare_capacity_mut()[..len],
            grad,
            positions,
            |plane, grad, at| route_two_by_two(g, plane, grad, at),
        );
        // SAFETY: `route_two_by_two` wrote every element of every plane.
        unsafe { dx.set_len(len) };
        return dx;
    }
    let mut dx = vec![0f32; planes * in_plane];
    for_each_plane(g, &mut dx, grad, positions, |plane, grad, positions| {
        for (&dy, &at) in grad.iter().zip(positions) {
            plane[at as usize] += dy;
        }
    });
    dx
}

/// Calls `f(input plane of dx, its output gradient, its positions)` for every plane, planes in
/// parallel.
fn for_each_plane<T: Send>(
    g: &PoolGeometry,
    dx: &mut [T],
    grad: &[f32],
    positions: &[u32],
    f: impl Fn(&mut [T], &[f32], &[u32]) + Sync,
) {
    let (in_plane, out_plane) = g.plane_sizes();
    let chunk = g.planes_per_task();
    dx.par_chunks_mut(chunk * in_plane)
        .zip(grad.par_chunks(chunk * out_plane))
        .zip(positions.par_chunks(chunk * out_plane))
        .for_each(|((dx, grad), positions)| {
            for ((plane, grad), positions) in dx
                .chunks_mut(in_plane)
                .zip(grad.chunks(out_plane))
                .zip(positions.chunks(out_plane))
            {
                f(plane, grad, positions);
            }
        });
}

/// The backward pass of one plane of the undilated 2×2 pool, whose windows tile the input: every
/// input value is written once, row pair by row pair (no scatter, no zeroing first); rows and
/// columns no window covers (odd sizes) get zero.
fn route_two_by_two(
    g: &PoolGeometry,
    plane: &mut [MaybeUninit<f32>],
    grad: &[f32],
    positions: &[u32],
) {
    let [_, w] = g.input;
    let [oh, ow] = g.output;
    for oy in 0..oh {
        let top = 2 * oy * w;
        let (upper, lower) = plane[top..top + 2 * w].split_at_mut(w);
        let (upper, upper_rest) = upper.split_at_mut(2 * ow);
        let (lower, lower_rest) = lower.split_at_mut(2 * ow);
        let rows = &grad[oy * ow..][..ow];
        let at = &positions[oy * ow..][..ow];
        route_row_pair(upper, lower, rows, at, [top as u32, w as u32]);
        for v in upper_rest.iter_mut().chain(lower_rest) {
            v.write(0.0);
        }
    }
    for v in &mut plane[2 * oh * w..] {
        v.write(0.0);
    }
}

/// One row of undilated 2×2 windows: each window's gradient written at its maximum's position
/// (`positions`, plane offsets) and zero at its other three inputs. `upper` starts at plane
/// offset `top`; `lower` is the row below, `w` further.
#[inline(always)]
fn route_row_pair_body(
    upper: &mut [MaybeUninit<f32>],
    lower: &mut [MaybeUninit<f32>],
    grad: &[f32],
    positions: &[u32],
    [top, w]: [u32; 2],
) {
    let pairs = upper.as_chunks_mut::<2>().0.iter_mut();
    let pairs = pairs.zip(lower.as_chunks_mut::<2>().0.iter_mut());
    for (k, ((u, l), (&dy, &at))) in pairs.zip(grad.iter().zip(positions)).enumerate() {
        let i = top + 2 * k as u32;
        let pick = |j: u32| MaybeUninit::new(if at == j { dy } else { 0.0 });
        *u = [pick(i), pick(i + 1)];
        *l = [pick(i + w), pick(i + w + 1)];
    }
}

crate::simd::widest_vectors! {
    /// [`route_row_pair_body`] compiled for this CPU's widest vectors.
    fn route_row_pair(
        upper: &mut [MaybeUninit<f32>],
        lower: &mut [MaybeUninit<f32>],
        grad: &[f32],
        positions: &[u32],
        top_and_width: [u32; 2],
    ) = route_row_pair_body;
}

/// The valid taps of every window along `axis`.
fn tap_ranges(g: &PoolGeometry, axis: usize) -> Vec<(usize, usize)> {
    (0..g.output[axis]).map(|o| g.valid_taps(axis, o)).collect()
}

/// Whether `v` replaces the running maximum `best` (larger, or NaN).
#[inline(always)]
fn wins(v: f32, best: f32) -> bool {
    v > best || v.is_nan()
}

/// Any window shape, one plane.
fn pool_plane(
    g: &PoolGeometry,
    rows: &[(usize, usize)],
    cols: &[(usize, usize)],
    plane: &[f32],
    out: &mut [f32],
    mut pos: Option<&mut [u32]>,
) {
    let [_, w] = g.input;
    let ow_count = g.output[1];
    for (oy, &(r0, r1)) in rows.iter().enumerate() {
        let y0 = oy * g.stride[0];
        for (ox, &(c0, c1)) in cols.iter().enumerate() {
            let x0 = ox * g.stride[1];
            let mut best = f32::NEG_INFINITY;
            let mut at = usize::MAX;
            for ty in r0..r1 {
                let iy = y0 + ty * g.dilation[0] - g.padding[0];
                let row = &plane[iy * w..][..w];
                for tx in c0..c1 {
                    let ix = x0 + tx * g.dilation[1] - g.padding[1];
                    let v = row[ix];
                    if at == usize::MAX || wins(v, best) {
                        best = v;
                        at = iy * w + ix;
                    }
                }
            }
            let o = oy * ow_count + ox;
            out[o] = best;
            if let Some(pos) = pos.as_deref_mut() {
                pos[o] = at as u32;
            }
        }
    }
}

/// The 2×2, stride-2, unpadded pool of one plane (any dilation): two input rows per output
/// row, each window's four taps compared without branches; undilated rows with positions
/// run [`windows_of_row_pair`], compiled for this CPU's widest vectors.
fn pool_two_by_two(g: &PoolGeometry, plane: &[f32], out: &mut [f32], pos: Option<&mut [u32]>) {
    let [_, w] = g.input;
    let [oh, ow] = g.output;
    let [dy, dx] = g.dilation;
    let span = ow * 2 + dx - 1; // columns a row of windows reads
    let mut pos = pos;
    for oy in 0..oh {
        let top = 2 * oy * w;
        let bottom = top + dy * w;
        let (r0, r1) = (&plane[top..top + span], &plane[bottom..bottom + span]);
        let out = &mut out[oy * ow..][..ow];
        match pos.as_deref_mut() {
            Some(pos) if dx == 1 => {
                let pos = &mut pos[oy * ow..][..ow];
                windows_of_row_pair(r0, r1, [top as u32, bottom as u32], out, pos);
            }
            Some(pos) => {
                let pos = &mut pos[oy * ow..][..ow];
                for (ox, (o, p)) in out.iter_mut().zip(pos.iter_mut()).enumerate() {
                    let l = 2 * ox;
                    let mut best = r0[l];
                    let mut at = (top + l) as u32;
                    take(&mut best, &mut at, r0[l + dx], (top + l + dx) as u32);
                    take(&mut best, &mut at, r1[l], (bottom + l) as u32);
                    take(&mut best, &mut at, r1[l + dx], (bottom + l + dx) as u32);
                    *o = best;
                    *p = at;
                }
            }
            None => {
                for (ox, o) in out.iter_mut().enumerate() {
                    let l = 2 * ox;
                    let mut best = r0[l];
                    let mut at = 0u32;
                    take(&mut best, &mut at, r0[l + dx], 0);
                    take(&mut best, &mut at, r1[l], 0);
                    take(&mut best, &mut at, r1[l + dx], 0);
                    *o = best;
                }
            }
        }
    }
}

/// One row of undilated 2×2 windows over the input rows `r0` (starting at plane offset
/// `starts[0]`) and `r1` (at `starts[1]`): each window's maximum and its position.
#[inline(always)]
fn windows_of_row_pair_body(
    r0: &[f32],
    r1: &[f32],
    starts: [u32; 2],
    out: &mut [f32],
    pos: &mut [u32],
) {
    let (r0, r1) = (&r0[..2 * out.len()], &r1[..2 * out.len()]);
    for (k, ((o, p), (a, b))) in out
        .iter_mut()
        .zip(pos.iter_mut())
        .zip(r0.chunks_exact(2).zip(r1.chunks_exact(2)))
        .enumerate()
    {
        let l = 2 * k as u32;
        let (mut best, mut at) = (a[0], starts[0] + l);
        take(&mut best, &mut at, a[1], starts[0] + l + 1);
        take(&mut best, &mut at, b[0], starts[1] + l);
        take(&mut best, &mut at, b[1], starts[1] + l + 1);
        *o = best;
        *p = at;
    }
}

crate::simd::widest_vectors! {
    /// [`windows_of_row_pair_body`] compiled for this CPU's widest vectors.
    fn windows_of_row_pair(
        r0: &[f32],
        r1: &[f32],
        starts: [u32; 2],
        out: &mut [f32],
        pos: &mut [u32],
    ) = windows_of_row_pair_body;
}

/// `v` (at `i`) replaces the running maximum when it [`wins`], as selects rather than a branch.
#[inline(always)]
fn take(best: &mut f32, at: &mut u32, v: f32, i: u32) {
    let replace = wins(v, *best);
    *best = if replace { v } else { *best };
    *at = if replace { i } else { *at };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(input: [usize; 4], k: usize, s: usize, p: usize, d: usize) -> PoolGeometry {
        PoolGeometry::new(input, [k; 2], [s; 2], [p; 2], [d; 2]).unwrap()
    }

    #[test]
    fn output_sizes_follow_the_floor_rule() {
        assert_eq!(geometry([1, 1, 32, 32], 2, 2, 0, 1).output, [16, 16]);
        assert_eq!(geometry([1, 1, 7, 9], 2, 2, 0, 1).output, [3, 4]);
        assert_eq!(geometry([1, 1, 112, 112], 3, 2, 1, 1).output, [56, 56]);
        assert_eq!(geometry([1, 1, 10, 10], 3, 1, 0, 2).output, [6, 6]);
        // Too much padding, a window larger than the input, zero sizes: refused.
        assert!(PoolGeometry::new([1, 1, 8, 8], [2, 2], [2, 2], [2, 2], [1, 1]).is_none());
        assert!(PoolGeometry::new([1, 1, 2, 2], [3, 3], [1, 1], [0, 0], [1, 1]).is_none());
        assert!(PoolGeometry::new([0, 1, 8, 8], [2, 2], [2, 2], [0, 0], [1, 1]).is_none());
        assert!(PoolGeometry::new([1, 1, 8, 8], [0, 2], [2, 2], [0, 0], [1, 1]).is_none());
    }

    #[test]
    fn padded_windows_only_see_the_input() {
        // 3×3 stride 2 padding 1 on a 4×4 ramp: the corner window covers rows/cols 0..2.
        let g = geometry([1, 1, 4, 4], 3, 2, 1, 1);
        let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let (out, pos) = forward(&g, &x, true);
        assert_eq!(out, vec![5.0, 7.0, 13.0, 15.0]);
        assert_eq!(pos, vec![5, 7, 13, 15]);
        // All-negative input: padding never wins.
        let neg: Vec<f32> = x.iter().map(|v| -v - 1.0).collect();
        let (out, pos) = forward(&g, &neg, true);
        assert_eq!(out, vec![-1.0, -2.0, -5.0, -6.0]);
        assert_eq!(pos, vec![0, 1, 4, 5]);
    }

    #[test]
    fn ties_go_to_the_first_and_nan_wins() {
        let g = geometry([1, 1, 2, 4], 2, 2, 0, 1);
        let x = [1.0, 1.0, 0.0, f32::NAN, 1.0, 1.0, f32::NAN, 5.0];
        let (out, pos) = forward(&g, &x, true);
        assert_eq!(out[0], 1.0);
        assert_eq!(pos[0], 0);
        assert!(out[1].is_nan());
        assert_eq!(pos[1], 6, "the last NaN of the window");
        // The general path agrees with the 2×2 fast path.
        let rows = tap_ranges(&g, 0);
        let cols = tap_ranges(&g, 1);
        let (mut o2, mut p2) = (vec![0.0; 2], vec![0; 2]);
        pool_plane(&g, &rows, &cols, &x, &mut o2, Some(&mut p2));
        assert_eq!(p2, pos);
    }

    #[test]
    fn overlapping_windows_add_their_gradients() {
        // 3×3 stride 1 on a 3×4 input whose maximum (9) is in both windows.
        let g = geometry([1, 1, 3, 4], 3, 1, 0, 1);
        let x = [0.0, 1.0, 2.0, 0.0, 3.0, 9.0, 4.0, 0.0, 5.0, 6.0, 7.0, 0.0];
        let (out, pos) = forward(&g, &x, true);
        assert_eq!(out, vec![9.0, 9.0]);
        let dx = backward(&g, &pos, &[0.5, 2.0]);
        let mut expected = vec![0.0; 12];
        expected[5] = 2.5;
        assert_eq!(dx, expected);
    }
}
