//! Lookahead by weight averaging (hlb-cifar10 / airbench): every few steps an exponential moving
//! average of the weights is updated and the network is reset to it. The average's decay grows
//! with training progress, `decay · (step / total)^power`, so early training moves freely and the
//! end averages strongly; at the end of the run the network takes the average.

use std::collections::HashMap;
use std::path::Path;

use burn::module::{Module, ParamId};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::params::{SetValues, named_params, snapshot};
use crate::{Result, load_module, save_module};

/// The `[train.lookahead]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LookaheadSettings {
    /// Steps between updates.
    pub every: usize,
    /// Largest decay of the average, reached at the end of the run.
    pub decay: f64,
    /// How fast the decay grows with training progress.
    pub power: f64,
}

impl Default for LookaheadSettings {
    /// airbench94's values: every 5 steps, decay 0.95⁵, cubic growth.
    fn default() -> Self {
        Self {
            every: 5,
            decay: 0.95f64.powi(5),
            power: 3.0,
        }
    }
}

/// The moving average of every float tensor of a network (running statistics included).
pub struct Lookahead {
    settings: LookaheadSettings,
    ids: Vec<ParamId>,
    average: HashMap<ParamId, Tensor<1>>,
}

impl Lookahead {
    /// Starts the average at `model`'s current values.
    pub fn new<M: Module>(settings: LookaheadSettings, model: &M) -> Result<Self> {
        if settings.every == 0 || !(0.0..=1.0).contains(&settings.decay) || settings.power < 0.0 {
            return Err(crate::TrainError::Invalid(format!(
                "[train.lookahead] needs every > 0, 0 <= decay <= 1 and power >= 0, got {settings:?}"
            )));
        }
        let ids: Vec<ParamId> = named_params(model).iter().map(|p| p.id).collect();
        let average = snapshot(model, &ids);
        Ok(Self {
            settings,
            ids,
            average,
        })
    }

    /// After optimizer step number `step` (1-based) of `total`: every `every` steps, moves the
    /// average towards the network and sets the network to the average.
    pub fn after_step<M: Module>(&mut self, model: M, step: usize, total: usize) -> M {
        if !step.is_multiple_of(self.settings.every) {
            return model;
        }
        let progress = (step as f64 / total.max(1) as f64).min(1.0);
        self.update(
            model,
            self.settings.decay * progress.powf(self.settings.power),
        )
    }

    /// The network set to the average (the end of the run).
    pub fn finish<M: Module>(&mut self, model: M) -> M {
        self.update(model, 1.0)
    }

    fn update<M: Module>(&mut self, model: M, decay: f64) -> M {
        let current = snapshot(&model, &self.ids);
        for (id, value) in current {
            let averaged = match self.average.remove(&id) {
                Some(avg) => avg.mul_scalar(decay) + value.mul_scalar(1.0 - decay),
                None => value,
            };
            self.average.insert(id, averaged);
        }
        model.map(&mut SetValues {
            values: &self.average,
        })
    }

    /// Saves the average as a copy of `model` (burnpack) for resuming.
    pub fn save<M: Module>(&self, model: &M, path: &Path) -> Result<()> {
        let averaged = model.clone().map(&mut SetValues {
            values: &self.average,
        });
        save_module(&averaged, path)
    }

    /// Restores the average saved by [`Lookahead::save`]; `model` gives the structure.
    pub fn load<M: Module>(settings: LookaheadSettings, model: &M, path: &Path) -> Result<Self> {
        let averaged = load_module(model.clone(), path)?;
        Self::new(settings, &averaged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::tensor::Device;

    #[derive(Module, Debug)]
    struct Point {
        x: Param<Tensor<1>>,
    }

    fn value(p: &Point) -> f32 {
        p.x.val().into_scalar()
    }

    #[test]
    fn averages_every_few_steps_with_growing_decay() {
        let device = Device::flex().autodiff();
        let mut p = Point {
            x: Param::from_tensor(Tensor::from_floats([0.0], &device)),
        };
        let settings = LookaheadSettings {
            every: 2,
            decay: 0.5,
            power: 1.0,
        };
        let mut la = Lookahead::new(settings, &p).unwrap();
        let moved = HashMap::from([(p.x.id, Tensor::from_floats([4.0], &device))]);
        p = p.map(&mut SetValues { values: &moved });
        // Step 1: not an update step.
        p = la.after_step(p, 1, 4);
        assert_eq!(value(&p), 4.0);
        // Step 2 of 4: decay 0.5 · 0.5 = 0.25 → 0.25·0 + 0.75·4 = 3.
        p = la.after_step(p, 2, 4);
        assert!((value(&p) - 3.0).abs() < 1e-6);
        assert!(p.x.is_require_grad());
        let p = la.finish(p);
        assert!((value(&p) - 3.0).abs() < 1e-6);
        assert!(
            Lookahead::new(
                LookaheadSettings {
                    every: 0,
                    ..Default::default()
                },
                &p
            )
            .is_err()
        );
    }
}
