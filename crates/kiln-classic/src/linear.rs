//! Linear classifiers with the bias trick, the multiclass SVM and softmax losses with their
//! analytic gradients written as tensor operations, and minibatch SGD.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Int, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{ClassicError, Result};

/// Which loss a linear classifier is trained with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossKind {
    /// Multiclass hinge loss (Weston–Watkins), margin Δ = 1.
    Svm,
    /// Softmax cross-entropy.
    Softmax,
}

impl std::str::FromStr for LossKind {
    type Err = ClassicError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "svm" => Ok(Self::Svm),
            "softmax" => Ok(Self::Softmax),
            other => Err(ClassicError::invalid(
                "loss",
                format!("`{other}` is not svm or softmax"),
            )),
        }
    }
}

impl LossKind {
    /// The loss of near-zero weights on `classes` classes, the course's first sanity check, with
    /// why: ln(C) for softmax (uniform probabilities), C − 1 for the SVM (every margin ≈ Δ = 1).
    pub fn expected_initial_loss(self, classes: usize) -> (f64, &'static str) {
        let c = classes as f64;
        match self {
            Self::Softmax => (c.ln(), "ln(C)"),
            Self::Svm => (c - 1.0, "C − 1, every margin ≈ Δ"),
        }
    }
}

/// How gradients are obtained during training.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GradMode {
    /// The hand-derived gradients of this module (the course's path).
    #[default]
    Analytic,
    /// Burn's automatic differentiation of the same loss.
    Autodiff,
}

/// Configuration of a [`LinearClassifier`].
#[derive(Config, Debug)]
pub struct LinearClassifierConfig {
    /// Input features (without the bias column).
    pub inputs: usize,
    /// Number of classes.
    pub classes: usize,
    /// Standard deviation of the initial weights.
    #[config(default = 1e-4)]
    pub init_std: f64,
}

/// `scores = [x, 1] · W`: a linear classifier whose bias is the last row of `W` (the bias trick).
#[derive(Module, Debug)]
pub struct LinearClassifier {
    /// Weights `[inputs + 1, classes]`; the last row is the bias.
    pub weight: Param<Tensor<2>>,
}

impl LinearClassifier {
    /// The weights of each class as an image (the course's "templates"): for inputs that were
    /// `[channels, height, width]` planes, one `height × width × channels` byte image per class
    /// (channels interleaved), each stretched to 0–255.
    pub fn templates(&self, [channels, height, width]: [usize; 3]) -> Result<Vec<Vec<u8>>> {
        let [rows, classes] = self.weight.dims();
        let d = channels * height * width;
        if rows != d + 1 {
            return Err(ClassicError::Shape(format!(
                "{rows} weight rows are not {channels}×{height}×{width} inputs plus the bias"
            )));
        }
        let weights = self
            .weight
            .val()
            .into_data()
            .try_to_vec_as::<f32>()
            .map_err(|e| ClassicError::Shape(format!("reading the weights: {e:?}")))?;
        let plane = height * width;
        Ok((0..classes)
            .map(|class| {
                let column: Vec<f32> = (0..d).map(|i| weights[i * classes + class]).collect();
                let (lo, hi) = column
                    .iter()
                    .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
                let span = (hi - lo).max(f32::MIN_POSITIVE);
                let mut image = vec![0u8; d];
                for ch in 0..channels {
                    for px in 0..plane {
                        image[px * channels + ch] =
                            (255.0 * (column[ch * plane + px] - lo) / span).round() as u8;
                    }
                }
                image
            })
            .collect())
    }
}

impl LinearClassifierConfig {
    /// Small random weights, `N(0, init_std²)`.
    pub fn init(&self, device: &Device) -> LinearClassifier {
        let w = Tensor::<2>::random(
            [self.inputs + 1, self.classes],
            Distribution::Normal(0.0, self.init_std),
            device,
        );
        LinearClassifier {
            weight: Param::from_tensor(w),
        }
    }
}

/// Appends the constant-1 column that the bias trick folds the bias into.
pub fn with_bias_column(x: Tensor<2>) -> Tensor<2> {
    let [n, _] = x.dims();
    let ones = Tensor::<2>::ones([n, 1], (&x.device(), x.dtype()));
    Tensor::cat(vec![x, ones], 1)
}

impl LinearClassifier {
    /// Class scores of inputs that already carry the bias column.
    pub fn scores(&self, x_with_bias: Tensor<2>) -> Tensor<2> {
        x_with_bias.matmul(self.weight.val())
    }

    /// Predicted classes of inputs that carry the bias column.
    pub fn predict(&self, x_with_bias: Tensor<2>) -> Result<Vec<usize>> {
        self.scores(x_with_bias)
            .argmax(1)
            .into_data()
            .try_to_vec_as::<i64>()
            .map(|v| v.into_iter().map(|c| c as usize).collect())
            .map_err(|e| ClassicError::Read(format!("{e:?}")))
    }
}

/// `[n, classes]` one-hot float rows of `targets`.
fn one_hot(targets: &Tensor<1, Int>, classes: usize, like: &Tensor<2>) -> Tensor<2> {
    targets
        .clone()
        .one_hot::<2>(classes)
        .float()
        .cast(like.dtype())
}

/// SVM margins `max(0, s_j − s_y + 1)` for every class `j ≠ y` (zero at `y`).
fn svm_margins(scores: Tensor<2>, onehot: &Tensor<2>) -> Tensor<2> {
    let correct = (scores.clone() * onehot.clone()).sum_dim(1);
    (scores - correct + 1.0).clamp_min(0.0) * (onehot.clone().neg() + 1.0)
}

/// Mean negative log-probability of the labelled classes, from max-shifted scores.
fn softmax_nll(shifted: Tensor<2>, onehot: Tensor<2>) -> Tensor<1> {
    let n = shifted.dims()[0];
    let log_probs = burn::tensor::activation::log_softmax(shifted, 1);
    (log_probs * onehot).sum().neg().div_scalar(n as f64)
}

/// `reg · Σ W²`.
fn l2_penalty(w: Tensor<2>, reg: f64) -> Tensor<1> {
    w.powi_scalar(2).sum().mul_scalar(reg)
}

/// The loss alone, written with differentiable tensor operations: what autodiff and the
/// gradient check differentiate. `reg` multiplies `Σ W²`.
pub fn loss(kind: LossKind, w: Tensor<2>, x: Tensor<2>, y: &Tensor<1, Int>, reg: f64) -> Tensor<1> {
    let [n, _] = x.dims();
    let scores = x.matmul(w.clone());
    let onehot = one_hot(y, w.dims()[1], &scores);
    let data = match kind {
        LossKind::Svm => svm_margins(scores, &onehot).sum().div_scalar(n as f64),
        LossKind::Softmax => {
            let shifted = scores.clone() - scores.detach().max_dim(1);
            softmax_nll(shifted, onehot)
        }
    };
    data + l2_penalty(w, reg)
}

/// The loss and its gradient with respect to `w`, derived by hand (CS231n assignment 1):
///
/// * SVM: margins `m_ij = max(0, s_ij − s_iy + 1)` (j ≠ y); `dW = Xᵀ M / n + 2 reg W`, where `M_ij`
///   is 1 where `m_ij > 0` and `M_iy = −Σ_j 1[m_ij > 0]`.
/// * softmax: `p = softmax(s)`; `dW = Xᵀ (p − onehot(y)) / n + 2 reg W`.
pub fn loss_and_grad(
    kind: LossKind,
    w: Tensor<2>,
    x: Tensor<2>,
    y: &Tensor<1, Int>,
    reg: f64,
) -> (Tensor<1>, Tensor<2>) {
    let [n, _] = x.dims();
    let scores = x.clone().matmul(w.clone());
    let onehot = one_hot(y, w.dims()[1], &scores);
    let (data_loss, dscores) = match kind {
        LossKind::Svm => {
            let margins = svm_margins(scores, &onehot);
            let active = margins
                .clone()
                .greater_elem(0.0)
                .float()
                .cast(margins.dtype());
            let count = active.clone().sum_dim(1);
            (margins.sum().div_scalar(n as f64), active - onehot * count)
        }
        LossKind::Softmax => {
            let shifted = scores.clone() - scores.max_dim(1);
            let probs = burn::tensor::activation::softmax(shifted.clone(), 1);
            (softmax_nll(shifted, onehot.clone()), probs - onehot)
        }
    };
    let grad = x.transpose().matmul(dscores).div_scalar(n as f64) + w.clone().mul_scalar(2.0 * reg);
    (data_loss + l2_penalty(w, reg), grad)
}

/// The gradient of [`loss`] by Burn's autodiff, at `w`.
pub fn autodiff_grad(
    kind: LossKind,
    w: Tensor<2>,
    x: Tensor<2>,
    y: &Tensor<1, Int>,
    reg: f64,
) -> (Tensor<1>, Tensor<2>) {
    let device = w.device().autodiff();
    let (wt, xt) = (w.dtype(), x.dtype());
    let w_ad = Tensor::<2>::from_data(w.into_data(), (&device, wt)).require_grad();
    let x_ad = Tensor::<2>::from_data(x.into_data(), (&device, xt));
    let y_ad = Tensor::<1, Int>::from_data(y.clone().into_data(), &device);
    let l = loss(kind, w_ad.clone(), x_ad, &y_ad, reg);
    let grads = l.backward();
    let g = w_ad.grad(&grads).expect("w requires grad");
    (l.without_autodiff(), g)
}

/// Minibatch SGD settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SgdSettings {
    /// Step size.
    pub learning_rate: f64,
    /// L2 regularisation strength (multiplies `Σ W²`).
    pub reg: f64,
    /// Number of minibatch steps.
    pub iterations: usize,
    /// Examples per minibatch, drawn with replacement as in the course.
    pub batch_size: usize,
    /// Analytic or autodiff gradients.
    #[serde(default)]
    pub grad: GradMode,
    /// Multiplies the learning rate after every epoch (one epoch = training-set size /
    /// batch size iterations); 1 keeps it constant.
    #[serde(default = "no_decay")]
    pub lr_decay: f64,
}

fn no_decay() -> f64 {
    1.0
}

/// Trains `model` on `x` (with bias column) and `y` by minibatch SGD; `on_step(iteration, loss)`
/// is called after every step. Stops with [`ClassicError::Diverged`] when the loss stops being
/// finite.
pub fn train(
    mut model: LinearClassifier,
    kind: LossKind,
    x: &Tensor<2>,
    y: &Tensor<1, Int>,
    settings: &SgdSettings,
    seed: u64,
    mut on_step: impl FnMut(usize, f64),
) -> Result<(LinearClassifier, Vec<f64>)> {
    let [n, _] = x.dims();
    if n == 0 || settings.batch_size == 0 {
        return Err(ClassicError::invalid(
            "training set",
            "no examples or a zero batch size",
        ));
    }
    let device = x.device();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut losses = Vec::with_capacity(settings.iterations);
    let per_epoch = n.div_ceil(settings.batch_size).max(1);
    let mut lr = settings.learning_rate;
    for it in 0..settings.iterations {
        if it > 0 && it % per_epoch == 0 {
            lr *= settings.lr_decay;
        }
        let idx: Vec<i64> = (0..settings.batch_size)
            .map(|_| rng.random_range(0..n as i64))
            .collect();
        let idx = Tensor::<1, Int>::from_data(
            burn::tensor::TensorData::new(idx, [settings.batch_size]),
            &device,
        );
        let xb = x.clone().select(0, idx.clone());
        let yb = y.clone().select(0, idx);
        let w = model.weight.val();
        let (l, g) = match settings.grad {
            GradMode::Analytic => loss_and_grad(kind, w.clone(), xb, &yb, settings.reg),
            GradMode::Autodiff => autodiff_grad(kind, w.clone(), xb, &yb, settings.reg),
        };
        let value = l.into_scalar::<f64>();
        if !value.is_finite() {
            return Err(ClassicError::Diverged {
                iteration: it,
                loss: value,
                learning_rate: settings.learning_rate,
            });
        }
        losses.push(value);
        on_step(it, value);
        model.weight = Param::from_tensor(w - g.mul_scalar(lr));
    }
    Ok((model, losses))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{DType, TensorData};

    fn device() -> Device {
        Device::flex()
    }

    fn f64_tensor<const D: usize>(values: Vec<f64>, shape: [usize; D]) -> Tensor<D> {
        Tensor::from_data(TensorData::new(values, shape), (&device(), DType::F64))
    }

    fn data(seed: u64) -> (Tensor<2>, Tensor<2>, Tensor<1, Int>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (n, d, c) = (12, 7, 4);
        let x: Vec<f64> = (0..n * d).map(|_| rng.random_range(-1.0..1.0)).collect();
        let w: Vec<f64> = (0..(d + 1) * c)
            .map(|_| rng.random_range(-0.5..0.5))
            .collect();
        let y: Vec<i64> = (0..n).map(|i| (i % c) as i64).collect();
        (
            with_bias_column(f64_tensor(x, [n, d])),
            f64_tensor(w, [d + 1, c]),
            Tensor::from_data(TensorData::new(y, [n]), &device()),
        )
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f64> {
        t.into_data().try_to_vec_as::<f64>().unwrap()
    }

    #[test]
    fn bias_trick_equals_a_separate_bias() {
        let (x, w, _) = data(1);
        let [_, dp1] = x.dims();
        let c = w.dims()[1];
        let model = LinearClassifier {
            weight: Param::from_tensor(w.clone()),
        };
        let trick = values(model.scores(x.clone()));
        let plain_x = x.slice([0..12, 0..dp1 - 1]);
        let weights = w.clone().slice([0..dp1 - 1, 0..c]);
        let bias = w.slice([dp1 - 1..dp1, 0..c]);
        let separate = values(plain_x.matmul(weights) + bias);
        for (a, b) in trick.iter().zip(&separate) {
            assert!((a - b).abs() < 1e-12);
        }
    }

    #[test]
    fn analytic_loss_matches_the_differentiable_one_and_autodiff() {
        for kind in [LossKind::Svm, LossKind::Softmax] {
            let (x, w, y) = data(2);
            let (l, g) = loss_and_grad(kind, w.clone(), x.clone(), &y, 0.1);
            let l2 = loss(kind, w.clone(), x.clone(), &y, 0.1);
            assert!((l.into_scalar::<f64>() - l2.into_scalar::<f64>()).abs() < 1e-12);
            let (_, ga) = autodiff_grad(kind, w, x, &y, 0.1);
            for (a, b) in values(g).iter().zip(values(ga)) {
                // Burn's autodiff of these ops keeps some intermediates in f32.
                assert!(
                    (a - b).abs() <= 1e-4 * a.abs().max(1e-3),
                    "{kind:?}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn small_weights_give_softmax_loss_near_ln_c() {
        let (x, _, y) = data(3);
        let w = LinearClassifierConfig::new(7, 4)
            .with_init_std(1e-6)
            .init(&device())
            .weight
            .val();
        let l = loss(LossKind::Softmax, w.cast(DType::F64), x, &y, 0.0).into_scalar::<f64>();
        assert!((l - 4f64.ln()).abs() < 1e-3, "{l}");
    }

    #[test]
    fn sgd_learns_a_separable_problem_and_reports_divergence() {
        let device = device();
        // Class = which of the first 3 features is largest.
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let n = 300;
        let xs: Vec<f32> = (0..n * 3).map(|_| rng.random_range(0.0..1.0)).collect();
        let ys: Vec<i64> = xs
            .chunks(3)
            .map(|r| {
                (0..3)
                    .max_by(|&a, &b| r[a].partial_cmp(&r[b]).unwrap())
                    .unwrap() as i64
            })
            .collect();
        let x = with_bias_column(Tensor::from_data(TensorData::new(xs, [n, 3]), &device));
        let y = Tensor::<1, Int>::from_data(TensorData::new(ys.clone(), [n]), &device);
        for kind in [LossKind::Svm, LossKind::Softmax] {
            for grad in [GradMode::Analytic, GradMode::Autodiff] {
                let settings = SgdSettings {
                    learning_rate: 1.0,
                    reg: 0.0,
                    iterations: 300,
                    batch_size: 50,
                    grad,
                    lr_decay: 0.95,
                };
                let model = LinearClassifierConfig::new(3, 3).init(&device);
                let (model, losses) = train(model, kind, &x, &y, &settings, 0, |_, _| {}).unwrap();
                assert!(losses.last().unwrap() < &losses[0]);
                let p = model.predict(x.clone()).unwrap();
                let acc =
                    p.iter().zip(&ys).filter(|(a, b)| **a as i64 == **b).count() as f64 / n as f64;
                assert!(acc > 0.85, "{kind:?} {grad:?}: {acc}");
            }
        }
        let settings = SgdSettings {
            learning_rate: 1e30,
            reg: 1e30,
            iterations: 50,
            batch_size: 50,
            grad: GradMode::Analytic,
            lr_decay: 1.0,
        };
        let model = LinearClassifierConfig::new(3, 3).init(&device);
        let err = train(model, LossKind::Softmax, &x, &y, &settings, 0, |_, _| {}).unwrap_err();
        assert!(matches!(err, ClassicError::Diverged { .. }), "{err}");
    }

    #[test]
    fn templates_stretch_each_class_to_the_byte_range() {
        let device = burn::tensor::Device::flex();
        // Two classes over a 1-channel 1×2 image plus bias: class 0 weights (−1, 3), class 1 (2, 2).
        let w = Tensor::<2>::from_floats([[-1.0, 2.0], [3.0, 2.0], [9.0, 9.0]], &device);
        let model = LinearClassifier {
            weight: Param::from_tensor(w),
        };
        let images = model.templates([1, 1, 2]).unwrap();
        assert_eq!(images, vec![vec![0, 255], vec![0, 0]]);
        assert!(model.templates([3, 1, 2]).is_err());
        assert_eq!(LossKind::Svm.expected_initial_loss(10).0, 9.0);
        assert!((LossKind::Softmax.expected_initial_loss(10).0 - 10f64.ln()).abs() < 1e-12);
    }
}
