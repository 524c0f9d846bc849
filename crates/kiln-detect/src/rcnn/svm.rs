//! R-CNN's per-class linear SVMs, trained with hard-negative mining.
//!
//! Each class gets a binary SVM `f(x) = w·x + b` minimising
//! `½‖[w, b/β]‖² + C Σᵢ cᵢ max(0, 1 − yᵢ f(xᵢ))`, where `β` is the constant bias feature
//! (liblinear's `-B`, R-CNN's `bias_mult`) and `cᵢ` the positive weight for positives and 1
//! for negatives. It is solved by dual coordinate descent (Hsieh et al., ICML 2008 — the
//! solver of liblinear's L1-loss SVM, which R-CNN used): one dual variable at a time, each
//! update exact, the primal `w` kept in step, until the projected gradient is below a
//! tolerance.
//!
//! kiln-classic's linear classifiers are not used here: they train the multiclass
//! Weston–Watkins loss by minibatch SGD with a tuned step size, while hard-negative mining needs
//! a binary SVM with per-example weights solved to convergence, so that "scores above −1" means
//! the same thing in every round.
//!
//! Mining ([`train_with_mining`]): the SVM starts on every positive and a seeded random subset
//! of the negatives; after each training every negative outside the working set that scores
//! above `hard_margin` (−1: it violates the margin) is added, and the SVM is retrained from where
//! it was (the dual variables of the kept examples stay valid); this stops after
//! `mining_rounds` or as soon as no negative violates the margin.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::config::SvmConfig;

/// A trained binary linear SVM: `score(x) = w·x + bias`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearSvm {
    /// Weights, one per feature.
    pub weights: Vec<f32>,
    /// The bias.
    pub bias: f32,
}

impl LinearSvm {
    /// The SVM's score of `x` (its margin: ≥ 1 for confident positives, ≤ −1 for negatives).
    pub fn score(&self, x: &[f32]) -> f32 {
        dot32(&self.weights, x) + self.bias
    }
}

fn dot32(a: &[f32], b: &[f32]) -> f32 {
    // Four lanes let the compiler vectorise and keep the rounding error small.
    let mut acc = [0f32; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// One labelled, weighted example of [`DualSvm`].
struct Example<'a> {
    x: &'a [f32],
    y: f32,
    /// Upper bound of the dual variable: `C` times the example's weight.
    bound: f64,
    /// `‖[x, β]‖²`.
    q: f64,
    alpha: f64,
}

/// Dual coordinate descent state: examples, their dual variables, and `w = Σ αᵢ yᵢ [xᵢ, β]`.
struct DualSvm<'a> {
    examples: Vec<Example<'a>>,
    /// Weights with the bias weight last (multiplying the constant feature `β`).
    w: Vec<f32>,
    beta: f32,
}

impl<'a> DualSvm<'a> {
    fn new(dim: usize, beta: f64) -> Self {
        Self {
            examples: Vec::new(),
            w: vec![0.0; dim + 1],
            beta: beta as f32,
        }
    }

    fn push(&mut self, x: &'a [f32], positive: bool, bound: f64) {
        let q = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() + (self.beta as f64).powi(2);
        self.examples.push(Example {
            x,
            y: if positive { 1.0 } else { -1.0 },
            bound,
            q,
            alpha: 0.0,
        });
    }

    fn decision(&self, x: &[f32]) -> f32 {
        let d = self.w.len() - 1;
        dot32(&self.w[..d], x) + self.w[d] * self.beta
    }

    /// Passes of coordinate descent in a seeded random order until the largest projected
    /// gradient is below `tolerance` or `max_epochs` passes; returns the passes made.
    fn solve(&mut self, tolerance: f64, max_epochs: usize, rng: &mut ChaCha8Rng) -> usize {
        let mut order: Vec<usize> = (0..self.examples.len()).collect();
        let d = self.w.len() - 1;
        for epoch in 1..=max_epochs {
            order.shuffle(rng);
            let mut worst = 0f64;
            for &i in &order {
                let e = &self.examples[i];
                if e.q <= 0.0 {
                    continue;
                }
                let g =
                    e.y as f64 * (dot32(&self.w[..d], e.x) + self.w[d] * self.beta) as f64 - 1.0;
                let pg = if e.alpha <= 0.0 {
                    g.min(0.0)
                } else if e.alpha >= e.bound {
                    g.max(0.0)
                } else {
                    g
                };
                worst = worst.max(pg.abs());
                if pg != 0.0 {
                    let new = (e.alpha - g / e.q).clamp(0.0, e.bound);
                    let step = ((new - e.alpha) * e.y as f64) as f32;
                    let x = e.x;
                    self.examples[i].alpha = new;
                    for (w, v) in self.w[..d].iter_mut().zip(x) {
                        *w += step * v;
                    }
                    self.w[d] += step * self.beta;
                }
            }
            if worst < tolerance {
                return epoch;
            }
        }
        max_epochs
    }

    /// The primal objective `½‖w‖² + Σ boundᵢ/… hinge`: `½‖w‖² + Σ Cᵢ max(0, 1 − yᵢ f(xᵢ))`.
    fn objective(&self) -> f64 {
        let reg = 0.5 * self.w.iter().map(|v| (*v as f64).powi(2)).sum::<f64>();
        let loss: f64 = self
            .examples
            .iter()
            .map(|e| e.bound * (1.0 - e.y as f64 * self.decision(e.x) as f64).max(0.0))
            .sum();
        reg + loss
    }

    fn model(&self) -> LinearSvm {
        let d = self.w.len() - 1;
        LinearSvm {
            weights: self.w[..d].to_vec(),
            bias: self.w[d] * self.beta,
        }
    }
}

/// What one round of mining did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MiningRound {
    /// 0 for the first training, then 1, 2, …
    pub round: usize,
    /// Negatives in the working set this round trained on.
    pub negatives: usize,
    /// Coordinate-descent passes the training took.
    pub epochs: usize,
    /// The primal objective on the working set after training.
    pub objective: f64,
    /// Negatives outside the working set that then scored above the hard margin (added for the
    /// next round, if there is one).
    pub violators: usize,
}

/// Trains a binary SVM on `positives` against `negatives` with hard-negative mining (see the
/// [module docs](self)); rows are feature vectors of one length. Returns the SVM and what
/// each round did. With no positives or no negatives the SVM is all zeros (every score 0).
pub fn train_with_mining(
    positives: &[&[f32]],
    negatives: &[&[f32]],
    config: &SvmConfig,
    seed: u64,
) -> (LinearSvm, Vec<MiningRound>) {
    let dim = positives
        .first()
        .or(negatives.first())
        .map_or(0, |x| x.len());
    let mut svm = DualSvm::new(dim, config.bias_feature);
    if positives.is_empty() || negatives.is_empty() {
        return (svm.model(), Vec::new());
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5171_0000_0000_0001);
    for x in positives {
        svm.push(x, true, config.c * config.positive_weight);
    }
    let mut order: Vec<usize> = (0..negatives.len()).collect();
    order.shuffle(&mut rng);
    let mut in_set = vec![false; negatives.len()];
    for &i in order.iter().take(config.initial_negatives) {
        in_set[i] = true;
        svm.push(negatives[i], false, config.c);
    }
    let mut rounds = Vec::new();
    for round in 0..=config.mining_rounds {
        let epochs = svm.solve(config.tolerance, config.max_epochs, &mut rng);
        let model = svm.model();
        let violators: Vec<usize> = (0..negatives.len())
            .filter(|&i| !in_set[i] && model.score(negatives[i]) as f64 > config.hard_margin)
            .collect();
        rounds.push(MiningRound {
            round,
            negatives: svm.examples.len() - positives.len(),
            epochs,
            objective: svm.objective(),
            violators: violators.len(),
        });
        if violators.is_empty() || round == config.mining_rounds {
            break;
        }
        for i in violators {
            in_set[i] = true;
            svm.push(negatives[i], false, config.c);
        }
    }
    (svm.model(), rounds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    /// Points in 2-D: positives around (3, 3), negatives spread over the plane away from them
    /// (separable by x + y > 3.5), most far away (easy) and a few near the boundary (hard).
    fn toy(seed: u64) -> (Vec<[f32; 2]>, Vec<[f32; 2]>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let pos: Vec<[f32; 2]> = (0..30)
            .map(|_| {
                [
                    3.0 + rng.random_range(-0.5..0.5),
                    3.0 + rng.random_range(-0.5..0.5),
                ]
            })
            .collect();
        let mut neg = Vec::new();
        while neg.len() < 2000 {
            let p = [
                rng.random_range(-6.0..4.0f32),
                rng.random_range(-6.0..4.0f32),
            ];
            if p[0] + p[1] < 2.5 {
                neg.push(p);
            }
        }
        (pos, neg)
    }

    fn config() -> SvmConfig {
        SvmConfig {
            c: 10.0,
            positive_weight: 1.0,
            bias_feature: 10.0,
            initial_negatives: 20,
            mining_rounds: 5,
            tolerance: 1e-4,
            max_epochs: 5000,
            ..SvmConfig::default()
        }
    }

    #[test]
    fn mining_adds_margin_violators_and_converges_on_a_separable_set() {
        let (pos, neg) = toy(1);
        let pos: Vec<&[f32]> = pos.iter().map(|p| &p[..]).collect();
        let neg: Vec<&[f32]> = neg.iter().map(|p| &p[..]).collect();
        let (svm, rounds) = train_with_mining(&pos, &neg, &config(), 7);
        // 20 random negatives cannot pin the boundary down: the first round finds violators,
        // the next round trains on them.
        assert!(rounds[0].violators > 0, "{rounds:?}");
        assert_eq!(
            rounds[1].negatives,
            rounds[0].negatives + rounds[0].violators
        );
        // Mining stops once nothing violates the margin, well before the round limit, and the
        // set is then separated with margin by the SVM.
        let last = rounds.last().unwrap();
        assert_eq!(last.violators, 0, "{rounds:?}");
        assert!(rounds.len() < 6, "{rounds:?}");
        assert!(pos.iter().all(|x| svm.score(x) >= 0.99));
        assert!(neg.iter().all(|x| svm.score(x) <= -0.99));
        // The working set stays far smaller than the pool: easy negatives were never needed.
        assert!(last.negatives < neg.len() / 4, "{rounds:?}");
    }

    #[test]
    fn dual_coordinate_descent_reaches_the_max_margin_line() {
        // Two points: the max-margin boundary is the bisector, each at margin exactly 1.
        let (a, b) = ([2.0f32, 0.0], [0.0f32, 0.0]);
        let cfg = SvmConfig {
            c: 1e6,
            bias_feature: 100.0,
            initial_negatives: 1,
            mining_rounds: 0,
            tolerance: 1e-6,
            max_epochs: 100_000,
            ..SvmConfig::default()
        };
        let (svm, rounds) = train_with_mining(&[&a], &[&b], &cfg, 0);
        assert!((svm.score(&a) - 1.0).abs() < 1e-3, "{svm:?} {rounds:?}");
        assert!((svm.score(&b) + 1.0).abs() < 1e-3, "{svm:?}");
        assert!(
            (svm.score(&[1.0, 5.0])).abs() < 1e-3,
            "the boundary is x = 1: {svm:?}"
        );
        // Nothing to separate: a zero SVM, not a panic.
        let (zero, rounds) = train_with_mining(&[], &[&b], &cfg, 0);
        assert_eq!((zero.score(&b), rounds.len()), (0.0, 0));
    }
}
