//! Update-to-weight ratios: how far one optimizer step moves each weight tensor relative to its
//! size, `‖Δw‖ / ‖w‖`. The course's rule of thumb puts healthy values near 1e-3; far below, the
//! learning rate is too small, far above, too large.

use std::collections::{BTreeMap, HashMap};

use burn::module::{Module, ParamId};
use burn::tensor::Tensor;

use crate::params::{NamedParam, named_params, snapshot};

/// Ratios outside this range are flagged.
pub const HEALTHY_RATIO: (f64, f64) = (1e-4, 1e-2);

/// Measures update ratios of every trainable weight tensor (two or more dimensions) every
/// `every` steps and averages them (geometrically) per epoch.
pub struct UpdateMonitor {
    every: usize,
    groups: Vec<NamedParam>,
    log_sums: BTreeMap<String, (f64, usize)>,
}

impl UpdateMonitor {
    /// A monitor for `model`'s weights; `every == 0` disables it.
    pub fn new<M: Module>(model: &M, every: usize) -> Self {
        let groups = named_params(model)
            .into_iter()
            .filter(|p| p.trainable && p.shape.len() >= 2)
            .collect();
        Self {
            every,
            groups,
            log_sums: BTreeMap::new(),
        }
    }

    /// Before optimizer step `iteration` (0-based): the weights to compare against, when this
    /// step is measured.
    pub fn before<M: Module>(
        &self,
        model: &M,
        iteration: usize,
    ) -> Option<HashMap<ParamId, Tensor<1>>> {
        if self.every == 0 || !iteration.is_multiple_of(self.every) || self.groups.is_empty() {
            return None;
        }
        let ids: Vec<ParamId> = self.groups.iter().map(|g| g.id).collect();
        Some(snapshot(model, &ids))
    }

    /// After the step: records `‖w_after − w_before‖ / ‖w_before‖` for each weight.
    pub fn after<M: Module>(&mut self, model: &M, before: Option<HashMap<ParamId, Tensor<1>>>) {
        let Some(before) = before else { return };
        let ids: Vec<ParamId> = self.groups.iter().map(|g| g.id).collect();
        let after = snapshot(model, &ids);
        let mut sums = Vec::new();
        let mut names = Vec::new();
        for g in &self.groups {
            if let (Some(old), Some(new)) = (before.get(&g.id), after.get(&g.id)) {
                sums.push((new.clone() - old.clone()).powi_scalar(2).sum());
                sums.push(old.clone().powi_scalar(2).sum());
                names.push(g.path.clone());
            }
        }
        if sums.is_empty() {
            return;
        }
        let Ok(values) = Tensor::cat(sums, 0).into_data().try_to_vec_as::<f64>() else {
            return;
        };
        for (name, pair) in names.into_iter().zip(values.chunks_exact(2)) {
            let ratio = (pair[0] / pair[1].max(1e-30)).sqrt();
            if ratio > 0.0 && ratio.is_finite() {
                let entry = self.log_sums.entry(name).or_insert((0.0, 0));
                entry.0 += ratio.log10();
                entry.1 += 1;
            }
        }
    }

    /// The epoch's geometric-mean ratio per weight, and a fresh start for the next epoch.
    pub fn take_epoch(&mut self) -> BTreeMap<String, f64> {
        std::mem::take(&mut self.log_sums)
            .into_iter()
            .map(|(name, (sum, n))| (name, 10f64.powf(sum / n as f64)))
            .collect()
    }
}

/// Names and ratios outside [`HEALTHY_RATIO`].
pub fn flagged(ratios: &BTreeMap<String, f64>) -> Vec<(String, f64)> {
    ratios
        .iter()
        .filter(|(_, r)| **r < HEALTHY_RATIO.0 || **r > HEALTHY_RATIO.1)
        .map(|(n, r)| (n.clone(), *r))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::tensor::Device;

    #[derive(Module, Debug)]
    struct Layer {
        w: Param<Tensor<2>>,
        b: Param<Tensor<1>>,
    }

    #[test]
    fn measures_the_relative_step_of_weights_only() {
        let device = Device::flex().autodiff();
        let layer = Layer {
            w: Param::from_tensor(Tensor::from_floats([[3.0, 4.0]], &device)),
            b: Param::from_tensor(Tensor::from_floats([1.0], &device)),
        };
        let mut monitor = UpdateMonitor::new(&layer, 2);
        assert!(monitor.before(&layer, 1).is_none());
        let before = monitor.before(&layer, 2);
        // ‖Δw‖ = ‖(0.03, 0.04)‖ = 0.05, ‖w‖ = 5 → 1e-2.
        let stepped = Layer {
            w: layer.w.clone().map(|t| t.mul_scalar(1.01)),
            b: layer.b.clone(),
        };
        monitor.after(&stepped, before);
        let ratios = monitor.take_epoch();
        assert_eq!(ratios.len(), 1);
        assert!((ratios["w"] - 1e-2).abs() < 1e-6, "{ratios:?}");
        assert!(flagged(&ratios).is_empty());
        assert!(monitor.take_epoch().is_empty());
        let big = BTreeMap::from([("w".to_string(), 0.5)]);
        assert_eq!(flagged(&big).len(), 1);
    }
}
