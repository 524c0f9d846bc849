//! Compiling a hot loop for the widest vector extension the CPU has, chosen at run time.
//!
//! kiln is built for the baseline x86-64 target (SSE2, 4 floats a vector) so that one binary
//! runs on every machine. [`widest_vectors!`] compiles a plain-Rust kernel three times — for
//! AVX-512, for AVX2 and for the baseline — and calls the widest one this CPU supports, so the
//! same loops run 16 or 8 floats a vector where the hardware has them. The kernel's result
//! does not depend on the choice: Rust never fuses a multiply and an add on its own, so every
//! variant rounds the same operations in the same order.

/// The widest vector extension of this CPU that kiln's kernels use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Vectors {
    /// AVX-512 Foundation: 16 `f32` lanes.
    Avx512,
    /// AVX2: 8 `f32` lanes.
    Avx2,
    /// The target's baseline (SSE2 on x86-64).
    Baseline,
}

/// The widest vector extension this CPU has, detected once per process.
/// `KILN_SIMD=baseline|avx2` caps it (to compare speed or rule a variant out).
pub(crate) fn widest() -> Vectors {
    static WIDEST: std::sync::OnceLock<Vectors> = std::sync::OnceLock::new();
    *WIDEST.get_or_init(|| {
        let cap = std::env::var("KILN_SIMD").unwrap_or_default();
        #[cfg(target_arch = "x86_64")]
        {
            if cap != "baseline" && cap != "avx2" && std::arch::is_x86_feature_detected!("avx512f")
            {
                return Vectors::Avx512;
            }
            if cap != "baseline" && std::arch::is_x86_feature_detected!("avx2") {
                return Vectors::Avx2;
            }
        }
        let _ = cap;
        Vectors::Baseline
    })
}

/// `Σ f(a[i], b[i])` over two equally long slices, in 16 independent `f32` accumulators (so
/// the loop vectorises), returned as `f64`.
pub(crate) fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    let mut lanes = [0.0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&u, &v)| f(u, v))
        .sum();
    for (u, v) in ca.zip(cb) {
        for k in 0..16 {
            lanes[k] += f(u[k], v[k]);
        }
    }
    lanes.iter().map(|&v| v as f64).sum::<f64>() + tail as f64
}

/// `widest_vectors! { /// docs
/// pub fn name(args…) -> R = body; }` defines `name`, which calls `body(args…)` (an
/// `#[inline(always)]` function) compiled for [`widest`]'s vector extension.
macro_rules! widest_vectors {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $body:path;) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                match $crate::simd::widest() {
                    // SAFETY: `widest` found the extension on this CPU.
                    $crate::simd::Vectors::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    $crate::simd::Vectors::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::simd::Vectors::Baseline => {}
                }
            }
            $body($($arg),*)
        }
    };
}

pub(crate) use widest_vectors;

#[cfg(test)]
mod tests {
    #[inline(always)]
    fn sum_of_products(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    widest_vectors! {
        /// A dot product through the dispatcher.
        fn dispatched(a: &[f32], b: &[f32]) -> f32 = sum_of_products;
    }

    #[test]
    fn the_dispatched_loop_computes_what_the_plain_loop_does() {
        let a: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        // Sequential sums round identically whatever the vector width this CPU selects.
        assert_eq!(dispatched(&a, &b), sum_of_products(&a, &b));
    }
}
