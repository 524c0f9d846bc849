//! Convolutions that train fast on the CPU, used by every kiln network.
//!
//! [`conv2d`] is Burn's `conv2d` with the same arguments and results. When the tensors live on
//! Burn's Flex CPU backend (the `flex` feature) it records its own autodiff operation, whose
//! forward and backward passes are kiln's:
//!
//! - ungrouped convolutions ([`dense`]): the output and the weight and input gradients as
//!   matrix products (im2col / col2im, none for 1×1 layers), images in parallel when the batch
//!   has one per thread; Flex's forward converts the whole batch to NHWC on one thread first,
//!   and Burn's generic weight gradient convolves the input with the output gradient — for a
//!   1×1 layer, one matrix–vector product per input channel;
//! - depthwise convolutions ([`depthwise`]): forward and both gradients as passes over each
//!   channel plane, where Burn's generic weight gradient runs one convolution per channel.
//!
//! [`transposed`]: a transposed convolution whose kernel equals its stride (an upsampling
//! layer without overlap) as a 1×1 [`conv2d`] and a depth-to-space, so it trains through the
//! same kernels.
//!
//! Every other backend, dtype and group count keeps Burn's kernels, so models stay ordinary
//! Burn modules: [`forward`] runs a `burn::nn::conv::Conv2d` through [`conv2d`]. Setting the
//! environment variable `KILN_BURN_CONV=1` sends every convolution to Burn's kernels instead
//! (to compare speed or rule kiln's kernels out).

pub mod dense;
pub mod depthwise;
#[cfg(feature = "flex")]
mod flex;
pub mod geometry;
pub mod transposed;

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use burn::tensor::ops::ConvOptions;

use crate::autocast;

pub use geometry::ConvGeometry;
pub use transposed::{conv_transpose2d, forward_transposed};

/// Burn's `conv2d(x, weight, bias, options)`: NCHW input, `[out, in / groups, kh, kw]` weight,
/// per-side padding. Runs kiln's kernels on Flex (see the module docs), Burn's elsewhere.
/// Inside an [`autocast::scope`] it computes in the scope's float type.
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    let (x, weight, bias) = autocast::layer(x, weight, bias);
    #[cfg(feature = "flex")]
    if !burns_only()
        && let Some(out) = flex::conv2d(&x, &weight, bias.as_ref(), &options)
    {
        return out;
    }
    burn::tensor::module::conv2d(x, weight, bias, options)
}

/// Whether `KILN_BURN_CONV=1` asks for Burn's kernels (read once per process).
#[cfg(feature = "flex")]
fn burns_only() -> bool {
    static BURNS_ONLY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *BURNS_ONLY.get_or_init(|| std::env::var("KILN_BURN_CONV").is_ok_and(|v| v == "1"))
}

/// `conv.forward(x)` through [`conv2d`]: the same padding rules (`Same` pads as TensorFlow
/// does, the extra row and column after), the same result.
pub fn forward(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    forward_padded(conv, x, &conv.padding)
}

/// [`forward`] with `padding` in place of the layer's own.
pub fn forward_padded(conv: &Conv2d, x: Tensor<4>, padding: &PaddingConfig2d) -> Tensor<4> {
    let [_, _, height, width] = x.dims();
    let padding = padding_pairs(padding, [height, width], conv.kernel_size, conv.stride);
    let options = ConvOptions::new_with_padding(conv.stride, padding, conv.dilation, conv.groups);
    conv2d(
        x,
        conv.weight.val(),
        conv.bias.as_ref().map(|b| b.val()),
        options,
    )
}

/// `(before, after)` padding per axis of a padding config for an input of `size`.
pub fn padding_pairs(
    padding: &PaddingConfig2d,
    size: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
) -> [(usize, usize); 2] {
    match *padding {
        PaddingConfig2d::Valid => [(0, 0); 2],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
        PaddingConfig2d::Same => {
            [0, 1].map(|axis| same_padding(size[axis], kernel[axis], stride[axis]))
        }
    }
}

/// TensorFlow's "same" padding: `ceil(size / stride)` outputs, any odd extra row after.
pub fn same_padding(size: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let outputs = size.div_ceil(stride);
    let total = (outputs.saturating_sub(1) * stride + kernel).saturating_sub(size);
    (total / 2, total - total / 2)
}

#[cfg(all(test, feature = "flex"))]
mod tests;
