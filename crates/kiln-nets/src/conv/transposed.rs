//! Transposed convolutions, with a fast path for the common upsampling layer whose kernel
//! equals its stride (Mask R-CNN's 2×2, stride 2).
//!
//! Such a layer has no overlap: input pixel `(i, j)` alone writes the output block
//! `[k·i, k·i + k) × [k·j, k·j + k)`, with `out[o, k·i + a, k·j + b] = Σ_c W[c, o, a, b] ·
//! x[c, i, j] + bias[o]`. That is a 1×1 convolution to `O·k²` channels followed by a
//! depth-to-space rearrangement, and [`conv_transpose2d`] computes it so: the 1×1
//! convolution trains through [`super::conv2d`] (kiln's GEMM kernels on Flex), where Burn's
//! generic gradient of a transposed convolution copies the input and the output gradient
//! into transposed layouts and unfolds them. Every other transposed convolution is Burn's.

use burn::nn::conv::ConvTranspose2d;
use burn::tensor::Tensor;
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};

/// Burn's `conv_transpose2d(x, weight, bias, options)` (`[in, out / groups, kh, kw]` weight),
/// the same result; as a 1×1 convolution and a depth-to-space when the kernel equals the
/// stride, without padding, dilation or groups (see the module docs).
pub fn conv_transpose2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvTransposeOptions<2>,
) -> Tensor<4> {
    let (x, weight, bias) = crate::autocast::layer(x, weight, bias);
    let [_, outputs, kh, kw] = weight.dims();
    let blocks = options.stride == [kh, kw]
        && options.padding == [0, 0]
        && options.padding_out == [0, 0]
        && options.dilation == [1, 1]
        && options.groups == 1;
    if !blocks {
        return burn::tensor::module::conv_transpose2d(x, weight, bias, options);
    }
    let [inputs, ..] = weight.dims();
    let per_pixel = kh * kw;
    // Output channel (o, a, b) of the 1×1 convolution is block position (a, b) of channel o.
    let pointwise = weight
        .permute([1, 2, 3, 0])
        .reshape([outputs * per_pixel, inputs, 1, 1]);
    let bias = bias.map(|b| {
        b.reshape([outputs, 1])
            .repeat_dim(1, per_pixel)
            .reshape([outputs * per_pixel])
    });
    let blocks = super::conv2d(
        x,
        pointwise,
        bias,
        ConvOptions::new([1, 1], [0, 0], [1, 1], 1),
    );
    let [n, _, h, w] = blocks.dims();
    blocks
        .reshape([n, outputs, kh, kw, h, w])
        .permute([0, 1, 4, 2, 5, 3])
        .reshape([n, outputs, h * kh, w * kw])
}

/// `conv.forward(x)` through [`conv_transpose2d`].
pub fn forward_transposed(conv: &ConvTranspose2d, x: Tensor<4>) -> Tensor<4> {
    conv_transpose2d(
        x,
        conv.weight.val(),
        conv.bias.as_ref().map(|b| b.val()),
        ConvTransposeOptions::new(
            conv.stride,
            conv.padding,
            conv.padding_out,
            conv.dilation,
            conv.groups,
        ),
    )
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, TensorData};

    use super::*;

    /// Values of `shape`: a fixed, sign-changing pattern offset by `seed`.
    fn pattern(shape: &[usize], seed: usize) -> TensorData {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|i| ((i * 7919 + seed * 104_729) % 113) as f32 / 56.0 - 1.0)
            .collect();
        TensorData::new(values, shape.to_vec())
    }

    /// The output and the input, weight and bias gradients of `Σ r·f(x, w, b)` for a fixed
    /// upstream gradient `r`.
    fn run(
        input: [usize; 4],
        weight: [usize; 4],
        bias: bool,
        f: impl Fn(Tensor<4>, Tensor<4>, Option<Tensor<1>>) -> Tensor<4>,
    ) -> Vec<Vec<f32>> {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::from_data(pattern(&input, 1), &device).require_grad();
        let w = Tensor::<4>::from_data(pattern(&weight, 2), &device).require_grad();
        let b =
            bias.then(|| Tensor::<1>::from_data(pattern(&[weight[1]], 3), &device).require_grad());
        let y = f(x.clone(), w.clone(), b.clone());
        let r = Tensor::<4>::from_data(pattern(&y.dims(), 4), &device);
        let grads = (y.clone() * r).sum().backward();
        let values = |t: TensorData| t.try_to_vec::<f32>().unwrap();
        let mut all = vec![
            values(y.into_data()),
            values(x.grad(&grads).unwrap().into_data()),
            values(w.grad(&grads).unwrap().into_data()),
        ];
        if let Some(b) = b {
            all.push(values(b.grad(&grads).unwrap().into_data()));
        }
        all
    }

    fn options(stride: [usize; 2], padding: [usize; 2]) -> ConvTransposeOptions<2> {
        ConvTransposeOptions::new(stride, padding, [0, 0], [1, 1], 1)
    }

    #[test]
    fn block_upsampling_equals_burns_transposed_convolution() {
        for (input, weight, bias) in [
            ([3, 5, 6, 7], [5, 4, 2, 2], true),
            ([1, 8, 5, 5], [8, 3, 2, 2], false),
            ([2, 3, 4, 9], [3, 6, 3, 2], true),
        ] {
            let stride = [weight[2], weight[3]];
            let kiln = run(input, weight, bias, |x, w, b| {
                conv_transpose2d(x, w, b, options(stride, [0, 0]))
            });
            let burn = run(input, weight, bias, |x, w, b| {
                burn::tensor::module::conv_transpose2d(x, w, b, options(stride, [0, 0]))
            });
            for (what, (k, b)) in ["output", "input grad", "weight grad", "bias grad"]
                .iter()
                .zip(kiln.iter().zip(&burn))
            {
                assert_eq!(k.len(), b.len(), "{what} of {weight:?}");
                for (i, (k, b)) in k.iter().zip(b).enumerate() {
                    assert!(
                        (k - b).abs() <= 1e-4 * (1.0 + b.abs()),
                        "{what} of {weight:?} at {i}: {k} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn overlapping_transposed_convolutions_are_burns() {
        // Kernel 4, stride 2, padding 1 (FCN's upsampling) overlaps: Burn's path, same bits.
        let (input, weight) = ([2, 3, 5, 5], [3, 2, 4, 4]);
        let kiln = run(input, weight, true, |x, w, b| {
            conv_transpose2d(x, w, b, options([2, 2], [1, 1]))
        });
        let burn = run(input, weight, true, |x, w, b| {
            burn::tensor::module::conv_transpose2d(x, w, b, options([2, 2], [1, 1]))
        });
        assert_eq!(kiln, burn);
    }
}
