//! R-CNN's class-specific bounding-box regressors: ridge regression from a proposal's features
//! to the [`BoxCoder`](crate::ops::BoxCoder) deltas (weights (1, 1, 1, 1)) that take it to the
//! ground-truth box it overlaps most, solved in closed form in f64: `W = (XᵀX + λI)⁻¹ XᵀY` on
//! centred features and targets (the bias is not penalised: it carries the targets' mean), in
//! the dual form when there are more features than examples.

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
///
/// The bias is not penalised, so the features and targets are centred and the weights solved
/// on the centred data: in the primal, `W = (XᵀX + λI)⁻¹ XᵀY` (a `dim × dim` system), or, when
/// there are fewer examples than features, in the dual, `W = Xᵀ (XXᵀ + λI)⁻¹ Y` (an `n × n`
/// system) — the same weights, at the cost of the smaller system.
pub fn fit_ridge(features: &[&[f32]], targets: &[[f32; 4]], lambda: f64) -> Result<BoxRegressor> {
    let dual = features.first().is_some_and(|x| x.len() > features.len());
    fit_ridge_in(features, targets, lambda, dual)
}

fn fit_ridge_in(
    features: &[&[f32]],
    targets: &[[f32; 4]],
    lambda: f64,
    dual: bool,
) -> Result<BoxRegressor> {
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
    let n = features.len();
    let mut mean_x = vec![0f64; dim];
    for x in features {
        for (m, v) in mean_x.iter_mut().zip(x.iter()) {
            *m += *v as f64;
        }
    }
    mean_x.iter_mut().for_each(|m| *m /= n as f64);
    let mean_y: [f64; 4] =
        std::array::from_fn(|k| targets.iter().map(|y| y[k] as f64).sum::<f64>() / n as f64);
    let centred: Vec<Vec<f64>> = features
        .par_iter()
        .map(|x| x.iter().zip(&mean_x).map(|(v, m)| *v as f64 - m).collect())
        .collect();
    let y: Vec<[f64; 4]> = targets
        .iter()
        .map(|t| std::array::from_fn(|k| t[k] as f64 - mean_y[k]))
        .collect();
    let not_pd = || {
        bad(format!(
            "the ridge system is not positive definite (non-finite features, or λ = {lambda} too small)"
        ))
    };
    let weights: Vec<f64> = if dual {
        // K = Xc Xcᵀ + λI (upper triangle), then α = K⁻¹ Yc and W = Xcᵀ α.
        let mut k = vec![0f64; n * n];
        k.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
            for j in i..n {
                row[j] = centred[i].iter().zip(&centred[j]).map(|(a, b)| a * b).sum();
            }
            row[i] += lambda;
        });
        let flat_y: Vec<f64> = y.iter().flatten().copied().collect();
        let alpha = cholesky_solve(&mut k, n, &flat_y, 4).ok_or_else(not_pd)?;
        let mut w = vec![0f64; dim * 4];
        for (row, a) in centred.iter().zip(alpha.chunks_exact(4)) {
            for (d, v) in row.iter().enumerate() {
                for c in 0..4 {
                    w[d * 4 + c] += v * a[c];
                }
            }
        }
        w
    } else {
        // A = XcᵀXc + λI (upper triangle) and B = XcᵀYc, accumulated by outer products over
        // examples, split over threads by chunks of examples.
        let chunk = n.div_ceil(rayon::current_num_threads().max(1)).max(1);
        let (mut a, b) = centred
            .par_chunks(chunk)
            .zip(y.par_chunks(chunk))
            .map(|(xs, ys)| {
                let mut a = vec![0f64; dim * dim];
                let mut b = vec![0f64; dim * 4];
                for (row, t) in xs.iter().zip(ys) {
                    for i in 0..dim {
                        let ri = row[i];
                        if ri != 0.0 {
                            for (acc, rj) in a[i * dim + i..(i + 1) * dim].iter_mut().zip(&row[i..])
                            {
                                *acc += ri * rj;
                            }
                            for c in 0..4 {
                                b[i * 4 + c] += ri * t[c];
                            }
                        }
                    }
                }
                (a, b)
            })
            .reduce(
                || (vec![0f64; dim * dim], vec![0f64; dim * 4]),
                |(mut a1, mut b1), (a2, b2)| {
                    a1.iter_mut().zip(&a2).for_each(|(p, q)| *p += q);
                    b1.iter_mut().zip(&b2).for_each(|(p, q)| *p += q);
                    (a1, b1)
                },
            );
        for i in 0..dim {
            a[i * dim + i] += lambda;
        }
        cholesky_solve(&mut a, dim, &b, 4).ok_or_else(not_pd)?
    };
    if weights.iter().any(|v| !v.is_finite()) {
        return Err(not_pd());
    }
    let bias: [f32; 4] = std::array::from_fn(|c| {
        let shift: f64 = mean_x
            .iter()
            .enumerate()
            .map(|(d, m)| m * weights[d * 4 + c])
            .sum();
        (mean_y[c] - shift) as f32
    });
    Ok(BoxRegressor {
        weights: weights.iter().map(|v| *v as f32).collect(),
        bias,
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
    fn the_dual_solution_equals_the_primal_one() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let xs: Vec<Vec<f32>> = (0..40)
            .map(|_| (0..12).map(|_| rng.random_range(-1.0..1.0)).collect())
            .collect();
        let ys: Vec<[f32; 4]> = (0..40)
            .map(|_| std::array::from_fn(|_| rng.random_range(-1.0..1.0)))
            .collect();
        let rows: Vec<&[f32]> = xs.iter().map(Vec::as_slice).collect();
        let primal = fit_ridge_in(&rows, &ys, 3.0, false).unwrap();
        let dual = fit_ridge_in(&rows, &ys, 3.0, true).unwrap();
        for (a, b) in primal
            .weights
            .iter()
            .chain(&primal.bias)
            .zip(dual.weights.iter().chain(&dual.bias))
        {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // More features than examples: the dual is chosen, and predicts its examples closely
        // with a small λ.
        let wide: Vec<Vec<f32>> = (0..10)
            .map(|_| (0..30).map(|_| rng.random_range(-1.0..1.0)).collect())
            .collect();
        let rows: Vec<&[f32]> = wide.iter().map(Vec::as_slice).collect();
        let fit = fit_ridge(&rows, &ys[..10], 1e-6).unwrap();
        for (x, y) in rows.iter().zip(&ys) {
            let p = fit.predict(x);
            assert!((0..4).all(|k| (p[k] - y[k]).abs() < 1e-3), "{p:?} vs {y:?}");
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
