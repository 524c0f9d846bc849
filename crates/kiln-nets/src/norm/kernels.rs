//! Batch normalisation's arithmetic on contiguous `f32` data laid out `[batch, channels, plane]`
//! (any trailing dimensions flattened into the plane): per-channel statistics, the per-channel
//! affine map `y = x · scale + shift`, optionally followed by a [`FusedActivation`], and the
//! gradients of both. Statistics and gradient sums run in parallel over channels, element-wise
//! passes in parallel over planes; nothing is transposed or copied.
//!
//! A fused activation costs no pass of its own: forward it is applied as each output is
//! written, and backward its mask is recomputed from the input (`x · scale + shift`, the very
//! operations the forward pass rounded) inside the passes that read `x` anyway.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::simd::lane_sum;

/// How `[batch, channels, …]` data splits into channel planes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelLayout {
    /// Leading dimension.
    pub batch: usize,
    /// Second dimension: one scale and shift each.
    pub channels: usize,
    /// Product of the remaining dimensions (1 for `[batch, channels]`).
    pub plane: usize,
}

impl ChannelLayout {
    /// The layout of a tensor of `dims` (rank 2 or more, no zero dimension); `None` otherwise.
    pub fn of(dims: &[usize]) -> Option<Self> {
        if dims.len() < 2 || dims.contains(&0) {
            return None;
        }
        Some(Self {
            batch: dims[0],
            channels: dims[1],
            plane: dims[2..].iter().product(),
        })
    }

    /// Elements of the whole tensor.
    pub fn len(&self) -> usize {
        self.batch * self.channels * self.plane
    }

    /// True when the tensor holds nothing (never, for a layout from [`ChannelLayout::of`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values each channel's statistics are taken over.
    pub fn per_channel(&self) -> usize {
        self.batch * self.plane
    }

    /// The `batch` planes of channel `c` in `data`.
    fn planes<'a>(&self, data: &'a [f32], c: usize) -> impl Iterator<Item = &'a [f32]> {
        let (channels, plane) = (self.channels, self.plane);
        (0..self.batch).map(move |n| &data[(n * channels + c) * plane..][..plane])
    }

    /// Planes per parallel task: enough work (about 32 K values) to pay for the split.
    fn min_planes(&self) -> usize {
        (1usize << 15).div_ceil(self.plane)
    }

    /// Planes of channel sums per parallel task.
    fn min_channels(&self) -> usize {
        (1usize << 15).div_ceil(self.per_channel())
    }
}

/// An element-wise activation applied to the affine map's output in the same pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FusedActivation {
    /// No activation: the affine map's output itself.
    #[default]
    Identity,
    /// `max(y, 0)`; the gradient passes where `y > 0` (Burn's and PyTorch's rule). NaN stays NaN.
    Relu,
    /// `min(max(y, 0), 6)`; the gradient passes where `0 < y < 6` (PyTorch's `hardtanh` rule).
    Relu6,
}

/// One activation's arithmetic, as a type so that each kernel is compiled once per activation
/// with no per-element branch on which one it is.
trait Pointwise: Copy + Send + Sync {
    /// The activation of the pre-activation value `y`.
    fn apply(y: f32) -> f32;
    /// The gradient `g` of the activation's output, carried back to `y`.
    fn pass(g: f32, y: f32) -> f32;
}

#[derive(Clone, Copy)]
struct Identity;
#[derive(Clone, Copy)]
struct Relu;
#[derive(Clone, Copy)]
struct Relu6;

impl Pointwise for Identity {
    #[inline(always)]
    fn apply(y: f32) -> f32 {
        y
    }
    #[inline(always)]
    fn pass(g: f32, _: f32) -> f32 {
        g
    }
}

impl Pointwise for Relu {
    #[inline(always)]
    fn apply(y: f32) -> f32 {
        if y < 0.0 { 0.0 } else { y }
    }
    #[inline(always)]
    fn pass(g: f32, y: f32) -> f32 {
        if y > 0.0 { g } else { 0.0 }
    }
}

impl Pointwise for Relu6 {
    #[inline(always)]
    fn apply(y: f32) -> f32 {
        y.clamp(0.0, 6.0)
    }
    #[inline(always)]
    fn pass(g: f32, y: f32) -> f32 {
        if y > 0.0 && y < 6.0 { g } else { 0.0 }
    }
}

/// Calls `$f::<A>($args…)` with `A` the [`Pointwise`] type of `$activation`.
macro_rules! dispatch {
    ($activation:expr, $f:ident($($arg:expr),* $(,)?)) => {
        match $activation {
            FusedActivation::Identity => $f::<Identity>($($arg),*),
            FusedActivation::Relu => $f::<Relu>($($arg),*),
            FusedActivation::Relu6 => $f::<Relu6>($($arg),*),
        }
    };
}

/// Per-channel mean and biased (population) variance, two passes over the data as Burn
/// computes them; plane sums in `f32` lanes, channel totals in `f64`.
pub fn statistics(layout: &ChannelLayout, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    debug_assert_eq!(x.len(), layout.len());
    let count = layout.per_channel() as f64;
    (0..layout.channels)
        .into_par_iter()
        .with_min_len(layout.min_channels())
        .map(|c| {
            let mean = layout
                .planes(x, c)
                .map(|p| lane_sum(p, p, |v, _| v))
                .sum::<f64>()
                / count;
            let m = mean as f32;
            let var = layout
                .planes(x, c)
                .map(|p| {
                    lane_sum(p, p, |v, _| {
                        let d = v - m;
                        d * d
                    })
                })
                .sum::<f64>()
                / count;
            (m, var as f32)
        })
        .unzip()
}

/// `f(plane index, output plane)` for every plane of a new tensor of `layout`, in parallel.
fn new_planes(
    layout: &ChannelLayout,
    f: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let len = layout.len();
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(layout.plane)
        .with_min_len(layout.min_planes())
        .enumerate()
        .for_each(|(p, plane)| f(p, plane));
    // SAFETY: `f` wrote every element of every plane (each caller fills its plane in full).
    unsafe { out.set_len(len) };
    out
}

/// `activation(x · scale[c] + shift[c])` for every element of channel `c`.
pub fn affine(
    layout: &ChannelLayout,
    x: &[f32],
    scale: &[f32],
    shift: &[f32],
    activation: FusedActivation,
) -> Vec<f32> {
    debug_assert_eq!(x.len(), layout.len());
    dispatch!(activation, affine_as(layout, x, scale, shift))
}

fn affine_as<A: Pointwise>(
    layout: &ChannelLayout,
    x: &[f32],
    scale: &[f32],
    shift: &[f32],
) -> Vec<f32> {
    let plane = layout.plane;
    new_planes(layout, |p, out| {
        let c = p % layout.channels;
        let (a, b) = (scale[c], shift[c]);
        for (o, &v) in out.iter_mut().zip(&x[p * plane..][..plane]) {
            o.write(A::apply(v * a + b));
        }
    })
}

/// The per-channel scale and shift of the affine map that a fused activation follows: its
/// gradient mask is recomputed from them.
#[derive(Clone, Copy)]
struct Preactivation<'a> {
    scale: &'a [f32],
    shift: &'a [f32],
}

/// Per channel, `Σ g` and `Σ g · (x − centre[c])` over its planes, where `g` is `dy` carried
/// back through the activation `A` at `x · scale[c] + shift[c]`.
fn gradient_sums<A: Pointwise>(
    layout: &ChannelLayout,
    x: &[f32],
    dy: &[f32],
    centre: Option<&[f32]>,
    pre: Preactivation,
) -> (Vec<f64>, Vec<f64>) {
    (0..layout.channels)
        .into_par_iter()
        .with_min_len(layout.min_channels())
        .map(|c| {
            let m = centre.map_or(0.0, |centre| centre[c]);
            let (a, b) = (pre.scale[c], pre.shift[c]);
            layout
                .planes(x, c)
                .zip(layout.planes(dy, c))
                .map(|(xp, gp)| {
                    (
                        lane_sum(gp, xp, |g, v| A::pass(g, v * a + b)),
                        lane_sum(gp, xp, |g, v| A::pass(g, v * a + b) * (v - m)),
                    )
                })
                .fold((0.0, 0.0), |(a, b), (s, t)| (a + s, b + t))
        })
        .unzip()
}

/// Gradients of [`affine`] with `g` the output gradient `dy` carried back through the
/// activation: `dx = g · scale[c]` (when `want_x`), `d scale[c] = Σ g · x`, `d shift[c] = Σ g`.
pub fn affine_backward(
    layout: &ChannelLayout,
    x: &[f32],
    dy: &[f32],
    [scale, shift]: [&[f32]; 2],
    activation: FusedActivation,
    want_x: bool,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    let pre = Preactivation { scale, shift };
    dispatch!(activation, affine_backward_as(layout, x, dy, pre, want_x))
}

fn affine_backward_as<A: Pointwise>(
    layout: &ChannelLayout,
    x: &[f32],
    dy: &[f32],
    pre: Preactivation,
    want_x: bool,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    let plane = layout.plane;
    let dx = want_x.then(|| {
        new_planes(layout, |p, out| {
            let c = p % layout.channels;
            let (a, b) = (pre.scale[c], pre.shift[c]);
            let (xp, gp) = (&x[p * plane..][..plane], &dy[p * plane..][..plane]);
            for ((o, &g), &v) in out.iter_mut().zip(gp).zip(xp) {
                o.write(A::pass(g, v * a + b) * a);
            }
        })
    });
    let (shift_grad, scale_grad) = gradient_sums::<A>(layout, x, dy, None, pre);
    (dx, to_f32(scale_grad), to_f32(shift_grad))
}

/// The batch statistics a training normalisation used: per channel its mean and `1 / √(var + ε)`.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchStatistics {
    /// Mean of each channel.
    pub mean: Vec<f32>,
    /// `1 / √(variance + ε)` of each channel.
    pub inv_std: Vec<f32>,
}

/// What a training normalisation's backward pass needs from its forward pass.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainState {
    /// γ of each channel.
    pub gamma: Vec<f32>,
    /// The batch's statistics.
    pub stats: BatchStatistics,
    /// The affine map's per-channel scale `γ / σ` and shift `β − μ γ / σ`, exactly as the
    /// forward pass applied them.
    pub scale: Vec<f32>,
    /// See `scale`.
    pub shift: Vec<f32>,
    /// The activation fused after the map.
    pub activation: FusedActivation,
}

/// Gradients of training batch normalisation `y = γ (x − μ) / σ + β` with the batch's own
/// statistics (μ and σ depend on `x`):
/// `dx = γ / σ · (g − mean(g) − x̂ · mean(g · x̂))`, `dγ = Σ g · x̂`, `dβ = Σ g`,
/// where `x̂ = (x − μ) / σ`, `g` is `dy` carried back through the fused activation, and the
/// means run over each channel's values.
pub fn train_backward(
    layout: &ChannelLayout,
    x: &[f32],
    dy: &[f32],
    state: &TrainState,
    want_x: bool,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    dispatch!(
        state.activation,
        train_backward_as(layout, x, dy, state, want_x)
    )
}

fn train_backward_as<A: Pointwise>(
    layout: &ChannelLayout,
    x: &[f32],
    dy: &[f32],
    state: &TrainState,
    want_x: bool,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    let (gamma, stats) = (&state.gamma, &state.stats);
    let pre = Preactivation {
        scale: &state.scale,
        shift: &state.shift,
    };
    let (sum_dy, sum_dy_centred) = gradient_sums::<A>(layout, x, dy, Some(&stats.mean), pre);
    let count = layout.per_channel() as f64;
    let beta_grad = to_f32(sum_dy.clone());
    let gamma_grad: Vec<f32> = sum_dy_centred
        .iter()
        .zip(&stats.inv_std)
        .map(|(&s, &inv)| (s * inv as f64) as f32)
        .collect();
    let dx = want_x.then(|| {
        // dx = a · dy + b · x + c per channel, with
        // a = γ/σ, b = −γ/σ · mean(dy·x̂)/σ, c = −γ/σ · mean(dy) − b · μ.
        let coefficients: Vec<[f32; 3]> = (0..layout.channels)
            .map(|c| {
                let inv = stats.inv_std[c] as f64;
                let a = gamma[c] as f64 * inv;
                let b = -a * sum_dy_centred[c] / count * inv * inv;
                let shift = -a * sum_dy[c] / count - b * stats.mean[c] as f64;
                [a as f32, b as f32, shift as f32]
            })
            .collect();
        let plane = layout.plane;
        new_planes(layout, |p, out| {
            let channel = p % layout.channels;
            let [a, b, c] = coefficients[channel];
            let (s, t) = (pre.scale[channel], pre.shift[channel]);
            let (xp, gp) = (&x[p * plane..][..plane], &dy[p * plane..][..plane]);
            for ((o, &g), &v) in out.iter_mut().zip(gp).zip(xp) {
                o.write(a * A::pass(g, v * s + t) + b * v + c);
            }
        })
    });
    (dx, gamma_grad, beta_grad)
}

fn to_f32(values: Vec<f64>) -> Vec<f32> {
    values.into_iter().map(|v| v as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[2, 3, 2]` data: channel c of sample n holds `[10n + c, 10n + c + 1]`.
    fn data() -> (ChannelLayout, Vec<f32>) {
        let layout = ChannelLayout::of(&[2, 3, 2]).unwrap();
        let x = (0..2)
            .flat_map(|n| (0..3).flat_map(move |c| [0.0, 1.0].map(|d| (10 * n + c) as f32 + d)))
            .collect();
        (layout, x)
    }

    #[test]
    fn layouts_flatten_trailing_dimensions_and_refuse_empty_ones() {
        let l = ChannelLayout::of(&[4, 8, 5, 6]).unwrap();
        assert_eq!((l.batch, l.channels, l.plane, l.len()), (4, 8, 30, 960));
        assert_eq!(ChannelLayout::of(&[4, 8]).unwrap().plane, 1);
        assert!(ChannelLayout::of(&[4]).is_none());
        assert!(ChannelLayout::of(&[4, 0, 3]).is_none());
    }

    #[test]
    fn statistics_are_each_channels_mean_and_population_variance() {
        let (layout, x) = data();
        let (mean, var) = statistics(&layout, &x);
        // Channel c: values c, c+1, 10+c, 11+c → mean c + 5.5, variance (2·5.5² + 2·4.5²)/4.
        for c in 0..3 {
            assert!((mean[c] - (c as f32 + 5.5)).abs() < 1e-6);
            assert!((var[c] - 25.25).abs() < 1e-5, "{}", var[c]);
        }
    }

    #[test]
    fn affine_maps_each_channel_and_its_gradients_sum_over_the_channel() {
        let (layout, x) = data();
        let (scale, shift) = ([1.0, 2.0, -1.0], [0.0, 1.0, 0.5]);
        let y = affine(&layout, &x, &scale, &shift, FusedActivation::Identity);
        assert_eq!(&y[..6], &[0.0, 1.0, 3.0, 5.0, -1.5, -2.5]);
        let dy = vec![1.0; 12];
        let (dx, dscale, dshift) = affine_backward(
            &layout,
            &x,
            &dy,
            [&scale, &shift],
            FusedActivation::Identity,
            true,
        );
        assert_eq!(&dx.unwrap()[..6], &[1.0, 1.0, 2.0, 2.0, -1.0, -1.0]);
        assert_eq!(dshift, vec![4.0; 3]);
        // Σ x of channel 1: 1 + 2 + 11 + 12.
        assert_eq!(dscale[1], 26.0);
    }

    #[test]
    fn the_training_gradient_of_x_vanishes_for_a_constant_output_gradient() {
        // y − β is centred per channel, so a constant dy moves nothing through x.
        let (layout, x) = data();
        let state = train_state(&layout, &x, FusedActivation::Identity);
        let dy = vec![0.7; 12];
        let (dx, dgamma, dbeta) = train_backward(&layout, &x, &dy, &state, true);
        assert!(dx.unwrap().iter().all(|g| g.abs() < 1e-6));
        assert!(dgamma.iter().all(|g| g.abs() < 1e-5));
        assert!(dbeta.iter().all(|g| (g - 2.8).abs() < 1e-6));
    }

    /// The training state of `x` with γ = (1, 2, 3), β = (0, −1, 0.5).
    fn train_state(layout: &ChannelLayout, x: &[f32], activation: FusedActivation) -> TrainState {
        let (mean, var) = statistics(layout, x);
        let inv_std: Vec<f32> = var.iter().map(|v| 1.0 / (v + 1e-5).sqrt()).collect();
        let gamma = vec![1.0, 2.0, 3.0];
        let scale: Vec<f32> = gamma.iter().zip(&inv_std).map(|(g, i)| g * i).collect();
        let shift = [0.0, -1.0, 0.5]
            .iter()
            .zip(&scale)
            .zip(&mean)
            .map(|((b, s), m)| b - s * m)
            .collect();
        TrainState {
            gamma,
            stats: BatchStatistics { mean, inv_std },
            scale,
            shift,
            activation,
        }
    }

    #[test]
    fn fused_activations_equal_the_activation_applied_after() {
        let (layout, x) = data();
        let dy: Vec<f32> = (0..12).map(|i| (i as f32 * 0.37).sin()).collect();
        let plain = train_state(&layout, &x, FusedActivation::Identity);
        let y = affine(
            &layout,
            &x,
            &plain.scale,
            &plain.shift,
            FusedActivation::Identity,
        );
        for (activation, f, keep) in [
            (
                FusedActivation::Relu,
                (|v: f32| v.max(0.0)) as fn(f32) -> f32,
                (|v: f32| v > 0.0) as fn(f32) -> bool,
            ),
            (
                FusedActivation::Relu6,
                |v: f32| v.clamp(0.0, 6.0),
                |v: f32| v > 0.0 && v < 6.0,
            ),
        ] {
            let fused = affine(&layout, &x, &plain.scale, &plain.shift, activation);
            let want: Vec<f32> = y.iter().map(|&v| f(v)).collect();
            assert_eq!(fused, want, "{activation:?} forward");
            assert!(want.contains(&0.0), "the data reaches the mask");
            assert!(y.iter().any(|&v| keep(v)));
            // Backward: the same as the identity's backward of the masked gradient.
            let masked: Vec<f32> = dy
                .iter()
                .zip(&y)
                .map(|(&g, &v)| if keep(v) { g } else { 0.0 })
                .collect();
            let state = TrainState {
                activation,
                ..plain.clone()
            };
            let got = train_backward(&layout, &x, &dy, &state, true);
            let want = train_backward(&layout, &x, &masked, &plain, true);
            assert_eq!(got, want, "{activation:?} training backward");
            let pre = [plain.scale.as_slice(), plain.shift.as_slice()];
            let got = affine_backward(&layout, &x, &dy, pre, activation, true);
            let want = affine_backward(&layout, &x, &masked, pre, FusedActivation::Identity, true);
            assert_eq!(got, want, "{activation:?} affine backward");
        }
    }

    #[test]
    fn relu_keeps_nan_so_divergence_still_shows() {
        let layout = ChannelLayout::of(&[1, 1, 3]).unwrap();
        let y = affine(
            &layout,
            &[f32::NAN, -1.0, 2.0],
            &[1.0],
            &[0.0],
            FusedActivation::Relu,
        );
        assert!(y[0].is_nan());
        assert_eq!(&y[1..], &[0.0, 2.0]);
    }
}
