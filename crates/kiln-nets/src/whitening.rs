//! PCA whitening of image patches, used to initialise a first convolution whose outputs are
//! decorrelated with unit variance (airbench's first layer).

/// The uncentred covariance `Σ p pᵀ / n` of every `k`×`k` patch (stride 1, no padding) of
/// `images`, laid out `[n, channels, height, width]`. Patch vectors are ordered
/// `(channel, row, column)`, the layout of a convolution filter. Returns a `d`×`d` row-major
/// matrix with `d = channels·k·k`.
pub fn patch_covariance(images: &[f32], shape: [usize; 4], k: usize) -> Vec<f64> {
    let [n, c, h, w] = shape;
    assert_eq!(images.len(), n * c * h * w, "images do not match {shape:?}");
    assert!(k > 0 && k <= h && k <= w, "kernel {k} does not fit {h}×{w}");
    let d = c * k * k;
    let mut sum = vec![0f64; d * d];
    let mut patch = vec![0f64; d];
    let mut count = 0usize;
    for img in images.chunks_exact(c * h * w) {
        for y in 0..=h - k {
            for x in 0..=w - k {
                let mut i = 0;
                for ch in 0..c {
                    for dy in 0..k {
                        let row = &img[ch * h * w + (y + dy) * w + x..];
                        for &v in &row[..k] {
                            patch[i] = v as f64;
                            i += 1;
                        }
                    }
                }
                for a in 0..d {
                    let pa = patch[a];
                    for b in a..d {
                        sum[a * d + b] += pa * patch[b];
                    }
                }
                count += 1;
            }
        }
    }
    for a in 0..d {
        for b in a..d {
            let v = sum[a * d + b] / count.max(1) as f64;
            sum[a * d + b] = v;
            sum[b * d + a] = v;
        }
    }
    sum
}

/// Eigen-decomposition of a symmetric `d`×`d` matrix by cyclic Jacobi rotations. Returns the
/// eigenvalues in decreasing order and the matching unit eigenvectors as rows.
pub fn symmetric_eigen(matrix: &[f64], d: usize) -> (Vec<f64>, Vec<Vec<f64>>) {
    assert_eq!(matrix.len(), d * d, "matrix is not {d}×{d}");
    let mut a = matrix.to_vec();
    let mut v = vec![0f64; d * d];
    for i in 0..d {
        v[i * d + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * d + j] * a[i * d + j])
            .sum();
        let scale: f64 = (0..d).map(|i| a[i * d + i] * a[i * d + i]).sum();
        if off <= 1e-30 * scale.max(1e-300) {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * d + q] - a[p * d + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let (akp, akq) = (a[k * d + p], a[k * d + q]);
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let (apk, aqk) = (a[p * d + k], a[q * d + k]);
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                for k in 0..d {
                    let (vkp, vkq) = (v[k * d + p], v[k * d + q]);
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&i, &j| a[j * d + j].total_cmp(&a[i * d + i]));
    let values = order.iter().map(|&i| a[i * d + i]).collect();
    let vectors = order
        .iter()
        .map(|&i| (0..d).map(|k| v[k * d + i]).collect())
        .collect();
    (values, vectors)
}

/// Filters `[2d, channels, k, k]` (flattened) that whiten `k`×`k` patches of `images`: each
/// eigenvector of the patch covariance scaled by `1/√(λ + eps)`, followed by the same filters
/// negated (so that a following GELU or ReLU keeps both signs).
pub fn whitening_filters(images: &[f32], shape: [usize; 4], k: usize, eps: f64) -> Vec<f32> {
    let d = shape[1] * k * k;
    let (values, vectors) = symmetric_eigen(&patch_covariance(images, shape, k), d);
    let scaled: Vec<f32> = values
        .iter()
        .zip(&vectors)
        .flat_map(|(&l, v)| {
            let s = 1.0 / (l.max(0.0) + eps).sqrt();
            v.iter().map(move |&x| (x * s) as f32)
        })
        .collect();
    let negated = scaled.iter().map(|v| -v);
    scaled.iter().copied().chain(negated).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn jacobi_recovers_a_known_decomposition() {
        // A = Q diag(5, 2, 0.5) Qᵀ for a rotation Q.
        let (c, s) = (0.6f64, 0.8f64);
        let q = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]];
        let l = [2.0, 5.0, 0.5];
        let mut a = vec![0.0; 9];
        for i in 0..3 {
            for j in 0..3 {
                a[i * 3 + j] = (0..3).map(|k| q[i][k] * l[k] * q[j][k]).sum();
            }
        }
        let (values, vectors) = symmetric_eigen(&a, 3);
        for (got, want) in values.iter().zip([5.0, 2.0, 0.5]) {
            assert!((got - want).abs() < 1e-12, "{values:?}");
        }
        // The top eigenvector is Q's second column up to sign.
        let dot: f64 = vectors[0]
            .iter()
            .zip([-s, c, 0.0])
            .map(|(a, b)| a * b)
            .sum();
        assert!((dot.abs() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn whitened_patches_have_identity_covariance() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (n, c, h, w, k) = (20, 3, 8, 8, 2);
        // Correlated channels: the second and third follow the first.
        let mut images = vec![0f32; n * c * h * w];
        for img in images.chunks_exact_mut(c * h * w) {
            for p in 0..h * w {
                let base: f32 = rng.random_range(-1.0..1.0);
                img[p] = base;
                img[h * w + p] = 0.8 * base + 0.2 * rng.random_range(-1.0f32..1.0);
                img[2 * h * w + p] = -0.5 * base + 0.5 * rng.random_range(-1.0f32..1.0);
            }
        }
        let d = c * k * k;
        let filters = whitening_filters(&images, [n, c, h, w], k, 0.0);
        assert_eq!(filters.len(), 2 * d * d);
        let cov = patch_covariance(&images, [n, c, h, w], k);
        // F Σ Fᵀ = I for the first d filters.
        for i in 0..d {
            for j in 0..d {
                let fi = &filters[i * d..(i + 1) * d];
                let fj = &filters[j * d..(j + 1) * d];
                let v: f64 = (0..d)
                    .map(|a| {
                        (0..d)
                            .map(|b| fi[a] as f64 * cov[a * d + b] * fj[b] as f64)
                            .sum::<f64>()
                    })
                    .sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((v - want).abs() < 1e-3, "({i},{j}) = {v}");
            }
        }
        assert_eq!(filters[d * d], -filters[0]);
    }
}
