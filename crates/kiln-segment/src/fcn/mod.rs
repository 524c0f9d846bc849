//! FCN: the backbone's maps scored by 1×1 convolutions, fused coarse to fine, and upsampled to
//! the input by transposed convolutions that start as bilinear interpolation.

mod model;
mod upsample;

pub use model::{Fcn, FcnConfig, FcnVariant};
pub use upsample::{Upsample, bilinear_kernel};
