//! Module checkpoints in Burn's burnpack format, written atomically.

use std::collections::BTreeSet;
use std::path::Path;

use burn::module::{Module, ModuleMapper, Param};
use burn::store::{BurnpackStore, ModuleSnapshot, ModuleStore};
use burn::tensor::{DType, Tensor};

use crate::{Result, TrainError, write_via_temp};

/// Saves `module` to `path` (burnpack) through a temporary file and a rename, so a crash
/// never leaves a truncated checkpoint under the final name.
pub fn save_module<M: Module>(module: &M, path: &Path) -> Result<()> {
    write_via_temp(path, "", |tmp| {
        let mut store = BurnpackStore::from_file(tmp)
            .auto_extension(false)
            .overwrite(true);
        module
            .save_into(&mut store)
            .map_err(|e| TrainError::Format {
                path: tmp.to_path_buf(),
                reason: format!("cannot write checkpoint: {e:?}"),
            })
    })
}

/// Loads the parameters saved at `path` into `module`; every tensor must match by name and
/// shape, otherwise the error lists what did not. A checkpoint of a plain network also loads
/// into an enum module holding that network (e.g. `kiln_nets::Network`, whose tensor names
/// start with the variant), so runs saved before a model moved into an enum still resume.
///
/// Float tensors take the float type of the device they load onto (the module's own): a
/// checkpoint of a half-precision run loads into an f32 model as f32, where Burn would keep
/// the file's half values and the first operation mixing them with f32 inputs would fail.
pub fn load_module<M: Module>(module: M, path: &Path) -> Result<M> {
    if !path.is_file() {
        return Err(TrainError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "checkpoint not found"),
        ));
    }
    let mut first = module.clone();
    let mut store = BurnpackStore::from_file(path).auto_extension(false);
    let Err(error) = first.load_from(&mut store) else {
        return Ok(first.map(&mut DeviceFloat));
    };
    let file_names = store.keys().unwrap_or_default();
    if let Some(variant) = variant_prefix(&module, &file_names) {
        let mut second = module;
        let mut store = BurnpackStore::from_file(path)
            .auto_extension(false)
            .with_remap_pattern("^", format!("{variant}."));
        if second.load_from(&mut store).is_ok() {
            return Ok(second.map(&mut DeviceFloat));
        }
    }
    Err(TrainError::Format {
        path: path.to_path_buf(),
        reason: format!("checkpoint does not fit this model: {error:?}"),
    })
}

/// Casts each float tensor whose type is not its device's float type to that type, keeping
/// whether it requires a gradient.
struct DeviceFloat;

impl ModuleMapper for DeviceFloat {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|tensor| {
            let wanted: DType = tensor.device().settings().float_dtype.into();
            if tensor.dtype() == wanted {
                return tensor;
            }
            let trainable = tensor.is_require_grad();
            let cast = tensor.cast(wanted).detach();
            if trainable { cast.require_grad() } else { cast }
        })
    }
}

/// The one leading path segment (an enum module's variant) by which `module`'s tensor names
/// differ from `file_names`, if that is all that differs.
fn variant_prefix<M: Module>(module: &M, file_names: &[String]) -> Option<String> {
    let own: BTreeSet<String> = module
        .collect(None, None, false)
        .into_iter()
        .map(|t| t.name)
        .collect();
    let variant = own.first()?.split('.').next()?.to_string();
    let stripped: BTreeSet<String> = own
        .iter()
        .map(|name| {
            name.strip_prefix(&format!("{variant}."))
                .map(str::to_string)
        })
        .collect::<Option<_>>()?;
    let file: BTreeSet<String> = file_names.iter().cloned().collect();
    (stripped == file).then_some(variant)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
    use burn::tensor::Device;

    #[test]
    fn round_trip_and_mismatch() {
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.bpk");
        let a: Linear = LinearConfig::new(3, 2).init(&device);
        save_module(&a, &path).unwrap();
        let b = load_module(LinearConfig::new(3, 2).init(&device), &path).unwrap();
        let x = Tensor::<2>::ones([1, 3], &device);
        let (ya, yb) = (a.forward(x.clone()).into_data(), b.forward(x).into_data());
        assert_eq!(ya, yb);
        let wrong: Linear = LinearConfig::new(4, 2).init(&device);
        let err = load_module(wrong, &path).unwrap_err();
        assert!(err.to_string().contains("model.bpk"), "{err}");
        assert!(load_module(a, &dir.path().join("none.bpk")).is_err());
    }

    #[derive(Module, Debug)]
    enum Wrapped {
        Plain(Linear),
    }

    #[test]
    fn a_plain_checkpoint_loads_into_an_enum_holding_it() {
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain.bpk");
        let plain: Linear = LinearConfig::new(3, 2).init(&device);
        save_module(&plain, &path).unwrap();
        let Wrapped::Plain(loaded) =
            load_module(Wrapped::Plain(LinearConfig::new(3, 2).init(&device)), &path).unwrap();
        let x = Tensor::<2>::ones([1, 3], &device);
        assert_eq!(
            plain.forward(x.clone()).into_data(),
            loaded.forward(x).into_data()
        );
        // The enum's own checkpoints carry the variant and load back as they are.
        let wrapped_path = dir.path().join("wrapped.bpk");
        save_module(&Wrapped::Plain(plain), &wrapped_path).unwrap();
        load_module(
            Wrapped::Plain(LinearConfig::new(3, 2).init(&device)),
            &wrapped_path,
        )
        .unwrap();
        // A shape mismatch is still an error.
        let wrong = Wrapped::Plain(LinearConfig::new(4, 2).init(&device));
        assert!(load_module(wrong, &path).is_err());
    }

    /// Casts every float tensor to half precision, as a half run saves them.
    struct ToHalf;

    impl ModuleMapper for ToHalf {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.map(|t| t.cast(DType::F16))
        }
    }

    #[test]
    fn a_half_precision_checkpoint_loads_as_the_devices_f32() {
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("half.bpk");
        let (linear, norm): (Linear, BatchNorm) = (
            LinearConfig::new(3, 2).init(&device),
            BatchNormConfig::new(2).init(&device),
        );
        let half = (linear, norm).map(&mut ToHalf);
        assert_eq!(half.0.weight.val().dtype(), DType::F16);
        save_module(&half, &path).unwrap();
        let fresh = (
            LinearConfig::new(3, 2).init(&device),
            BatchNormConfig::new(2).init(&device),
        );
        let (linear, norm): (Linear, BatchNorm) = load_module(fresh, &path).unwrap();
        for t in [
            linear.weight.val().flatten::<1>(0, 1),
            linear.bias.as_ref().unwrap().val(),
            norm.gamma.val(),
            norm.running_var.value(),
        ] {
            assert_eq!(t.dtype(), DType::F32);
        }
        // The values are the half ones, and the loaded layers run on f32 inputs.
        let expected = half.0.weight.val().cast(DType::F32).into_data();
        assert_eq!(linear.weight.val().into_data(), expected);
        // Loaded for training, the cast weights are still trainable leaves.
        let linear_path = dir.path().join("half-linear.bpk");
        save_module(&half.0, &linear_path).unwrap();
        let training = device.clone().autodiff();
        let trained: Linear =
            load_module(LinearConfig::new(3, 2).init(&training), &linear_path).unwrap();
        assert_eq!(trained.weight.val().dtype(), DType::F32);
        assert!(trained.weight.val().is_require_grad());
        let x = Tensor::<2>::ones([4, 3], &device);
        let y = norm.forward(linear.forward(x).unsqueeze_dim::<3>(2));
        assert_eq!(y.dtype(), DType::F32);
    }
}
