//! Numerical gradient checking with centred finite differences in f64.
//!
//! [`check_function`] compares an analytic gradient of any scalar function of one tensor;
//! [`check_module`] compares Burn's autodiff gradients of every float parameter of any module.
//! The relative error is `|a − n| / max(1e-8, |a| + |n|)`; a report carries the largest.
//!
//! Non-differentiable points (the hinge's kinks, ReLU at 0) make the one-sided slopes
//! `(f(x+h) − f(x))/h` and `(f(x) − f(x−h))/h` differ: a coordinate where they disagree by more
//! than `kink_tolerance · max(1, |fwd| + |bwd|)` (a smooth function's disagreement is only
//! `h·|f''|`) is counted as a kink and skipped, and sampling draws another coordinate in its
//! place.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{DType, Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::{ClassicError, Result};

/// How a check is run.
#[derive(Clone, Copy, Debug)]
pub struct GradCheckOptions {
    /// Finite-difference step.
    pub step: f64,
    /// Check this many randomly chosen coordinates (`None`: every coordinate).
    pub samples: Option<usize>,
    /// Seed for the sampled coordinates.
    pub seed: u64,
    /// Disagreement of the one-sided slopes that marks a kink (see the module docs).
    pub kink_tolerance: f64,
    /// Coordinates are compared relative to at least this fraction of the largest analytic
    /// gradient of their tensor (0: purely per coordinate). Centred differences keep a fixed
    /// number of absolute digits, so a coordinate whose gradient is a thousandth of its
    /// neighbours' would otherwise be judged on noise; a wrong gradient still shows on the
    /// large ones.
    pub tensor_scale_floor: f64,
}

impl Default for GradCheckOptions {
    fn default() -> Self {
        Self {
            step: 1e-5,
            samples: None,
            seed: 0,
            kink_tolerance: 1e-3,
            tensor_scale_floor: 0.0,
        }
    }
}

/// The outcome of a gradient check.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GradCheckReport {
    /// Largest relative error over the checked coordinates.
    pub max_relative_error: f64,
    /// Coordinates compared.
    pub checked: usize,
    /// Coordinates skipped as lying on a kink.
    pub kinks: usize,
    /// Where the largest error was: (parameter name or "x", flat index, numeric, analytic).
    pub worst: Option<(String, usize, f64, f64)>,
}

/// `|a − b| / max(1e-8, |a| + |b|)`.
pub fn relative_error(a: f64, b: f64) -> f64 {
    relative_error_above(a, b, 0.0)
}

/// [`relative_error`] with the denominator at least `floor`.
fn relative_error_above(a: f64, b: f64, floor: f64) -> f64 {
    (a - b).abs() / (a.abs() + b.abs()).max(floor).max(1e-8)
}

fn to_f64<const D: usize>(t: Tensor<D>) -> Result<Vec<f64>> {
    t.into_data()
        .try_to_vec_as::<f64>()
        .map_err(|e| ClassicError::Read(format!("{e:?}")))
}

fn make<const D: usize>(values: Vec<f64>, shape: Vec<usize>, device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), (device, DType::F64))
}

/// One tensor under check: its name, values and analytic gradient, flattened.
struct Checked<'a> {
    name: &'a str,
    x: &'a [f64],
    analytic: &'a [f64],
}

/// Compares numeric and analytic derivatives at the coordinates `order` (in that order) until
/// `wanted` non-kink coordinates are checked; `eval(i, x_i)` evaluates the function with
/// coordinate `i` set to `x_i`.
fn compare(
    checked: Checked<'_>,
    (order, wanted): (&[usize], usize),
    options: &GradCheckOptions,
    report: &mut GradCheckReport,
    mut eval: impl FnMut(usize, f64) -> Result<f64>,
) -> Result<()> {
    let Checked { name, x, analytic } = checked;
    let scale = analytic.iter().fold(0f64, |m, g| m.max(g.abs()));
    let floor = options.tensor_scale_floor * scale;
    let mut done = 0;
    for &i in order {
        if done == wanted {
            break;
        }
        let h = options.step;
        let at = eval(i, x[i])?;
        let forward = (eval(i, x[i] + h)? - at) / h;
        let backward = (at - eval(i, x[i] - h)?) / h;
        if (forward - backward).abs()
            > options.kink_tolerance * (forward.abs() + backward.abs()).max(1.0)
        {
            report.kinks += 1;
            continue;
        }
        let numeric = (forward + backward) / 2.0;
        let err = relative_error_above(numeric, analytic[i], floor);
        if report.worst.is_none() || err > report.max_relative_error {
            report.max_relative_error = err;
            report.worst = Some((name.to_string(), i, numeric, analytic[i]));
        }
        report.checked += 1;
        done += 1;
    }
    Ok(())
}

fn coordinates(len: usize, options: &GradCheckOptions, salt: u64) -> (Vec<usize>, usize) {
    let mut order: Vec<usize> = (0..len).collect();
    match options.samples {
        Some(s) => {
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(options.seed ^ salt));
            (order, s.min(len))
        }
        None => (order, len),
    }
}

/// Checks `analytic` against centred differences of `f` at `x` (both converted to f64 on
/// `x`'s device).
pub fn check_function<const D: usize>(
    f: impl Fn(Tensor<D>) -> f64,
    x: &Tensor<D>,
    analytic: &Tensor<D>,
    options: &GradCheckOptions,
) -> Result<GradCheckReport> {
    let shape = x.dims().to_vec();
    if analytic.dims().to_vec() != shape {
        return Err(ClassicError::Shape(format!(
            "gradient {:?} for input {shape:?}",
            analytic.dims()
        )));
    }
    let device = x.device();
    let xs = to_f64(x.clone())?;
    let grad = to_f64(analytic.clone())?;
    let (order, wanted) = coordinates(xs.len(), options, 0);
    let mut report = GradCheckReport::default();
    let mut point = xs.clone();
    let checked = Checked {
        name: "x",
        x: &xs,
        analytic: &grad,
    };
    compare(checked, (&order, wanted), options, &mut report, |i, v| {
        point[i] = v;
        let out = f(make::<D>(point.clone(), shape.clone(), &device));
        point[i] = xs[i];
        Ok(out)
    })?;
    Ok(report)
}

/// A parameter as collected for checking: id, path, shape, values and autodiff gradient.
type ParamRecord = (ParamId, String, Vec<usize>, Vec<f64>, Vec<f64>);

/// Collects every float parameter's id, path, shape, values and autodiff gradient.
struct Collect<'a> {
    grads: &'a burn::tensor::Gradients,
    path: Vec<String>,
    found: Vec<ParamRecord>,
    error: Option<ClassicError>,
}

impl ModuleVisitor for Collect<'_> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let grad = value.grad(self.grads);
        let shape = value.dims().to_vec();
        let read = to_f64(value).and_then(|v| {
            let g = match grad {
                Some(g) => to_f64(g)?,
                None => vec![0.0; v.len()],
            };
            Ok((v, g))
        });
        match read {
            Ok((v, g)) => self
                .found
                .push((param.id, self.path.join("."), shape, v, g)),
            Err(e) => self.error = Some(e),
        }
    }
}

/// Casts every float parameter of a module to `dtype`, keeping it a trainable leaf: use
/// `module.map(&mut CastFloat(DType::F64))` to prepare a module for [`check_module`].
#[derive(Clone, Copy, Debug)]
pub struct CastFloat(pub DType);

impl ModuleMapper for CastFloat {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dtype = self.0;
        param.map(|t| t.cast(dtype).detach().require_grad())
    }
}

/// Replaces one parameter's values.
struct Replace {
    id: ParamId,
    values: Vec<f64>,
    shape: Vec<usize>,
}

impl ModuleMapper for Replace {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if param.id != self.id {
            return param;
        }
        let (id, tensor, mapper) = param.consume();
        let device = tensor.device();
        let replaced = make::<D>(self.values.clone(), self.shape.clone(), &device).require_grad();
        Param::from_mapped_value(id, replaced, mapper)
    }
}

/// Checks Burn's autodiff gradients of every float parameter of `module` against centred
/// differences of `loss`. The module must live on an f64 autodiff device (e.g.
/// `Device::flex().autodiff()` with parameters cast to f64); `loss` must be deterministic
/// (put dropout-like layers in evaluation mode or seed them).
pub fn check_module<M: Module + Clone>(
    module: &M,
    loss: impl Fn(&M) -> Tensor<1>,
    options: &GradCheckOptions,
) -> Result<GradCheckReport> {
    let grads = loss(module).backward();
    let mut collect = Collect {
        grads: &grads,
        path: Vec::new(),
        found: Vec::new(),
        error: None,
    };
    module.visit(&mut collect);
    if let Some(e) = collect.error {
        return Err(e);
    }
    let mut report = GradCheckReport::default();
    for (k, (id, name, shape, values, grad)) in collect.found.iter().enumerate() {
        let (order, wanted) = coordinates(values.len(), options, k as u64 + 1);
        let mut point = values.clone();
        let checked = Checked {
            name,
            x: values,
            analytic: grad,
        };
        compare(checked, (&order, wanted), options, &mut report, |i, v| {
            point[i] = v;
            let perturbed = module.clone().map(&mut Replace {
                id: *id,
                values: point.clone(),
                shape: shape.clone(),
            });
            point[i] = values[i];
            Ok(loss(&perturbed).into_scalar::<f64>())
        })?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linear::{LossKind, loss, loss_and_grad, with_bias_column};
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Int;
    use rand::Rng;

    fn device() -> Device {
        Device::flex()
    }

    fn random(shape: [usize; 2], seed: u64, device: &Device) -> Tensor<2> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let v: Vec<f64> = (0..shape[0] * shape[1])
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        make::<2>(v, shape.to_vec(), device)
    }

    fn labels(n: usize, c: usize) -> Tensor<1, Int> {
        let y: Vec<i64> = (0..n).map(|i| ((i * 7) % c) as i64).collect();
        Tensor::from_data(TensorData::new(y, [n]), &device())
    }

    #[test]
    fn tensor_scale_floor_forgives_noise_on_tiny_coordinates_only() {
        let d = device();
        // f(w) = Σ c ⊙ w²: gradient 2 c w, one coordinate a million times smaller.
        let c = [1.0, 1e-6, 1.0];
        let w = make::<2>(vec![1.0, 1.0, 1.0], vec![1, 3], &d);
        let f = |w: Tensor<2>| {
            let v = to_f64(w).unwrap();
            v.iter().zip(c).map(|(x, c)| c * x * x).sum::<f64>()
        };
        // The tiny coordinate's analytic value is off by 1e-8 (noise-sized against 2).
        let slightly_off = make::<2>(vec![2.0, 2e-6 + 1e-8, 2.0], vec![1, 3], &d);
        let plain = check_function(f, &w, &slightly_off, &GradCheckOptions::default()).unwrap();
        assert!(plain.max_relative_error > 1e-3, "{plain:?}");
        let floored = GradCheckOptions {
            tensor_scale_floor: 1e-2,
            ..Default::default()
        };
        let r = check_function(f, &w, &slightly_off, &floored).unwrap();
        assert!(r.max_relative_error < 1e-6, "{r:?}");
        // A wrong large coordinate still fails.
        let wrong = make::<2>(vec![2.0, 2e-6, 2.5], vec![1, 3], &d);
        let r = check_function(f, &w, &wrong, &floored).unwrap();
        assert!(r.max_relative_error > 0.1, "{r:?}");
    }

    #[test]
    fn svm_and_softmax_analytic_gradients_pass_at_1e_7() {
        let d = device();
        let x = with_bias_column(random([16, 9], 1, &d));
        let w = random([10, 5], 2, &d).mul_scalar(0.3);
        let y = labels(16, 5);
        for kind in [LossKind::Svm, LossKind::Softmax] {
            let (_, g) = loss_and_grad(kind, w.clone(), x.clone(), &y, 0.05);
            let f = |w: Tensor<2>| loss(kind, w, x.clone(), &y, 0.05).into_scalar::<f64>();
            let full = check_function(f, &w, &g, &GradCheckOptions::default()).unwrap();
            assert!(full.max_relative_error <= 1e-7, "{kind:?}: {full:?}");
            assert!(full.checked + full.kinks == 50);
            let sampled = GradCheckOptions {
                samples: Some(10),
                seed: 3,
                ..Default::default()
            };
            let r = check_function(f, &w, &g, &sampled).unwrap();
            assert_eq!(r.checked, 10);
            assert!(r.max_relative_error <= 1e-7, "{kind:?}: {r:?}");
        }
    }

    #[test]
    fn a_wrong_gradient_is_caught() {
        let d = device();
        let x = with_bias_column(random([8, 4], 5, &d));
        let w = random([5, 3], 6, &d);
        let y = labels(8, 3);
        let (_, g) = loss_and_grad(LossKind::Softmax, w.clone(), x.clone(), &y, 0.0);
        let wrong = g.mul_scalar(1.01);
        let f = |w: Tensor<2>| loss(LossKind::Softmax, w, x.clone(), &y, 0.0).into_scalar::<f64>();
        let r = check_function(f, &w, &wrong, &GradCheckOptions::default()).unwrap();
        assert!(r.max_relative_error > 1e-3, "{r:?}");
    }

    #[test]
    fn kinks_are_detected_and_skipped() {
        let d = device();
        // |x| at 0 is a kink; elsewhere the slope is ±1.
        let x = make::<1>(vec![0.0, 0.5, -0.25], vec![3], &d);
        let g = make::<1>(vec![0.0, 1.0, -1.0], vec![3], &d);
        let f = |t: Tensor<1>| t.abs().sum().into_scalar::<f64>();
        let r = check_function(f, &x, &g, &GradCheckOptions::default()).unwrap();
        assert_eq!((r.checked, r.kinks), (2, 1));
        assert!(r.max_relative_error < 1e-9);
    }

    #[test]
    fn module_parameters_are_checked_through_autodiff() {
        let d = device().autodiff();
        let layer: Linear = LinearConfig::new(4, 3).init(&d);
        let layer = layer.map(&mut CastFloat(DType::F64));
        let x = random([5, 4], 7, &device()).autodiff();
        let r = check_module(
            &layer,
            |m| m.forward(x.clone()).powi_scalar(2).sum(),
            &GradCheckOptions::default(),
        )
        .unwrap();
        assert_eq!(r.checked, 4 * 3 + 3);
        assert!(r.max_relative_error < 1e-7, "{r:?}");
    }
}
