//! Parameters by name: dotted paths such as `groups.0.norm1.beta`, used to give parameter groups
//! their own learning-rate scale, freeze parameters after some epochs, and monitor updates.

use std::collections::HashMap;

use burn::module::{Flag, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

/// One float tensor of a module.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedParam {
    /// Dotted path of field names, e.g. `convs.0.weight`.
    pub path: String,
    /// Burn's id of the tensor.
    pub id: ParamId,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Whether the optimizer updates it (false for frozen parameters and running statistics).
    pub trainable: bool,
    /// Type of the module that declares it, as Burn names it (e.g. `Struct:BatchNorm`).
    pub owner: String,
}

#[derive(Default)]
struct Names {
    path: Vec<String>,
    owners: Vec<String>,
    found: Vec<NamedParam>,
}

impl ModuleVisitor for Names {
    // An enum module's variant is not part of a path (`layer1.0.conv1.weight`, not
    // `layer1.0.Basic.conv1.weight`), as burn-store's PyTorch and safetensors names have it, so
    // a network wrapped in an enum keeps the paths configs name.
    fn enter_module(&mut self, name: &str, container_type: &str) {
        if !container_type.starts_with("Enum:") {
            self.path.push(name.to_string());
            self.owners.push(container_type.to_string());
        }
    }
    fn exit_module(&mut self, _name: &str, container_type: &str) {
        if !container_type.starts_with("Enum:") {
            self.path.pop();
            self.owners.pop();
        }
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        // The container type of the innermost field is the struct that declares the tensor.
        let owner = self.owners.last().cloned().unwrap_or_default();
        self.found.push(NamedParam {
            path: self.path.join("."),
            id: param.id,
            shape: param.lazy_shape().dims::<D>().to_vec(),
            trainable: param.is_require_grad(),
            owner,
        });
    }
}

/// Every float tensor of `module` (parameters and running statistics) with its dotted path.
pub fn named_params<M: Module>(module: &M) -> Vec<NamedParam> {
    let mut names = Names::default();
    module.visit(&mut names);
    names.found
}

/// Ids of the trainable tensors whose path equals `pattern` or starts with `pattern.`
/// (`"whiten"` matches `whiten.weight` and `whiten.bias`).
pub fn matching(params: &[NamedParam], pattern: &str) -> Vec<ParamId> {
    params
        .iter()
        .filter(|p| {
            p.trainable
                && (p.path == pattern
                    || p.path
                        .strip_prefix(pattern)
                        .is_some_and(|rest| rest.starts_with('.')))
        })
        .map(|p| p.id)
        .collect()
}

/// Ids of the trainable shifts (`beta`) of every batch norm.
pub fn norm_biases(params: &[NamedParam]) -> Vec<ParamId> {
    params
        .iter()
        .filter(|p| p.trainable && p.owner.contains("BatchNorm") && p.path.ends_with("beta"))
        .map(|p| p.id)
        .collect()
}

/// Multiplies the gradients of `ids` by `factor`. With SGD (momentum, L2 penalty) this scales
/// those parameters' learning rate but not their weight decay, airbench's "bias scaler".
pub fn scale_gradients(
    grads: &mut GradientsParams,
    params: &[NamedParam],
    ids: &[ParamId],
    factor: f64,
) {
    for p in params.iter().filter(|p| ids.contains(&p.id)) {
        macro_rules! scale {
            ($d:literal) => {
                if let Some(g) = grads.remove::<$d>(p.id) {
                    grads.register::<$d>(p.id, g.mul_scalar(factor));
                }
            };
        }
        match p.shape.len() {
            1 => scale!(1),
            2 => scale!(2),
            3 => scale!(3),
            4 => scale!(4),
            _ => {}
        }
    }
}

/// Drops the gradients of `ids`, so the optimizer leaves those parameters (and their momentum)
/// alone: freezing without rebuilding the module.
pub fn drop_gradients(grads: &mut GradientsParams, params: &[NamedParam], ids: &[ParamId]) {
    for p in params.iter().filter(|p| ids.contains(&p.id)) {
        match p.shape.len() {
            1 => drop(grads.remove::<1>(p.id)),
            2 => drop(grads.remove::<2>(p.id)),
            3 => drop(grads.remove::<3>(p.id)),
            4 => drop(grads.remove::<4>(p.id)),
            _ => {}
        }
    }
}

/// Puts every batch norm of `module` in inference behaviour while training: it normalises with
/// its running statistics and stops updating them, and its scale and shift still train. The usual
/// way to fine-tune a pretrained network on a small set (batch statistics of a few images of
/// another domain would replace the ones it learned).
pub fn freeze_batch_norm_statistics<M: Module>(module: M) -> M {
    #[derive(Default)]
    struct Statistics {
        containers: Vec<String>,
    }
    impl ModuleMapper for Statistics {
        fn enter_module(&mut self, _name: &str, container_type: &str) {
            self.containers.push(container_type.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.containers.pop();
        }
        fn map_flag(&mut self, flag: Param<Flag>) -> Param<Flag> {
            let in_batch_norm = self
                .containers
                .iter()
                .rev()
                .find(|c| c.starts_with("Struct:"))
                .is_some_and(|c| c.contains("BatchNorm"));
            if in_batch_norm {
                flag.with_value(false)
            } else {
                flag
            }
        }
    }
    module.map(&mut Statistics::default())
}

/// Current values of the given tensors (detached, flattened), keyed by id.
pub fn snapshot<M: Module>(module: &M, ids: &[ParamId]) -> HashMap<ParamId, Tensor<1>> {
    struct Take<'a> {
        ids: &'a [ParamId],
        out: HashMap<ParamId, Tensor<1>>,
    }
    impl ModuleVisitor for Take<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.ids.contains(&param.id) {
                let v = param.val().detach();
                let n = v.shape().num_elements();
                self.out.insert(param.id, v.reshape([n]));
            }
        }
    }
    let mut take = Take {
        ids,
        out: HashMap::new(),
    };
    module.visit(&mut take);
    take.out
}

/// Replaces tensors of a module by new values (same shapes) keyed by id, keeping trainability.
pub(crate) struct SetValues<'a> {
    pub values: &'a HashMap<ParamId, Tensor<1>>,
}

impl ModuleMapper for SetValues<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(value) = self.values.get(&param.id) else {
            return param;
        };
        let trained = param.is_require_grad();
        param
            .map(|t| value.clone().reshape(t.shape()).detach())
            .set_require_grad(trained)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
    use burn::tensor::Device;

    #[derive(Module, Debug)]
    struct Net {
        fc: Linear,
        norm: BatchNorm,
    }

    fn net(device: &Device) -> Net {
        Net {
            fc: LinearConfig::new(3, 2).init(device),
            norm: BatchNormConfig::new(2).init(device),
        }
    }

    #[test]
    fn frozen_statistics_normalise_with_running_values_and_keep_scale_trainable() {
        use burn::tensor::Distribution;
        let device = Device::flex().autodiff();
        let frozen = freeze_batch_norm_statistics(net(&device).train());
        let x = Tensor::<2>::random([8, 2], Distribution::Normal(3.0, 2.0), &device);
        // Fresh running statistics (mean 0, variance 1): inference behaviour is the identity.
        let y = frozen.norm.forward(x.clone());
        let (a, b) = (
            y.clone().into_data().try_to_vec::<f32>().unwrap(),
            x.clone().into_data().try_to_vec::<f32>().unwrap(),
        );
        assert!(a.iter().zip(&b).all(|(u, v)| (u - v).abs() < 1e-4), "{a:?}");
        let before = frozen.norm.running_mean.value().into_data();
        let grads = y.sum().backward();
        assert!(frozen.norm.gamma.grad(&grads).is_some());
        frozen
            .norm
            .running_mean
            .value()
            .into_data()
            .assert_eq(&before, true);
        // The batch-norm-free parts keep training behaviour; plain training normalises batches.
        let trained = net(&device).train().norm.forward(x);
        let mean: f32 = trained.mean().into_scalar();
        assert!(mean.abs() < 1e-4, "{mean}");
    }

    #[test]
    fn lr_groups_take_everything_but_their_exceptions() {
        use crate::trainer::LrGroup;
        let device = Device::flex().autodiff();
        let params = named_params(&net(&device));
        let id = |path: &str| params.iter().find(|p| p.path == path).unwrap().id;
        let backbone = LrGroup {
            param: String::new(),
            except: vec!["fc".into()],
            lr_scale: 0.1,
        };
        let ids = backbone.ids(&params);
        assert_eq!(
            ids.len(),
            2,
            "the norm's gamma and beta (running stats are not trained)"
        );
        assert!(ids.contains(&id("norm.gamma")) && !ids.contains(&id("fc.weight")));
        let head = LrGroup {
            param: "fc".into(),
            except: Vec::new(),
            lr_scale: 2.0,
        };
        assert_eq!(head.ids(&params), vec![id("fc.weight"), id("fc.bias")]);
    }

    #[test]
    fn paths_owners_and_matching() {
        let device = Device::flex().autodiff();
        let n = net(&device);
        let params = named_params(&n);
        let paths: Vec<&str> = params.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"fc.weight"), "{paths:?}");
        assert!(paths.contains(&"norm.beta"), "{paths:?}");
        let running = params
            .iter()
            .find(|p| p.path == "norm.running_mean")
            .unwrap();
        assert!(!running.trainable);
        assert_eq!(matching(&params, "fc").len(), 2);
        assert_eq!(matching(&params, "f").len(), 0);
        assert_eq!(norm_biases(&params), vec![n.norm.beta.id]);
    }

    #[test]
    fn scaling_and_dropping_gradients() {
        let device = Device::flex().autodiff();
        let n = net(&device);
        let params = named_params(&n);
        let x = Tensor::<2>::ones([4, 3], &device);
        let loss = n.norm.forward(n.fc.forward(x)).mul_scalar(2.0).sum() + n.fc.weight.val().sum();
        let mut grads = GradientsParams::from_grads(loss.backward(), &n);
        let before = grads.get::<2>(n.fc.weight.id).unwrap();
        let w = [n.fc.weight.id];
        scale_gradients(&mut grads, &params, &w, 3.0);
        let after = grads.get::<2>(n.fc.weight.id).unwrap();
        let diff: f32 = (after - before.mul_scalar(3.0)).abs().max().into_scalar();
        assert!(diff < 1e-6);
        drop_gradients(&mut grads, &params, &w);
        assert!(grads.get::<2>(n.fc.weight.id).is_none());
        assert!(grads.get::<1>(n.norm.beta.id).is_some());
    }
}
