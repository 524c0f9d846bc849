//! Parameter initialisation helpers that keep a parameter's id and trainability.

use burn::module::Param;
use burn::tensor::{Tensor, TensorData};

/// Replaces a parameter's values, keeping its id and whether it is trained. (Mapping a parameter
/// to a freshly made tensor would otherwise mark it frozen.)
pub(crate) fn replace_values<const D: usize>(
    param: Param<Tensor<D>>,
    values: Vec<f32>,
) -> Param<Tensor<D>> {
    let trained = param.is_require_grad();
    param
        .map(|t| Tensor::from_data(TensorData::new(values, t.shape()), &t.device()))
        .set_require_grad(trained)
}

/// Sets a parameter to zeros, keeping its id and whether it is trained.
pub(crate) fn zeroed<const D: usize>(param: Param<Tensor<D>>) -> Param<Tensor<D>> {
    let trained = param.is_require_grad();
    param.map(|t| t.zeros_like()).set_require_grad(trained)
}
