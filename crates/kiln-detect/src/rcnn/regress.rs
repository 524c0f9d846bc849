//! R-CNN's class-specific bounding-box regressors: ridge regression from a proposal's features
//! to the [`BoxCoder`](crate::ops::BoxCoder) deltas (weights (1, 1, 1, 1)) that take it to the
//! ground-truth box it overlaps most, solved in closed form in f64:
//! `W = (XᵀX + λ I′)⁻¹ XᵀY`, `X` the features with a column of ones, `I′` the identity with a
//! zero for the bias (the bias is not penalised: it carries the targets' mean).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{DetectError, Result};

/// A fitted regressor: `deltas(x) = x · W + b`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BoxRegressor {
    /// `dim × 4` weights, row-major (row `i`: feature `i`'s weight on dx, dy, dw, dh).
    pub weights: Vec<f32>,
    /// The bias of each delta.
    pub bias: [f32; 4],
}

impl BoxRegressor {
    /// The feature size it takes.
    pub fn dim(&self) -> usize {
        self.weights.len() / 4
    }

    /// The predicted deltas `(dx, dy, dw, dh)` for features `x`.
    pub fn predict(&self, x: &[f32]) -> [f32; 4] {
        let mut out = [0f64; 4];
        for (row, v) in self.weights.chunks_exact(4).zip(x) {
            for k in 0..4 {
                out[k] += row[k] as f64 * *v as f64;
            }
        }
        std::array::from_fn(|k| out[k] as f32 + self.bias[k])
    }
}

/// Fits the ridge regressor of `targets` (one row of 4 per example) on `features` (rows of one
/// length) with penalty `lambda` on the weights. Fails when there are no examples, the rows
/// differ in length, or the system is not positive definite (a non-finite feature).
pub fn fit_ridge(features: &[&[f32]], targets: &[[f32; 4]], lambda: f64) -> Result<BoxRegressor> {
    let bad = |reason: String| DetectError::invalid("box regression", reason);
    if features.is_empty() || features.len() != targets.len() {
        return Err(bad(format!(
            "{} feature rows for {} targets",
            features.len(),
            targets.len()
        )));
    }
    let dim = features[0].len();
    if features.iter().any(|x| x.len() != dim) {
        return Err(bad("feature rows differ in length".into()));
    }
    // Augmented size: the features and a constant 1 (the bias) last.
    let n = dim + 1;
    // XᵀX (upper triangle) and XᵀY, accumulated by outer products over examples, split over
    // threads by chunks of examples.
    let chunk = features
        .len()
        .div_ceil(rayon::current_num_threads().max(1))
        .max(1);
    let (mut a, b) = features
        .par_chunks(chunk)
        .zip(targets.par_chunks(chunk))
        .map(|(xs, ys)| {
            let mut a = vec![0f64; n * n];
            let mut b = vec![0f64; n * 4];
            let mut row = vec![0f64; n];
            for (x, y) in xs.iter().zip(ys) {
                for (r, v) in row.iter_mut().zip(x.iter()) {
                    *r = *v as f64;
                }
                row[dim] = 1.0;
                for i in 0..n {
                    let ri = row[i];
                    if ri != 0.0 {
                        for (acc, rj) in a[i * n + i..(i + 1) * n].iter_mut().zip(&row[i..]) {
                            *acc += ri * rj;
                        }
                        for k in 0..4 {
                            b[i * 4 + k] += ri * y[k] as f64;
                        }
                    }
                }
            }
            (a, b)
        })
        .reduce(
            || (vec![0f64; n * n], vec![0f64; n * 4]),
            |(mut a1, mut b1), (a2, b2)| {
                a1.iter_mut().zip(&a2).for_each(|(p, q)| *p += q);
                b1.iter_mut().zip(&b2).for_each(|(p, q)| *p += q);
                (a1, b1)
            },
        );
    for i in 0..dim {
        a[i * n + i] += lambda;
    }
    let solution = cholesky_solve(&mut a, n, &b, 4).ok_or_else(|| {
        bad(format!("the {n}×{n} system is not positive definite (non-finite features, or λ = {lambda} too small)"))
    })?;
    Ok(BoxRegressor {
        weights: solution[..dim * 4].iter().map(|v| *v as f32).collect(),
        bias: std::array::from_fn(|k| solution[dim * 4 + k] as f32),
    })
}

/// Solves `A X = B` for symmetric positive definite `A` (`n × n`, upper triangle read,
/// overwritten by its Cholesky factor) and `B` (`n × m`); `None` when `A` is not positive
/// definite.
fn cholesky_solve(a: &mut [f64], n: usize, b: &[f64], m: usize) -> Option<Vec<f64>> {
    // A = Uᵀ U with U upper triangular, stored in A's upper triangle; row-oriented so the
    // inner loops run along rows.
    for k in 0..n {
        let d = a[k * n + k];
        if !(d > 0.0 && d.is_finite()) {
            return None;
        }
        let d = d.sqrt();
        a[k * n + k] = d;
        for j in k + 1..n {
            a[k * n + j] /= d;
        }
        let (head, tail) = a.split_at_mut((k + 1) * n);
        let uk = &head[k * n..(k + 1) * n];
        tail.par_chunks_mut(n).enumerate().for_each(|(r, row)| {
            let i = k + 1 + r;
            let uki = uk[i];
            if uki != 0.0 {
                for (v, ukj) in row[i..].iter_mut().zip(&uk[i..]) {
                    *v -= uki * ukj;
                }
            }
        });
    }
    // Uᵀ z = B (forward), then U x = z (backward).
    let mut x = b.to_vec();
    for i in 0..n {
        for c in 0..m {
            let mut s = x[i * m + c];
            for k in 0..i {
                s -= a[k * n + i] * x[k * m + c];
            }
            x[i * m + c] = s / a[i * n + i];
        }
    }
    for i in (0..n).rev() {
        for c in 0..m {
            let mut s = x[i * m + c];
            for k in i + 1..n {
                s -= a[i * n + k] * x[k * m + c];
            }
            x[i * m + c] = s / a[i * n + i];
        }
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn ridge_recovers_a_known_linear_map() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (dim, count) = (6, 400);
        let w: Vec<f32> = (0..dim * 4).map(|_| rng.random_range(-2.0..2.0)).collect();
        let bias = [0.5f32, -1.0, 2.0, 0.25];
        let xs: Vec<Vec<f32>> = (0..count)
            .map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect())
            .collect();
        let truth = BoxRegressor {
            weights: w.clone(),
            bias,
        };
        let ys: Vec<[f32; 4]> = xs.iter().map(|x| truth.predict(x)).collect();
        let rows: Vec<&[f32]> = xs.iter().map(Vec::as_slice).collect();
        let fit = fit_ridge(&rows, &ys, 1e-6).unwrap();
        for (a, b) in fit.weights.iter().zip(&w) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
        for (a, b) in fit.bias.iter().zip(&bias) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
        // A large λ shrinks the weights towards zero but leaves the bias free: it fits the mean.
        let shrunk = fit_ridge(&rows, &ys, 1e9).unwrap();
        assert!(shrunk.weights.iter().all(|v| v.abs() < 1e-3));
        let mean: Vec<f32> = (0..4)
            .map(|k| ys.iter().map(|y| y[k]).sum::<f32>() / count as f32)
            .collect();
        for (a, b) in shrunk.bias.iter().zip(&mean) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(fit_ridge(&[], &[], 1.0).is_err());
        let x = [1.0f32, f32::NAN];
        assert!(fit_ridge(&[&x], &[[0.0; 4]], 1.0).is_err());
        let (a, b) = ([1.0f32, 2.0], [1.0f32]);
        assert!(fit_ridge(&[&a, &b], &[[0.0; 4]; 2], 1.0).is_err());
    }
}
