//! Exact byte-row kernels with AVX-512 for kNN on raw pixels: dot products with VNNI (L2) and
//! sums of absolute differences with `vpsadbw` (L1).
//!
//! `vpdpbusd` multiplies 64 unsigned by 64 signed bytes and accumulates into 16 `i32` lanes per
//! instruction: four times the multiply-adds of an `f32` FMA. Training rows are stored shifted
//! to signed bytes (`t − 128`), and `q·t = q·(t − 128) + 128·Σq` restores the product exactly
//! (at most 3,072·255² < 2³¹ for CIFAR-sized rows).

/// Training rows prepared for [`dot_block`]: shifted to `i8`, rows padded to a multiple of 64.
pub(crate) struct SignedRows {
    data: Vec<i8>,
    stride: usize,
}

impl SignedRows {
    pub(crate) fn new(pixels: &[u8], dims: usize) -> Self {
        let stride = dims.div_ceil(64) * 64;
        let rows = pixels.len() / dims;
        let mut data = vec![0i8; rows * stride];
        for (src, dst) in pixels.chunks_exact(dims).zip(data.chunks_exact_mut(stride)) {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = (s as i16 - 128) as i8;
            }
        }
        Self { data, stride }
    }
}

/// Byte rows padded with zeros to a multiple of 64 bytes.
pub(crate) fn pad_queries(queries: &[u8], dims: usize) -> (Vec<u8>, usize) {
    let stride = dims.div_ceil(64) * 64;
    let rows = queries.len() / dims;
    let mut out = vec![0u8; rows * stride];
    for (src, dst) in queries.chunks_exact(dims).zip(out.chunks_exact_mut(stride)) {
        dst[..dims].copy_from_slice(src);
    }
    (out, stride)
}

/// Whether this CPU runs the AVX-512 kernels (`dot_block` also needs VNNI).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A register-blocked kernel over 4 query rows × 4 training rows: `$step(acc, q, t)` folds one
/// 64-byte column block into an accumulator and `$reduce(acc)` turns it into the result.
macro_rules! blocked_kernel {
    ($name:ident, $rows:ty, $out:ty, $features:literal, $step:expr, $reduce:expr) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $name(queries: &[u8], train: &[$rows], stride: usize, out: &mut [$out]) {
            use std::arch::x86_64::*;
            let n = train.len() / stride;
            let q_rows = queries.len() / stride;
            let load = |bytes: &[u8]| {
                // SAFETY: 64 readable bytes; unaligned loads are allowed.
                unsafe { _mm512_loadu_si512(bytes.as_ptr() as *const _) }
            };
            for t0 in (0..n).step_by(4) {
                let tn = (n - t0).min(4);
                for q0 in (0..q_rows).step_by(4) {
                    let qn = (q_rows - q0).min(4);
                    let mut acc = [[_mm512_setzero_si512(); 4]; 4];
                    for s in 0..stride / 64 {
                        let mut tv = [_mm512_setzero_si512(); 4];
                        for (j, v) in tv.iter_mut().enumerate().take(tn) {
                            let row = &train[(t0 + j) * stride + s * 64..][..64];
                            // SAFETY: same-size plain bytes.
                            *v = load(unsafe { &*(row as *const [$rows] as *const [u8]) });
                        }
                        for (i, acc_row) in acc.iter_mut().enumerate().take(qn) {
                            let qv = load(&queries[(q0 + i) * stride + s * 64..][..64]);
                            for (a, &t) in acc_row.iter_mut().zip(&tv) {
                                *a = $step(*a, qv, t);
                            }
                        }
                    }
                    for (i, row) in acc.iter().enumerate().take(qn) {
                        for (j, a) in row.iter().enumerate().take(tn) {
                            out[(q0 + i) * n + t0 + j] = $reduce(*a);
                        }
                    }
                }
            }
        }
    };
}

blocked_kernel!(
    dot_block_vnni,
    i8,
    i32,
    "avx512f,avx512bw,avx512vnni",
    |a, q, t| _mm512_dpbusd_epi32(a, q, t),
    |a| _mm512_reduce_add_epi32(a)
);

blocked_kernel!(
    sad_block_avx512,
    u8,
    u32,
    "avx512f,avx512bw",
    |a, q, t| _mm512_add_epi64(a, _mm512_sad_epu8(q, t)),
    |a| _mm512_reduce_add_epi64(a) as u32
);

/// `out[q * n + t] = Σ queries[q]·(train[t] − 128)` for the padded query rows against every
/// training row; `n` is the number of training rows.
pub(crate) fn dot_block(queries: &[u8], train: &SignedRows, out: &mut [i32]) {
    assert!(available(), "dot_block needs AVX-512 VNNI");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU features were checked above; rows are `stride` long, a multiple of 64.
    unsafe {
        dot_block_vnni(queries, &train.data, train.stride, out)
    }
}

/// `out[q * n + t] = Σ |queries[q] − train[t]|` for padded query and training rows of
/// `stride` bytes (padding is zero in both, so it adds nothing).
pub(crate) fn sad_block(queries: &[u8], train: &[u8], stride: usize, out: &mut [u32]) {
    assert!(available(), "sad_block needs AVX-512");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as for `dot_block`.
    unsafe {
        sad_block_avx512(queries, train, stride, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_integer_dot_products() {
        if !available() {
            eprintln!("SKIPPED: this CPU has no AVX-512 VNNI");
            return;
        }
        let dims = 100;
        let train: Vec<u8> = (0..7 * dims).map(|i| (i * 37 % 256) as u8).collect();
        let queries: Vec<u8> = (0..5 * dims).map(|i| (i * 91 % 256) as u8).collect();
        let rows = SignedRows::new(&train, dims);
        let (padded, _) = pad_queries(&queries, dims);
        let mut out = vec![0i32; 5 * 7];
        dot_block(&padded, &rows, &mut out);
        let (padded_train, stride) = pad_queries(&train, dims);
        let mut sads = vec![0u32; 5 * 7];
        sad_block(&padded, &padded_train, stride, &mut sads);
        for q in 0..5 {
            let qs = &queries[q * dims..(q + 1) * dims];
            let sum_q: i64 = qs.iter().map(|&v| v as i64).sum();
            for t in 0..7 {
                let ts = &train[t * dims..(t + 1) * dims];
                let exact: i64 = qs.iter().zip(ts).map(|(&a, &b)| a as i64 * b as i64).sum();
                assert_eq!(out[q * 7 + t] as i64 + 128 * sum_q, exact);
                let sad: u32 = qs.iter().zip(ts).map(|(&a, &b)| a.abs_diff(b) as u32).sum();
                assert_eq!(sads[q * 7 + t], sad);
            }
        }
    }
}
