//! Checking a port against the framework it came from: run a reference file's `input` through
//! a network and measure how far its `logits` (and, when the file has them, its coarsest
//! `features`) are from the ones saved beside it (e.g. by PyTorch, in a safetensors file).

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};

use crate::pretrained::{PretrainedError, max_relative_error, read_safetensors};
use crate::{Backbone, ImageClassifier};

/// The largest relative errors against a reference ([`max_relative_error`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReferenceErrors {
    /// Of the class scores.
    pub logits: f32,
    /// Of the coarsest feature map, when the reference has `features` of the same size.
    pub features: Option<f32>,
}

impl ReferenceErrors {
    /// The larger of the two errors.
    pub fn worst(&self) -> f32 {
        self.features.map_or(self.logits, |f| f.max(self.logits))
    }
}

fn values(path: &Path, data: TensorData) -> Result<Vec<f32>, PretrainedError> {
    data.convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| PretrainedError::Read {
            path: path.to_path_buf(),
            message: format!("cannot read values: {e:?}"),
        })
}

/// Runs the reference's `input` `[batch, 3, h, w]` through `net` (switched to evaluation mode)
/// on `device` and compares with its `logits` and, if present and of the same size, its
/// `features` (the coarsest feature map).
pub fn compare_with_reference<N: ImageClassifier + Backbone>(
    net: &N,
    reference: &Path,
    device: &Device,
) -> Result<ReferenceErrors, PretrainedError> {
    let wrong = |message: String| PretrainedError::Read {
        path: reference.to_path_buf(),
        message,
    };
    let net = net.valid();
    let input = read_safetensors(reference, "input")?;
    let dims = input.shape().as_slice().to_vec();
    if dims.len() != 4 || dims[1] != 3 {
        return Err(wrong(format!(
            "`input` has shape {dims:?}, expected [batch, 3, height, width]"
        )));
    }
    let input = Tensor::<4>::from_data(input, device);
    let expected = values(reference, read_safetensors(reference, "logits")?)?;
    let logits = values(reference, net.scores(input.clone()).into_data())?;
    if logits.len() != expected.len() {
        return Err(wrong(format!(
            "`logits` has {} values, the network gives {}; is it the reference for these weights?",
            expected.len(),
            logits.len()
        )));
    }
    let mut errors = ReferenceErrors {
        logits: max_relative_error(&logits, &expected),
        features: None,
    };
    if let Ok(expected) = read_safetensors(reference, "features") {
        let expected = values(reference, expected)?;
        let features = values(
            reference,
            net.feature_maps(input).coarsest().clone().into_data(),
        )?;
        if features.len() == expected.len() {
            errors.features = Some(max_relative_error(&features, &expected));
        }
    }
    Ok(errors)
}
