//! Exact dot products between byte rows with AVX-512 VNNI, for L2 distances on raw pixels.
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

/// Query rows padded to the same stride (padding is zero, so it adds nothing).
pub(crate) fn pad_queries(queries: &[u8], dims: usize) -> (Vec<u8>, usize) {
    let stride = dims.div_ceil(64) * 64;
    let rows = queries.len() / dims;
    let mut out = vec![0u8; rows * stride];
    for (src, dst) in queries.chunks_exact(dims).zip(out.chunks_exact_mut(stride)) {
        dst[..dims].copy_from_slice(src);
    }
    (out, stride)
}

/// Whether this CPU runs the VNNI kernel.
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

/// `out[q * n + t] = Σ queries[q]·(train[t] − 128)` for the padded query rows against every
/// training row; `n` is the number of training rows.
pub(crate) fn dot_block(queries: &[u8], train: &SignedRows, out: &mut [i32]) {
    assert!(available(), "dot_block needs AVX-512 VNNI");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU features were checked above; all slices are indexed within bounds
    // (rows are `stride` long, a multiple of 64).
    unsafe {
        dot_block_vnni(queries, train, out)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn dot_block_vnni(queries: &[u8], train: &SignedRows, out: &mut [i32]) {
    use std::arch::x86_64::*;
    let stride = train.stride;
    let n = train.data.len() / stride;
    let q_rows = queries.len() / stride;
    let steps = stride / 64;
    // 4 queries × 4 training rows = 16 accumulators.
    let mut t0 = 0;
    while t0 < n {
        let tn = (n - t0).min(4);
        let mut q0 = 0;
        while q0 < q_rows {
            let qn = (q_rows - q0).min(4);
            let mut acc = [[_mm512_setzero_si512(); 4]; 4];
            for s in 0..steps {
                let mut tv = [_mm512_setzero_si512(); 4];
                for (j, v) in tv.iter_mut().enumerate().take(tn) {
                    let row = &train.data[(t0 + j) * stride + s * 64..][..64];
                    // SAFETY: `row` holds 64 readable bytes; unaligned loads are allowed.
                    *v = unsafe { _mm512_loadu_si512(row.as_ptr() as *const _) };
                }
                for i in 0..qn {
                    let row = &queries[(q0 + i) * stride + s * 64..][..64];
                    // SAFETY: as above.
                    let qv = unsafe { _mm512_loadu_si512(row.as_ptr() as *const _) };
                    for j in 0..4 {
                        acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], qv, tv[j]);
                    }
                }
            }
            for (i, row) in acc.iter().enumerate().take(qn) {
                for (j, a) in row.iter().enumerate().take(tn) {
                    out[(q0 + i) * n + t0 + j] = _mm512_reduce_add_epi32(*a);
                }
            }
            q0 += 4;
        }
        t0 += 4;
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
        for q in 0..5 {
            let qs = &queries[q * dims..(q + 1) * dims];
            let sum_q: i64 = qs.iter().map(|&v| v as i64).sum();
            for t in 0..7 {
                let ts = &train[t * dims..(t + 1) * dims];
                let exact: i64 = qs.iter().zip(ts).map(|(&a, &b)| a as i64 * b as i64).sum();
                assert_eq!(out[q * 7 + t] as i64 + 128 * sum_q, exact);
            }
        }
    }
}
