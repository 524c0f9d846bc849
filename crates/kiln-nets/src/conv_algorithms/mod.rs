//! Three ways to compute a forward 2-D convolution (cross-correlation, Burn's and PyTorch's
//! `conv2d` semantics, groups = 1) on CPU buffers, as the course presents them:
//!
//! - [`im2col`]: unfold every receptive field into a column, then one matrix product — simple and
//!   fast, at the cost of a `C·kh·kw × oh·ow` buffer per image;
//! - [`fft`]: pointwise products in the frequency domain — its cost does not grow with the
//!   kernel, so it wins for large kernels;
//! - [`winograd`]: Winograd's minimal filtering F(m×m, 3×3) — fewer multiplications for 3×3
//!   kernels with stride 1.
//!
//! All take NCHW inputs and OIHW weights as `f32` slices and report the extra memory they used.
//! [`conv2d_tensor`] runs one on Burn tensors, for comparison with Burn's own `conv2d`.

pub mod fft;
pub mod im2col;
pub mod winograd;

use burn::tensor::{Tensor, TensorData};

/// Sizes and options of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    /// Images.
    pub batch: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Input height and width.
    pub input: [usize; 2],
    /// Output channels.
    pub out_channels: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride per axis.
    pub stride: [usize; 2],
    /// Zero padding per axis (both sides).
    pub padding: [usize; 2],
    /// Dilation per axis.
    pub dilation: [usize; 2],
}

impl ConvShape {
    /// A stride-1, undilated convolution with `padding`.
    pub fn new(
        batch: usize,
        in_channels: usize,
        input: [usize; 2],
        out_channels: usize,
        kernel: [usize; 2],
        padding: [usize; 2],
    ) -> Self {
        Self {
            batch,
            in_channels,
            input,
            out_channels,
            kernel,
            stride: [1, 1],
            padding,
            dilation: [1, 1],
        }
    }

    /// Extent of the dilated kernel per axis.
    pub fn effective_kernel(&self) -> [usize; 2] {
        [0, 1].map(|a| (self.kernel[a] - 1) * self.dilation[a] + 1)
    }

    /// Output height and width.
    pub fn output(&self) -> [usize; 2] {
        let k = self.effective_kernel();
        [0, 1].map(|a| (self.input[a] + 2 * self.padding[a] - k[a]) / self.stride[a] + 1)
    }

    /// Checks that every size is positive and the kernel fits the padded input.
    pub fn validate(&self) -> Result<(), String> {
        let sizes = [
            self.batch,
            self.in_channels,
            self.out_channels,
            self.input[0],
            self.input[1],
            self.kernel[0],
            self.kernel[1],
            self.stride[0],
            self.stride[1],
            self.dilation[0],
            self.dilation[1],
        ];
        if sizes.contains(&0) {
            return Err(format!(
                "{self:?}: sizes, strides and dilations must be positive"
            ));
        }
        let k = self.effective_kernel();
        if (0..2).any(|a| self.input[a] + 2 * self.padding[a] < k[a]) {
            return Err(format!(
                "{self:?}: the kernel is larger than the padded input"
            ));
        }
        Ok(())
    }

    /// Multiply-adds of the direct computation.
    pub fn macs(&self) -> u64 {
        let [oh, ow] = self.output();
        (self.batch
            * self.out_channels
            * oh
            * ow
            * self.in_channels
            * self.kernel[0]
            * self.kernel[1]) as u64
    }

    fn check_buffers(
        &self,
        input: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
    ) -> Result<(), String> {
        self.validate()?;
        let want_in = self.batch * self.in_channels * self.input[0] * self.input[1];
        let want_w = self.out_channels * self.in_channels * self.kernel[0] * self.kernel[1];
        if input.len() != want_in || weight.len() != want_w {
            return Err(format!(
                "{self:?}: input has {} values (expected {want_in}), weight {} (expected {want_w})",
                input.len(),
                weight.len()
            ));
        }
        if bias.is_some_and(|b| b.len() != self.out_channels) {
            return Err(format!("bias must have {} values", self.out_channels));
        }
        Ok(())
    }
}

/// A convolution's result and the extra memory its algorithm needed.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvOutput {
    /// Output values, NCHW.
    pub values: Vec<f32>,
    /// Bytes of workspace beyond the input, weights and output.
    pub workspace_bytes: usize,
}

/// Which algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvAlgorithm {
    /// Unfold + matrix product.
    Im2col,
    /// Frequency-domain products.
    Fft,
    /// Winograd F(2×2, 3×3).
    Winograd2x2,
    /// Winograd F(4×4, 3×3).
    Winograd4x4,
}

impl ConvAlgorithm {
    /// Every algorithm.
    pub const ALL: [Self; 4] = [
        Self::Im2col,
        Self::Fft,
        Self::Winograd2x2,
        Self::Winograd4x4,
    ];

    /// Whether the algorithm computes this convolution (Winograd: 3×3, stride 1, no dilation).
    pub fn supports(self, shape: &ConvShape) -> bool {
        match self {
            Self::Im2col | Self::Fft => true,
            Self::Winograd2x2 | Self::Winograd4x4 => {
                shape.kernel == [3, 3] && shape.stride == [1, 1] && shape.dilation == [1, 1]
            }
        }
    }

    /// Runs the algorithm.
    pub fn run(
        self,
        shape: &ConvShape,
        input: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
    ) -> Result<ConvOutput, String> {
        shape.check_buffers(input, weight, bias)?;
        if !self.supports(shape) {
            return Err(format!("{self:?} does not support {shape:?}"));
        }
        Ok(match self {
            Self::Im2col => im2col::conv2d(shape, input, weight, bias),
            Self::Fft => fft::conv2d(shape, input, weight, bias),
            Self::Winograd2x2 => winograd::conv2d(winograd::Tile::F2x2, shape, input, weight, bias),
            Self::Winograd4x4 => winograd::conv2d(winograd::Tile::F4x4, shape, input, weight, bias),
        })
    }
}

/// Runs `algorithm` on Burn tensors (copied to and from the host): input `[n, c, h, w]`,
/// weight `[o, c, kh, kw]`, optional bias `[o]`.
pub fn conv2d_tensor(
    algorithm: ConvAlgorithm,
    input: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
) -> Result<Tensor<4>, String> {
    let [n, c, h, w] = input.dims();
    let [o, wc, kh, kw] = weight.dims();
    if wc != c {
        return Err(format!(
            "weight expects {wc} input channels, the input has {c}"
        ));
    }
    let shape = ConvShape {
        batch: n,
        in_channels: c,
        input: [h, w],
        out_channels: o,
        kernel: [kh, kw],
        stride,
        padding,
        dilation,
    };
    let device = input.device();
    let read = |t: TensorData| t.try_to_vec::<f32>().map_err(|e| format!("{e:?}"));
    let x = read(input.into_data())?;
    let k = read(weight.into_data())?;
    let b = bias.map(|b| read(b.into_data())).transpose()?;
    let out = algorithm.run(&shape, &x, &k, b.as_deref())?;
    let [oh, ow] = shape.output();
    Ok(Tensor::from_data(
        TensorData::new(out.values, [n, o, oh, ow]),
        &device,
    ))
}

/// `c[m×n] = a[m×k] · b[k×n]` for row-major buffers (overwriting `c`), with `gemm`'s
/// AVX-512/AVX2 kernels; `parallel` splits the product over rayon's threads.
pub(crate) fn matmul(a: &[f32], b: &[f32], c: &mut [f32], [m, k, n]: [usize; 3], parallel: bool) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above keep every access of the row-major m×k, k×n and m×n views in
    // bounds, and `c` is exclusively borrowed.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Adds `bias[o]` to every value of output channel `o`.
pub(crate) fn add_bias(values: &mut [f32], bias: Option<&[f32]>, plane: usize) {
    if let Some(bias) = bias {
        for (i, chunk) in values.chunks_exact_mut(plane).enumerate() {
            let b = bias[i % bias.len()];
            chunk.iter_mut().for_each(|v| *v += b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::{Device, Distribution};

    fn relative_error(a: &Tensor<4>, b: &Tensor<4>) -> f32 {
        let diff: f32 = (a.clone() - b.clone()).abs().max().into_scalar();
        let scale: f32 = b.clone().abs().max().into_scalar();
        diff / scale.max(1e-12)
    }

    /// Every algorithm against Burn's conv2d over shapes covering padding, stride, dilation,
    /// odd and even sizes and rectangular kernels.
    #[test]
    fn every_algorithm_matches_burn_conv2d() {
        let device = Device::flex();
        device.seed(5);
        let case = |n, c, input, o, kernel, padding, stride, dilation| ConvShape {
            batch: n,
            in_channels: c,
            input,
            out_channels: o,
            kernel,
            stride,
            padding,
            dilation,
        };
        let cases = [
            case(2, 3, [8, 8], 4, [3, 3], [1, 1], [1, 1], [1, 1]),
            case(1, 5, [7, 9], 6, [3, 3], [0, 0], [1, 1], [1, 1]),
            case(3, 4, [11, 6], 2, [3, 3], [2, 1], [1, 1], [1, 1]),
            case(2, 3, [10, 10], 4, [5, 5], [2, 2], [1, 1], [1, 1]),
            case(1, 2, [16, 16], 3, [7, 7], [3, 3], [2, 2], [1, 1]),
            case(2, 2, [12, 13], 3, [3, 2], [1, 0], [2, 1], [2, 1]),
            case(1, 3, [20, 20], 2, [11, 11], [5, 5], [4, 4], [1, 1]),
            case(1, 16, [9, 9], 8, [3, 3], [1, 1], [1, 1], [1, 1]),
            case(2, 1, [5, 5], 1, [1, 1], [0, 0], [1, 1], [1, 1]),
        ];
        for shape in cases {
            let (n, c, [h, w], o, k) = (
                shape.batch,
                shape.in_channels,
                shape.input,
                shape.out_channels,
                shape.kernel,
            );
            let (pad, stride, dilation) = (shape.padding, shape.stride, shape.dilation);
            let x = Tensor::<4>::random([n, c, h, w], Distribution::Normal(0.0, 1.0), &device);
            let wt =
                Tensor::<4>::random([o, c, k[0], k[1]], Distribution::Normal(0.0, 1.0), &device);
            let b = Tensor::<1>::random([o], Distribution::Normal(0.0, 1.0), &device);
            let expected = conv2d(
                x.clone(),
                wt.clone(),
                Some(b.clone()),
                ConvOptions::new(stride, pad, dilation, 1),
            );
            for algorithm in ConvAlgorithm::ALL {
                if !algorithm.supports(&shape) {
                    continue;
                }
                let got = conv2d_tensor(
                    algorithm,
                    x.clone(),
                    wt.clone(),
                    Some(b.clone()),
                    stride,
                    pad,
                    dilation,
                )
                .unwrap();
                assert_eq!(got.dims(), expected.dims(), "{algorithm:?} {shape:?}");
                let err = relative_error(&got, &expected);
                assert!(err < 1e-4, "{algorithm:?} {shape:?}: relative error {err}");
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        let shape = ConvShape::new(1, 2, [4, 4], 3, [5, 5], [0, 0]);
        assert!(shape.validate().is_err());
        let ok = ConvShape::new(1, 2, [4, 4], 3, [3, 3], [1, 1]);
        let err = ConvAlgorithm::Im2col
            .run(&ok, &[0.0; 5], &[0.0; 54], None)
            .unwrap_err();
        assert!(err.contains("expected 32"), "{err}");
        let strided = ConvShape {
            stride: [2, 2],
            ..ok
        };
        assert!(!ConvAlgorithm::Winograd2x2.supports(&strided));
        assert!(
            ConvAlgorithm::Winograd4x4
                .run(&strided, &[0.0; 32], &[0.0; 54], None)
                .is_err()
        );
    }
}
