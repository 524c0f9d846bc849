//! Optimizers and learning-rate schedules from TOML, with PyTorch's meanings.
//!
//! ```toml
//! [optimizer]
//! name = "sgd"          # sgd | adam | adamw
//! momentum = 0.9
//! nesterov = true
//! weight_decay = 5e-4   # L2 penalty for sgd/adam, decoupled decay for adamw
//! grad_clip_norm = 5.0  # optional
//!
//! [schedule]
//! name = "cosine"       # constant | step | cosine | plateau | piecewise
//! warmup_iterations = 200
//! ```
//!
//! Differences from Burn's defaults that this module hides: SGD momentum has no dampening
//! (Burn's default is 0.1, PyTorch's 0), and Adam/AdamW use ε = 1e-8 (Burn's default 1e-5).

use burn::grad_clipping::GradientClippingConfig;
use burn::module::ParamGroup;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer, SgdConfig};
use serde::{Deserialize, Serialize};

use crate::{Result, TrainError};

/// Which update rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerName {
    /// Stochastic gradient descent, optionally with (Nesterov) momentum.
    #[default]
    Sgd,
    /// Adam with L2 penalty.
    Adam,
    /// Adam with decoupled weight decay.
    AdamW,
}

/// The `[optimizer]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerConfig {
    /// Update rule.
    pub name: OptimizerName,
    /// SGD momentum (0 for plain SGD).
    pub momentum: f64,
    /// Nesterov momentum (SGD, needs momentum > 0).
    pub nesterov: bool,
    /// L2 penalty (SGD, Adam) or decoupled weight decay (AdamW).
    pub weight_decay: f64,
    /// Adam β₁.
    pub beta1: f64,
    /// Adam β₂.
    pub beta2: f64,
    /// Adam ε.
    pub epsilon: f64,
    /// Clip the global gradient norm to this value.
    pub grad_clip_norm: Option<f64>,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            name: OptimizerName::Sgd,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            grad_clip_norm: None,
        }
    }
}

fn invalid(reason: String) -> TrainError {
    TrainError::Invalid(format!("[optimizer] {reason}"))
}

impl OptimizerConfig {
    /// Checks ranges and combinations.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(invalid(format!(
                "momentum {} must be in [0, 1)",
                self.momentum
            )));
        }
        if self.nesterov && (self.momentum == 0.0 || self.name != OptimizerName::Sgd) {
            return Err(invalid("nesterov needs sgd with momentum > 0".into()));
        }
        if self.momentum > 0.0 && self.name != OptimizerName::Sgd {
            return Err(invalid(format!(
                "momentum is for sgd; {:?} uses beta1",
                self.name
            )));
        }
        if self.weight_decay < 0.0 || !self.weight_decay.is_finite() {
            return Err(invalid(format!(
                "weight_decay {} must be >= 0",
                self.weight_decay
            )));
        }
        for (what, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(invalid(format!("{what} {b} must be in [0, 1)")));
            }
        }
        if self.epsilon <= 0.0 {
            return Err(invalid(format!(
                "epsilon {} must be positive",
                self.epsilon
            )));
        }
        if self.grad_clip_norm.is_some_and(|c| c <= 0.0) {
            return Err(invalid("grad_clip_norm must be positive".into()));
        }
        Ok(())
    }

    /// Builds Burn's optimizer for a whole module.
    pub fn build(&self) -> Result<ModuleOptimizer> {
        self.build_with_groups(&[])
    }

    /// Builds Burn's optimizer with one parameter group per `(group, lr_scale)`: the group's
    /// optimizer divides the weight decay by `lr_scale`, so that at a learning rate scaled by
    /// `lr_scale` its decay per step stays `learning rate × weight_decay` (airbench's scheme;
    /// with SGD the update equals scaling the group's gradients by `lr_scale`).
    pub fn build_with_groups(&self, groups: &[(ParamGroup, f64)]) -> Result<ModuleOptimizer> {
        self.validate()?;
        let clip = self
            .grad_clip_norm
            .map(|c| GradientClippingConfig::Norm(c as f32));
        let mut optimizer = match self.name {
            OptimizerName::Sgd => self.sgd(1.0).with_gradient_clipping(clip.clone()).init(),
            OptimizerName::Adam => self.adam(1.0).with_grad_clipping(clip.clone()).init(),
            OptimizerName::AdamW => self.adamw(1.0).with_grad_clipping(clip.clone()).init(),
        };
        for (group, lr_scale) in groups {
            if !(*lr_scale > 0.0 && lr_scale.is_finite()) {
                return Err(invalid(format!(
                    "learning-rate scale {lr_scale} must be positive"
                )));
            }
            let clipping = clip.as_ref().map(|c| c.init());
            let group = group.clone();
            optimizer = match self.name {
                OptimizerName::Sgd => {
                    optimizer.with_group(group, self.sgd(*lr_scale).build(), clipping)
                }
                OptimizerName::Adam => {
                    optimizer.with_group(group, self.adam(*lr_scale).build(), clipping)
                }
                OptimizerName::AdamW => {
                    optimizer.with_group(group, self.adamw(*lr_scale).build(), clipping)
                }
            };
        }
        Ok(optimizer)
    }

    /// L2 penalty of a group whose learning rate is scaled by `lr_scale`.
    fn decay(&self, lr_scale: f64) -> Option<WeightDecayConfig> {
        (self.weight_decay > 0.0)
            .then(|| WeightDecayConfig::new((self.weight_decay / lr_scale) as f32))
    }

    fn sgd(&self, lr_scale: f64) -> SgdConfig {
        SgdConfig::new()
            .with_momentum((self.momentum > 0.0).then(|| {
                MomentumConfig::new()
                    .with_momentum(self.momentum)
                    .with_dampening(0.0)
                    .with_nesterov(self.nesterov)
            }))
            .with_weight_decay(self.decay(lr_scale))
    }

    fn adam(&self, lr_scale: f64) -> AdamConfig {
        AdamConfig::new()
            .with_beta_1(self.beta1 as f32)
            .with_beta_2(self.beta2 as f32)
            .with_epsilon(self.epsilon as f32)
            .with_weight_decay(self.decay(lr_scale))
    }

    fn adamw(&self, lr_scale: f64) -> AdamWConfig {
        AdamWConfig::new()
            .with_beta_1(self.beta1 as f32)
            .with_beta_2(self.beta2 as f32)
            .with_epsilon(self.epsilon as f32)
            .with_weight_decay((self.weight_decay / lr_scale) as f32)
    }
}

/// Which learning-rate schedule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleName {
    /// The base rate throughout.
    #[default]
    Constant,
    /// Multiply by `gamma` every `step_epochs` epochs.
    Step,
    /// Cosine from the base rate to `min_lr` over the run.
    Cosine,
    /// Multiply by `factor` when validation has not improved for `patience` epochs.
    Plateau,
    /// Linear between `points` `[fraction of the run, factor of the base rate]`, e.g.
    /// airbench's `[[0, 0.2], [0.23, 1], [1, 0.07]]`.
    Piecewise,
}

/// The `[schedule]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Shape of the schedule.
    pub name: ScheduleName,
    /// Linear warm-up from 0 over this many iterations, before any schedule.
    pub warmup_iterations: usize,
    /// Step: epochs between decays.
    pub step_epochs: usize,
    /// Step: decay factor.
    pub gamma: f64,
    /// Cosine: final rate.
    pub min_lr: f64,
    /// Plateau: epochs without improvement before decaying.
    pub patience: usize,
    /// Plateau: decay factor.
    pub factor: f64,
    /// Piecewise: `[fraction of the run, factor]` corners, fractions rising from 0 to 1.
    pub points: Vec<[f64; 2]>,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            name: ScheduleName::Constant,
            warmup_iterations: 0,
            step_epochs: 10,
            gamma: 0.1,
            min_lr: 0.0,
            patience: 2,
            factor: 0.5,
            points: Vec::new(),
        }
    }
}

/// A learning-rate schedule over a run of known length, stepped per iteration.
#[derive(Clone, Debug)]
pub struct LrSchedule {
    config: ScheduleConfig,
    base: f64,
    total_iterations: usize,
    iterations_per_epoch: usize,
    plateau_scale: f64,
    best: Option<f64>,
    bad_epochs: usize,
}

impl LrSchedule {
    /// A validated schedule starting at `base_lr`.
    pub fn new(
        config: ScheduleConfig,
        base_lr: f64,
        total_iterations: usize,
        iterations_per_epoch: usize,
    ) -> Result<Self> {
        let bad = |r: &str| Err(TrainError::Invalid(format!("[schedule] {r}")));
        if !(base_lr > 0.0 && base_lr.is_finite()) {
            return bad("the learning rate must be positive");
        }
        if iterations_per_epoch == 0 || total_iterations == 0 {
            return bad("a run needs at least one iteration");
        }
        if config.name == ScheduleName::Step && (config.step_epochs == 0 || config.gamma <= 0.0) {
            return bad("step needs step_epochs > 0 and gamma > 0");
        }
        if config.name == ScheduleName::Plateau && !(config.factor > 0.0 && config.factor < 1.0) {
            return bad("plateau needs 0 < factor < 1");
        }
        if config.name == ScheduleName::Piecewise {
            let p = &config.points;
            let rising = p.windows(2).all(|w| w[0][0] < w[1][0]);
            if p.len() < 2 || p[0][0] != 0.0 || p[p.len() - 1][0] != 1.0 || !rising {
                return bad("piecewise points must run from fraction 0 to 1, rising");
            }
            if p.iter().any(|q| !(q[1] >= 0.0 && q[1].is_finite())) {
                return bad("piecewise factors must be finite and >= 0");
            }
        }
        if config.min_lr < 0.0 || config.min_lr > base_lr {
            return bad("min_lr must be between 0 and the learning rate");
        }
        Ok(Self {
            config,
            base: base_lr,
            total_iterations,
            iterations_per_epoch,
            plateau_scale: 1.0,
            best: None,
            bad_epochs: 0,
        })
    }

    /// The rate for (0-based) `iteration`.
    pub fn lr(&self, iteration: usize) -> f64 {
        let c = &self.config;
        let scheduled = match c.name {
            ScheduleName::Constant => self.base,
            ScheduleName::Step => {
                let epoch = iteration / self.iterations_per_epoch;
                self.base * c.gamma.powi((epoch / c.step_epochs) as i32)
            }
            ScheduleName::Cosine => {
                let t = (iteration as f64 / self.total_iterations as f64).min(1.0);
                c.min_lr + 0.5 * (self.base - c.min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
            }
            ScheduleName::Plateau => self.base * self.plateau_scale,
            ScheduleName::Piecewise => {
                let t = (iteration as f64 / self.total_iterations as f64).min(1.0);
                let p = &c.points;
                let i = p.partition_point(|q| q[0] <= t).clamp(1, p.len() - 1);
                let ([t0, f0], [t1, f1]) = (p[i - 1], p[i]);
                self.base * (f0 + (f1 - f0) * (t - t0) / (t1 - t0))
            }
        };
        if iteration < c.warmup_iterations {
            scheduled * (iteration + 1) as f64 / c.warmup_iterations as f64
        } else {
            scheduled
        }
    }

    /// Reports an epoch's validation loss (lower is better); the plateau schedule decays when
    /// it has not improved for `patience` epochs. Returns whether the rate was decayed.
    pub fn observe_validation(&mut self, loss: f64) -> bool {
        if self.config.name != ScheduleName::Plateau {
            return false;
        }
        if self.best.is_none_or(|b| loss < b) {
            self.best = Some(loss);
            self.bad_epochs = 0;
            return false;
        }
        self.bad_epochs += 1;
        if self.bad_epochs > self.config.patience {
            self.plateau_scale *= self.config.factor;
            self.bad_epochs = 0;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(config: ScheduleConfig) -> LrSchedule {
        LrSchedule::new(config, 0.1, 1000, 100).unwrap()
    }

    #[test]
    fn step_cosine_and_warmup() {
        let step = schedule(ScheduleConfig {
            name: ScheduleName::Step,
            step_epochs: 3,
            gamma: 0.5,
            ..Default::default()
        });
        assert_eq!(step.lr(299), 0.1);
        assert!((step.lr(300) - 0.05).abs() < 1e-12);
        assert!((step.lr(650) - 0.025).abs() < 1e-12);
        let cosine = schedule(ScheduleConfig {
            name: ScheduleName::Cosine,
            warmup_iterations: 10,
            min_lr: 0.001,
            ..Default::default()
        });
        assert!((cosine.lr(0) - 0.1 * 0.1).abs() < 1e-4, "{}", cosine.lr(0));
        assert!((cosine.lr(500) - (0.001 + 0.5 * 0.099)).abs() < 1e-12);
        assert!((cosine.lr(1000) - 0.001).abs() < 1e-12);
        assert!(cosine.lr(100) > cosine.lr(600));
        let triangle = schedule(ScheduleConfig {
            name: ScheduleName::Piecewise,
            points: vec![[0.0, 0.2], [0.25, 1.0], [1.0, 0.1]],
            ..Default::default()
        });
        assert!((triangle.lr(0) - 0.02).abs() < 1e-12);
        assert!((triangle.lr(125) - 0.06).abs() < 1e-12);
        assert!((triangle.lr(250) - 0.1).abs() < 1e-12);
        assert!((triangle.lr(625) - 0.055).abs() < 1e-12);
        assert!((triangle.lr(1000) - 0.01).abs() < 1e-12);
    }

    #[test]
    fn plateau_halves_after_patience() {
        let mut p = schedule(ScheduleConfig {
            name: ScheduleName::Plateau,
            patience: 1,
            factor: 0.5,
            ..Default::default()
        });
        assert!(!p.observe_validation(1.0));
        assert!(!p.observe_validation(0.9));
        assert!(!p.observe_validation(0.95));
        assert!(p.observe_validation(0.92));
        assert!((p.lr(0) - 0.05).abs() < 1e-12);
    }

    #[test]
    fn bad_settings_are_rejected() {
        let bad = |c: ScheduleConfig| LrSchedule::new(c, 0.1, 10, 5).is_err();
        assert!(bad(ScheduleConfig {
            name: ScheduleName::Plateau,
            factor: 1.5,
            ..Default::default()
        }));
        assert!(bad(ScheduleConfig {
            name: ScheduleName::Step,
            step_epochs: 0,
            ..Default::default()
        }));
        assert!(bad(ScheduleConfig {
            name: ScheduleName::Piecewise,
            points: vec![[0.0, 1.0], [0.5, 0.5]],
            ..Default::default()
        }));
        assert!(bad(ScheduleConfig {
            min_lr: 1.0,
            ..Default::default()
        }));
        let opt = |c: OptimizerConfig| c.validate().is_err();
        assert!(opt(OptimizerConfig {
            nesterov: true,
            ..Default::default()
        }));
        assert!(opt(OptimizerConfig {
            name: OptimizerName::Adam,
            momentum: 0.9,
            ..Default::default()
        }));
        assert!(opt(OptimizerConfig {
            beta2: 1.0,
            ..Default::default()
        }));
        let parsed: OptimizerConfig =
            toml::from_str("name = \"adamw\"\nweight_decay = 0.05\n").unwrap();
        assert_eq!(parsed.name, OptimizerName::AdamW);
        assert!(toml::from_str::<OptimizerConfig>("name = \"rmsprop\"\n").is_err());
    }

    #[test]
    fn every_optimizer_reduces_a_quadratic() {
        use burn::module::{Module, Param};
        use burn::optim::GradientsParams;
        use burn::tensor::{Device, Tensor};

        #[derive(Module, Debug)]
        struct Point {
            x: Param<Tensor<1>>,
        }

        for (name, momentum, nesterov, lr) in [
            (OptimizerName::Sgd, 0.0, false, 0.1),
            (OptimizerName::Sgd, 0.9, true, 0.05),
            (OptimizerName::Adam, 0.0, false, 0.1),
            (OptimizerName::AdamW, 0.0, false, 0.1),
        ] {
            let device = Device::flex().autodiff();
            let config = OptimizerConfig {
                name,
                momentum,
                nesterov,
                grad_clip_norm: Some(10.0),
                ..Default::default()
            };
            let mut optim = config.build().unwrap();
            let mut p = Point {
                x: Param::from_tensor(Tensor::from_floats([3.0, -2.0], &device)),
            };
            for _ in 0..100 {
                let loss = p.x.val().powi_scalar(2).sum();
                let grads = GradientsParams::from_grads(loss.backward(), &p);
                p = optim.step(lr, p, grads);
            }
            let v: Vec<f32> = p.x.val().into_data().try_to_vec_as().unwrap();
            assert!(v.iter().all(|x| x.abs() < 0.3), "{name:?}: {v:?}");
        }
    }
}
