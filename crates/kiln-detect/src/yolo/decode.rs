//! Reading a YOLO head's outputs back to the host, where its boxes are decoded (the test rule
//! that turns them into detections is [`crate::two_stage::DetectionRule::select`]).

use burn::tensor::Tensor;

use crate::{DetectError, Result};

/// A tensor's values on the host, in row-major order.
pub(crate) fn read_values<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec_as::<f32>()
        .map_err(|e| DetectError::invalid("YOLO output", format!("{e:?}")))
}
