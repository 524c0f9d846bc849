//! The gradient policy of a run: which parameters learn, at which rate, with which optimizer
//! state. Learning-rate groups (`norm_bias_lr_scale`, `[[train.lr_groups]]`) become Burn
//! parameter groups ([`ParamGroup`]) with their own optimizer, so they work with every update
//! rule; freeze rules drop gradients once their epoch has come.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::{Module, ParamGroup, ParamId};
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::optim::{GradientsParams, ModuleOptimizer};

use super::settings::TrainSettings;
use crate::params::{NamedParam, drop_gradients, matching, named_params, norm_biases};
use crate::{Result, TrainError};

/// Optimizer, learning-rate groups and freeze rules of one run.
pub(crate) struct GradientPolicy {
    optimizer: ModuleOptimizer,
    /// Parameters whose rate is the base rate times the factor, one group per distinct factor.
    lr_groups: Vec<(ParamGroup, f64)>,
    /// `(epochs before freezing, parameters)`.
    freezes: Vec<(usize, Vec<ParamId>)>,
    params: Vec<NamedParam>,
}

impl GradientPolicy {
    /// The policy of `settings` for `model`; names a rule that matches no trainable parameter.
    pub fn new<M: Module>(model: &M, settings: &TrainSettings) -> Result<Self> {
        let params = named_params(model);
        let lr_groups = lr_scales(&params, settings)?;
        let optimizer = settings.optimizer.build_with_groups(&lr_groups)?;
        let mut freezes = Vec::new();
        for rule in &settings.freeze {
            let ids = matching(&params, &rule.param);
            if ids.is_empty() {
                return Err(TrainError::Invalid(format!(
                    "[[train.freeze]] param '{}' names no trainable parameter; they are: {}",
                    rule.param,
                    trainable_names(&params)
                )));
            }
            freezes.push((rule.after_epochs, ids));
        }
        Ok(Self {
            optimizer,
            lr_groups,
            freezes,
            params,
        })
    }

    /// One update of `model` with `grads` at base rate `lr`, in (0-based) `epoch`.
    pub fn step<M: Module>(
        &mut self,
        lr: f64,
        model: M,
        mut grads: GradientsParams,
        epoch: usize,
    ) -> M {
        for (after, ids) in &self.freezes {
            if epoch >= *after {
                drop_gradients(&mut grads, &self.params, ids);
            }
        }
        if self.lr_groups.is_empty() {
            return self.optimizer.step(lr, model, grads);
        }
        let mut rates = ModuleLrScheduler::new(lr);
        for (group, scale) in &self.lr_groups {
            rates = rates.with_group(group.clone(), lr * scale);
        }
        self.optimizer.step(rates.step(), model, grads)
    }

    /// Writes the optimizer state (momenta, Adam moments) to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.optimizer.save(path).map_err(|e| TrainError::Format {
            path: path.to_path_buf(),
            reason: format!("cannot save optimizer state: {e:?}"),
        })
    }

    /// Restores the optimizer state saved by [`save`](Self::save).
    pub fn load(mut self, path: &Path) -> Result<Self> {
        self.optimizer = self.optimizer.load(path).map_err(|e| TrainError::Format {
            path: path.to_path_buf(),
            reason: format!("cannot load optimizer state: {e:?}"),
        })?;
        Ok(self)
    }
}

fn trainable_names(params: &[NamedParam]) -> String {
    let names: Vec<&str> = params
        .iter()
        .filter(|p| p.trainable)
        .map(|p| p.path.as_str())
        .collect();
    names.join(", ")
}

/// Each trainable parameter's learning-rate factor (the product of the scales of the groups it
/// is in), gathered into one [`ParamGroup`] per factor other than 1.
fn lr_scales(params: &[NamedParam], settings: &TrainSettings) -> Result<Vec<(ParamGroup, f64)>> {
    let mut scale: BTreeMap<ParamId, f64> = BTreeMap::new();
    let mut multiply = |ids: Vec<ParamId>, factor: f64| {
        for id in ids {
            *scale.entry(id).or_insert(1.0) *= factor;
        }
    };
    if settings.norm_bias_lr_scale != 1.0 {
        multiply(norm_biases(params), settings.norm_bias_lr_scale);
    }
    for group in &settings.lr_groups {
        let ids = group.ids(params);
        if ids.is_empty() {
            return Err(TrainError::Invalid(format!(
                "[[train.lr_groups]] param '{}' (except {:?}) names no trainable parameter; they are: {}",
                group.param,
                group.except,
                trainable_names(params)
            )));
        }
        multiply(ids, group.lr_scale);
    }
    let mut by_factor: Vec<(f64, Vec<ParamId>)> = Vec::new();
    for (id, factor) in scale {
        if factor == 1.0 {
            continue;
        }
        match by_factor.iter_mut().find(|(f, _)| *f == factor) {
            Some((_, ids)) => ids.push(id),
            None => by_factor.push((factor, vec![id])),
        }
    }
    Ok(by_factor
        .into_iter()
        .map(|(factor, ids)| (ParamGroup::from_ids(ids), factor))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::{OptimizerConfig, OptimizerName};
    use crate::trainer::{FreezeRule, LrGroup};
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::{Device, Tensor};

    #[derive(Module, Debug)]
    struct TwoLayers {
        body: Linear,
        head: Linear,
    }

    fn net(device: &Device) -> TwoLayers {
        TwoLayers {
            body: LinearConfig::new(3, 3).init(device),
            head: LinearConfig::new(3, 2).init(device),
        }
    }

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_to_vec().unwrap()
    }

    /// One step of `settings` on a fixed loss; the body's and head's weights before and after,
    /// and their gradients.
    fn one_step(settings: &TrainSettings) -> [Vec<f32>; 6] {
        let device = Device::flex().autodiff();
        device.seed(3);
        let model = net(&device);
        let x = Tensor::<2>::from_floats([[1.0, -2.0, 0.5], [0.3, 0.7, -1.1]], &device);
        let loss = model
            .head
            .forward(model.body.forward(x))
            .powf_scalar(2.0)
            .sum();
        let grads = loss.backward();
        let g_body = values(model.body.weight.grad(&grads).unwrap());
        let g_head = values(model.head.weight.grad(&grads).unwrap());
        let grads = GradientsParams::from_grads(grads, &model);
        let before = (
            values(model.body.weight.val()),
            values(model.head.weight.val()),
        );
        let mut policy = GradientPolicy::new(&model, settings).unwrap();
        let after = policy.step(0.1, model, grads, 0);
        [
            before.0,
            values(after.body.weight.val()),
            g_body,
            before.1,
            values(after.head.weight.val()),
            g_head,
        ]
    }

    fn assert_close(a: f32, b: f32) {
        assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "{a} vs {b}");
    }

    #[test]
    fn a_group_scales_the_rate_and_keeps_the_decay_per_step() {
        let (lr, wd, scale) = (0.1f32, 0.05f32, 4.0f32);
        let settings = TrainSettings {
            optimizer: OptimizerConfig {
                weight_decay: wd as f64,
                ..Default::default()
            },
            lr_groups: vec![LrGroup {
                param: "body".into(),
                except: vec![],
                lr_scale: scale as f64,
            }],
            ..Default::default()
        };
        let [w0, w1, g, h0, h1, gh] = one_step(&settings);
        // Plain SGD with an L2 penalty: w − lr·s·(g + wd/s·w) = w − lr·s·g − lr·wd·w.
        for i in 0..w0.len() {
            assert_close(w1[i], w0[i] - lr * scale * g[i] - lr * wd * w0[i]);
        }
        for i in 0..h0.len() {
            assert_close(h1[i], h0[i] - lr * (gh[i] + wd * h0[i]));
        }
    }

    #[test]
    fn groups_work_with_adam_and_frozen_parameters_stay() {
        let settings = TrainSettings {
            optimizer: OptimizerConfig {
                name: OptimizerName::Adam,
                ..Default::default()
            },
            lr_groups: vec![LrGroup {
                param: String::new(),
                except: vec!["head".into()],
                lr_scale: 0.01,
            }],
            ..Default::default()
        };
        let [w0, w1, _, h0, h1, _] = one_step(&settings);
        // Adam's first step moves every weight by about its rate (sign of the gradient).
        let moved = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max)
        };
        assert!((moved(&h0, &h1) - 0.1).abs() < 1e-3, "{}", moved(&h0, &h1));
        assert!(
            (moved(&w0, &w1) - 0.001).abs() < 1e-5,
            "{}",
            moved(&w0, &w1)
        );

        let frozen = TrainSettings {
            freeze: vec![FreezeRule {
                param: "head".into(),
                after_epochs: 0,
            }],
            ..Default::default()
        };
        let [w0, w1, _, h0, h1, _] = one_step(&frozen);
        assert_eq!(h0, h1);
        assert_ne!(w0, w1);
    }

    #[test]
    fn rules_that_match_nothing_name_the_parameters() {
        let device = Device::flex().autodiff();
        let model = net(&device);
        for settings in [
            TrainSettings {
                lr_groups: vec![LrGroup {
                    param: "neck".into(),
                    except: vec![],
                    lr_scale: 2.0,
                }],
                ..Default::default()
            },
            TrainSettings {
                freeze: vec![FreezeRule {
                    param: "neck".into(),
                    after_epochs: 1,
                }],
                ..Default::default()
            },
        ] {
            let err = GradientPolicy::new(&model, &settings)
                .err()
                .expect("an unknown parameter is an error")
                .to_string();
            assert!(
                err.contains("'neck'") && err.contains("head.weight"),
                "{err}"
            );
        }
    }
}
