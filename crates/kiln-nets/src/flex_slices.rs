//! Flex tensors as `f32` slices and back, for kiln's CPU kernels (`conv`, `norm`).

use burn::tensor::{Shape, TensorData};
use burn_flex::FlexTensor;

/// The tensor with a contiguous, offset-free layout (a copy only when it has none).
pub(crate) fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

/// The values of a contiguous `f32` tensor.
pub(crate) fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("kiln kernels: tensor made contiguous f32 before reading")
}

/// A Flex tensor of `shape` holding `values`.
pub(crate) fn tensor(values: Vec<f32>, shape: impl Into<Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}
