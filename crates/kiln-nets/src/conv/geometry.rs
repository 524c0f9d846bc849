//! Sizes of one 2-D convolution and where each kernel tap lands in the input.

use burn::tensor::ops::ConvOptions;

/// Sizes and options of one 2-D convolution (NCHW input, OIHW weight), as Burn's `conv2d`
/// defines them. Padding may differ per side: the padding before each axis decides where taps
/// land, the padding after it only how many outputs there are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Images.
    pub batch: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Channel groups.
    pub groups: usize,
    /// Input height and width.
    pub input: [usize; 2],
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride per axis.
    pub stride: [usize; 2],
    /// Zero padding before each axis (top, left).
    pub padding: [usize; 2],
    /// Dilation per axis.
    pub dilation: [usize; 2],
    /// Output height and width.
    pub output: [usize; 2],
}

impl ConvGeometry {
    /// The geometry of `conv2d(x, weight, options)` for an input of shape `x` and a weight of
    /// shape `weight`, or `None` when the two do not make a convolution (channels that do not
    /// match the groups, a kernel larger than the padded input).
    pub fn new(x: [usize; 4], weight: [usize; 4], options: &ConvOptions<2>) -> Option<Self> {
        let [batch, in_channels, h, w] = x;
        let [out_channels, per_group, kh, kw] = weight;
        let groups = options.groups;
        if groups == 0
            || in_channels != per_group * groups
            || out_channels % groups != 0
            || out_channels == 0
        {
            return None;
        }
        let input = [h, w];
        let kernel = [kh, kw];
        let mut output = [0; 2];
        for axis in 0..2 {
            let (begin, end) = options.padding[axis];
            let span = options.dilation[axis] * (kernel[axis].checked_sub(1)?) + 1;
            let padded = input[axis] + begin + end;
            output[axis] = padded.checked_sub(span)? / options.stride[axis] + 1;
        }
        Some(Self {
            batch,
            in_channels,
            out_channels,
            groups,
            input,
            kernel,
            stride: options.stride,
            padding: options.padding.map(|(begin, _)| begin),
            dilation: options.dilation,
            output,
        })
    }

    /// One filter per channel (`groups = in = out channels`), as in MobileNet and EfficientNet.
    pub fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.groups == self.in_channels && self.groups == self.out_channels
    }

    /// A 1×1, stride-1, unpadded convolution: a matrix product per image.
    pub fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1]
            && self.stride == [1, 1]
            && self.padding == [0, 0]
            && self.output == self.input
    }

    /// Elements of one input image, one output image and the weight.
    pub fn sizes(&self) -> (usize, usize, usize) {
        let [h, w] = self.input;
        let [oh, ow] = self.output;
        let [kh, kw] = self.kernel;
        (
            self.in_channels * h * w,
            self.out_channels * oh * ow,
            self.out_channels * self.in_channels / self.groups * kh * kw,
        )
    }

    /// The outputs along `axis` whose tap `tap` reads inside the input, as a half-open range,
    /// and the input position the first of them reads.
    pub fn tap_range(&self, axis: usize, tap: usize) -> (usize, usize, usize) {
        let (stride, pad) = (self.stride[axis], self.padding[axis]);
        let offset = tap * self.dilation[axis];
        let n = self.input[axis];
        // input = out·stride + offset − pad must lie in [0, n).
        let first = if pad > offset {
            (pad - offset).div_ceil(stride)
        } else {
            0
        };
        let end = if n + pad > offset {
            ((n + pad - offset - 1) / stride + 1).min(self.output[axis])
        } else {
            0
        };
        let end = end.max(first);
        (first, end, (first * stride + offset).saturating_sub(pad))
    }
}

impl ConvGeometry {
    /// Calls `visit(tap, oy, iy, outputs, first_input)` for every kernel tap
    /// `tap = ky·kw + kx` and output row `oy` whose input row `iy` is inside the input, with the
    /// output columns `outputs` whose tap reads inside the row, the first of them reading input
    /// column `first_input`. Rows go outermost per `ky`, so one output row stays in cache across
    /// its `kw` taps. Always inlined, so `visit` compiles with its caller's vector extensions.
    #[inline(always)]
    pub fn for_each_row_tap(
        &self,
        mut visit: impl FnMut(usize, usize, usize, std::ops::Range<usize>, usize),
    ) {
        let [kh, kw] = self.kernel;
        let columns: Vec<(usize, usize, usize)> = (0..kw).map(|kx| self.tap_range(1, kx)).collect();
        for ky in 0..kh {
            let (first_row, end_row, first_iy) = self.tap_range(0, ky);
            for oy in first_row..end_row {
                let iy = first_iy + (oy - first_row) * self.stride[0];
                for (kx, &(first, end, start)) in columns.iter().enumerate() {
                    if first < end {
                        visit(ky * kw + kx, oy, iy, first..end, start);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(
        input: usize,
        kernel: usize,
        stride: usize,
        pad: (usize, usize),
        dil: usize,
    ) -> ConvGeometry {
        let options = ConvOptions::new_with_padding([stride; 2], [pad; 2], [dil; 2], 1);
        ConvGeometry::new([1, 1, input, input], [1, 1, kernel, kernel], &options).unwrap()
    }

    #[test]
    fn output_sizes_follow_burns_formula() {
        assert_eq!(geometry(7, 3, 1, (1, 1), 1).output, [7, 7]);
        assert_eq!(geometry(7, 3, 2, (1, 1), 1).output, [4, 4]);
        assert_eq!(geometry(8, 3, 2, (0, 1), 1).output, [4, 4]);
        assert_eq!(geometry(9, 3, 1, (2, 2), 2).output, [9, 9]);
        let options = ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
        assert!(ConvGeometry::new([1, 1, 2, 2], [1, 1, 3, 3], &options).is_none());
        assert!(ConvGeometry::new([1, 3, 4, 4], [2, 2, 1, 1], &options).is_none());
    }

    #[test]
    fn tap_ranges_are_exactly_the_outputs_that_read_inside() {
        for (input, kernel, stride, pad, dil) in [
            (7, 3, 1, (1, 1), 1),
            (7, 3, 2, (1, 1), 1),
            (8, 5, 2, (1, 2), 1),
            (9, 3, 1, (2, 2), 2),
            (5, 3, 3, (0, 0), 1),
        ] {
            let g = geometry(input, kernel, stride, pad, dil);
            for tap in 0..kernel {
                let (first, end, start) = g.tap_range(0, tap);
                let inside: Vec<usize> = (0..g.output[0])
                    .filter(|&o| {
                        let i = (o * stride + tap * dil) as isize - pad.0 as isize;
                        i >= 0 && i < input as isize
                    })
                    .collect();
                assert_eq!(
                    (first..end).collect::<Vec<_>>(),
                    inside,
                    "{input} {kernel} {stride} {pad:?} {dil} tap {tap}"
                );
                if first < end {
                    assert_eq!(start, first * stride + tap * dil - pad.0);
                }
            }
        }
    }
}
