//! Mapping the compiled backend features and a `--device` name to a Burn [`Device`].
//!
//! | name | feature | device |
//! |---|---|---|
//! | `flex` | `flex` (default) | Burn's pure-Rust CPU backend (SIMD, rayon) |
//! | `ndarray` | `ndarray` | Burn's ndarray CPU backend |
//! | `wgpu`, `wgpu:N` | `wgpu` | the default GPU, or discrete GPU `N` (Vulkan, Metal, DX12) |
//! | `vulkan`, `vulkan:N` | `vulkan` | the same GPU pinned to Vulkan, kernels compiled to SPIR-V |
//! | `auto` | any | `wgpu` when compiled, else `flex`, else `ndarray` |

use anyhow::{Result, bail};
use burn::tensor::{Device, FloatDType};
use clap::ValueEnum;
use kiln_train::mixed::MixedPrecision;
use serde::{Deserialize, Serialize};

/// The floating-point type a run computes in. `f16` and `bf16` make it the device's type:
/// weights, activations, gradients and optimizer state alike, with no f32 master copy. Half
/// precision halves memory traffic and, on GPUs that have them, reaches the tensor cores;
/// without f32 master weights or loss scaling it can diverge (the airbench94 recipe does in
/// f16: BENCHMARKS.md, GPU). `f16-mixed` and `bf16-mixed` keep the device f32 and run the
/// training steps' passes in half ([`kiln_train::mixed`]): f32 weights, optimizer and loss,
/// f16 with loss scaling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats (the default).
    #[default]
    F32,
    /// IEEE half precision: 10-bit mantissa, range up to 65,504.
    F16,
    /// bfloat16: f32's range with a 7-bit mantissa.
    Bf16,
    /// f32 weights, optimizer and loss; forward and backward passes in f16, loss scaled.
    #[serde(rename = "f16-mixed")]
    F16Mixed,
    /// f32 weights, optimizer and loss; forward and backward passes in bf16.
    #[serde(rename = "bf16-mixed")]
    Bf16Mixed,
}

impl Precision {
    /// The device's float type: half for `f16`/`bf16`, f32 otherwise (mixed precision keeps
    /// f32 weights).
    fn dtype(self) -> FloatDType {
        match self {
            Precision::F32 | Precision::F16Mixed | Precision::Bf16Mixed => FloatDType::F32,
            Precision::F16 => FloatDType::F16,
            Precision::Bf16 => FloatDType::BF16,
        }
    }

    /// The half type of mixed-precision training steps, for `f16-mixed` and `bf16-mixed`.
    pub fn mixed(self) -> Option<MixedPrecision> {
        match self {
            Precision::F16Mixed => Some(MixedPrecision::F16),
            Precision::Bf16Mixed => Some(MixedPrecision::Bf16),
            _ => None,
        }
    }
}

/// Makes `precision` the float type of every tensor later created on `device` (and on its
/// autodiff twin). Call it before anything touches the device; f32 and the mixed precisions
/// leave the device as it is.
pub fn set_precision(device: &mut Device, precision: Precision) -> Result<()> {
    if precision.dtype() == FloatDType::F32 {
        return Ok(());
    }
    device.configure(precision.dtype()).map_err(|e| {
        anyhow::anyhow!(
            "--precision {}: this device cannot use it ({e:?}); use --precision f32",
            precision
                .to_possible_value()
                .map_or_else(String::new, |v| v.get_name().to_string())
        )
    })
}

/// The device for `name` (as [`device`]) with `precision` set.
pub fn device_with(name: Option<&str>, precision: Precision) -> Result<Device> {
    let mut device = device(name)?;
    set_precision(&mut device, precision)?;
    Ok(device)
}

/// The backend names this build can use, best first.
pub fn compiled_backends() -> Vec<&'static str> {
    let mut names = Vec::new();
    if cfg!(feature = "wgpu") {
        names.push("wgpu");
    }
    if cfg!(feature = "vulkan") {
        names.push("vulkan");
    }
    if cfg!(feature = "flex") {
        names.push("flex");
    }
    if cfg!(feature = "ndarray") {
        names.push("ndarray");
    }
    names
}

#[cfg_attr(
    all(
        feature = "flex",
        feature = "ndarray",
        feature = "wgpu",
        feature = "vulkan"
    ),
    allow(dead_code)
)]
fn not_compiled(feature: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "this kiln was built without the `{feature}` backend (built with: {}); rebuild with \
         `cargo run --release --features {feature} …`",
        compiled_backends().join(", ")
    )
}

/// Whether `name` (`None` = `auto`) resolves to a CPU backend, where native loops beat
/// device tensor code for work such as L1 distances.
pub fn is_cpu(name: Option<&str>) -> bool {
    let name = name.unwrap_or("auto").trim().to_ascii_lowercase();
    let kind = name.split(':').next().unwrap_or_default().to_string();
    match kind.as_str() {
        "auto" => compiled_backends().first() != Some(&"wgpu"),
        "wgpu" | "gpu" | "vulkan" => false,
        _ => true,
    }
}

/// The device for `name` (see the module table); `None` means `auto`.
pub fn device(name: Option<&str>) -> Result<Device> {
    let name = name.unwrap_or("auto").trim().to_ascii_lowercase();
    let name = if name == "auto" {
        match compiled_backends().first() {
            Some(best) => best.to_string(),
            None => bail!("kiln was built without any backend feature (flex, ndarray or wgpu)"),
        }
    } else {
        name
    };
    let (kind, index) = match name.split_once(':') {
        Some((k, i)) => {
            let index: usize = i
                .parse()
                .map_err(|_| anyhow::anyhow!("--device {name}: `{i}` is not a device index"))?;
            (k.to_string(), Some(index))
        }
        None => (name.clone(), None),
    };
    match kind.as_str() {
        "flex" | "cpu" => flex(),
        "ndarray" => ndarray(),
        "wgpu" | "gpu" => wgpu(index),
        "vulkan" => vulkan(index),
        other => bail!(
            "--device {other}: unknown backend; use one of auto, {}",
            compiled_backends().join(", ")
        ),
    }
}

fn flex() -> Result<Device> {
    #[cfg(feature = "flex")]
    return Ok(Device::flex());
    #[cfg(not(feature = "flex"))]
    Err(not_compiled("flex"))
}

fn ndarray() -> Result<Device> {
    #[cfg(feature = "ndarray")]
    #[allow(deprecated)]
    // Burn marks ndarray deprecated in favour of flex; users still ask for it.
    return Ok(Device::ndarray());
    #[cfg(not(feature = "ndarray"))]
    Err(not_compiled("ndarray"))
}

fn wgpu(index: Option<usize>) -> Result<Device> {
    #[cfg(feature = "wgpu")]
    {
        use burn::tensor::DeviceKind;
        let kind = index.map_or(DeviceKind::DefaultDevice, DeviceKind::DiscreteGpu);
        Ok(Device::wgpu(kind))
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = index;
        Err(not_compiled("wgpu"))
    }
}

fn vulkan(index: Option<usize>) -> Result<Device> {
    #[cfg(feature = "vulkan")]
    {
        use burn::tensor::DeviceKind;
        let kind = index.map_or(DeviceKind::DefaultDevice, DeviceKind::DiscreteGpu);
        Ok(Device::vulkan(kind))
    }
    #[cfg(not(feature = "vulkan"))]
    {
        let _ = index;
        Err(not_compiled("vulkan"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_a_compiled_backend() {
        assert!(!compiled_backends().is_empty());
        assert!(device(None).is_ok());
        assert!(device(Some("AUTO")).is_ok());
    }

    #[test]
    fn unknown_and_missing_backends_explain_themselves() {
        let err = device(Some("tpu")).unwrap_err().to_string();
        assert!(err.contains("unknown backend"), "{err}");
        for name in ["flex", "ndarray", "wgpu", "vulkan"] {
            match device(Some(name)) {
                Ok(_) => assert!(compiled_backends().contains(&name)),
                Err(e) => assert!(e.to_string().contains(&format!("--features {name}"))),
            }
        }
        assert!(device(Some("wgpu:x")).is_err());
    }
}
