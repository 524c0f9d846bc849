//! Max pooling that trains fast on the CPU, used by every kiln network.
//!
//! [`max_pool2d`] is Burn's `max_pool2d` with the same arguments and results. When the input
//! lives on Burn's Flex CPU backend (the `flex` feature) it runs [`kernels`] as one autodiff
//! operation: the forward pass records the `u32` position of each window's maximum (a
//! dedicated loop for the 2×2 stride-2 pool of the classic conv nets), and the backward pass
//! adds each output gradient at its position. Burn's Flex kernel evaluates a general 3-D
//! window per output value and keeps `i64` positions plus the whole input.
//!
//! Asymmetric padding, `ceil_mode`, other backends and dtypes keep Burn's kernels, so models
//! stay ordinary Burn modules: [`forward`] runs a `burn::nn::pool::MaxPool2d` through
//! [`max_pool2d`]. Setting the environment variable `KILN_BURN_POOL=1` sends every pool to
//! Burn's kernels instead (to compare speed or rule kiln's kernels out).

#[cfg(feature = "flex")]
mod flex;
pub mod kernels;

use burn::nn::pool::MaxPool2d;
use burn::tensor::Tensor;
use burn::tensor::ops::MaxPoolOptions;

use crate::conv::padding_pairs;

/// Burn's `max_pool2d(x, options)` on an NCHW input, through kiln's kernels on Flex.
pub fn max_pool2d(x: Tensor<4>, options: MaxPoolOptions<2>) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if !burns_only()
        && !options.ceil_mode
        && let Some(padding) = symmetric(&options.padding)
        && let Some(out) = flex::max_pool2d(
            &x,
            flex::Window {
                kernel: options.kernel_size,
                stride: options.stride,
                padding,
                dilation: options.dilation,
            },
        )
    {
        return out;
    }
    burn::tensor::module::max_pool2d(x, options)
}

/// `pool.forward(x)` through [`max_pool2d`]: the same padding rules, the same result.
pub fn forward(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    let [_, _, height, width] = x.dims();
    let padding = padding_pairs(
        &pool.padding,
        [height, width],
        pool.kernel_size,
        pool.stride,
    );
    let options = MaxPoolOptions::new(pool.kernel_size)
        .with_stride(pool.stride)
        .with_padding_pairs(padding)
        .with_dilation(pool.dilation)
        .with_ceil_mode(pool.ceil_mode);
    max_pool2d(x, options)
}

/// The per-axis padding when each axis pads equally before and after.
#[cfg(feature = "flex")]
fn symmetric(pairs: &[(usize, usize); 2]) -> Option<[usize; 2]> {
    pairs
        .iter()
        .all(|(before, after)| before == after)
        .then(|| pairs.map(|(before, _)| before))
}

/// Whether `KILN_BURN_POOL=1` asks for Burn's kernels (read once per process).
#[cfg(feature = "flex")]
fn burns_only() -> bool {
    static BURNS_ONLY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *BURNS_ONLY.get_or_init(|| std::env::var("KILN_BURN_POOL").is_ok_and(|v| v == "1"))
}

#[cfg(all(test, feature = "flex"))]
mod tests;
