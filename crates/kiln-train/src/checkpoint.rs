//! Module checkpoints in Burn's burnpack format, written atomically.

use std::path::Path;

use burn::module::Module;
use burn::store::{BurnpackStore, ModuleSnapshot};

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
/// shape, otherwise the error lists what did not.
pub fn load_module<M: Module>(mut module: M, path: &Path) -> Result<M> {
    if !path.is_file() {
        return Err(TrainError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "checkpoint not found"),
        ));
    }
    let mut store = BurnpackStore::from_file(path).auto_extension(false);
    module
        .load_from(&mut store)
        .map_err(|e| TrainError::Format {
            path: path.to_path_buf(),
            reason: format!("checkpoint does not fit this model: {e:?}"),
        })?;
    Ok(module)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::{Device, Tensor};

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
}
