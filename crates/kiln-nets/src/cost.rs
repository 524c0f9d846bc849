//! What a network costs: trainable parameters and multiply-adds of a forward pass.

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{Linear, PaddingConfig2d};
use burn::tensor::Tensor;

struct CountTrainable(usize);

impl ModuleVisitor for CountTrainable {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if param.is_require_grad() {
            self.0 += param.lazy_shape().num_elements();
        }
    }
}

/// Parameters the optimizer updates (Burn's `num_params` also counts frozen parameters and
/// batch-norm running statistics). Count on an autodiff device: elsewhere nothing is trained.
pub fn trainable_params<M: Module>(module: &M) -> usize {
    let mut count = CountTrainable(0);
    module.visit(&mut count);
    count.0
}

/// Multiply-adds of `conv` on a `[channels, h, w]` input, and the output's `[h, w]`.
pub fn conv_macs(conv: &Conv2d, input: [usize; 2]) -> (u64, [usize; 2]) {
    let [out_c, in_per_group, kh, kw] = conv.weight.dims();
    let (ekh, ekw) = (
        (kh - 1) * conv.dilation[0] + 1,
        (kw - 1) * conv.dilation[1] + 1,
    );
    let (pad_h, pad_w) = match conv.padding {
        PaddingConfig2d::Valid => (0, 0),
        PaddingConfig2d::Same => (ekh - 1, ekw - 1),
        PaddingConfig2d::Explicit(top, left, bottom, right) => (top + bottom, left + right),
    };
    let side = |n: usize, k: usize, s: usize, p: usize| (n + p).saturating_sub(k) / s + 1;
    let h = side(input[0], ekh, conv.stride[0], pad_h);
    let w = side(input[1], ekw, conv.stride[1], pad_w);
    ((h * w * out_c * in_per_group * kh * kw) as u64, [h, w])
}

/// Multiply-adds of a linear layer on one input vector.
pub fn linear_macs(linear: &Linear) -> u64 {
    let [i, o] = linear.weight.dims();
    (i * o) as u64
}

/// Networks that can report their forward multiply-adds for one image.
pub trait ForwardCost {
    /// Multiply-adds of convolutions and linear layers for one `[h, w]` image (normalisation,
    /// activations and pooling are left out: they are a few percent).
    fn macs(&self, image_size: [usize; 2]) -> u64;
}

impl ForwardCost for crate::ConvNet {
    fn macs(&self, image_size: [usize; 2]) -> u64 {
        let mut size = image_size;
        let mut total = 0;
        let mut layer = 0;
        for &n in &self.stage_lengths {
            for _ in 0..n {
                let (m, s) = conv_macs(&self.convs[layer], size);
                total += m;
                size = s;
                layer += 1;
            }
            size = [size[0] / 2, size[1] / 2];
        }
        total + self.hidden.iter().map(linear_macs).sum::<u64>() + linear_macs(&self.head)
    }
}

impl ForwardCost for crate::CifarResNet {
    fn macs(&self, image_size: [usize; 2]) -> u64 {
        let (mut total, mut size) = conv_macs(&self.conv1, image_size);
        for block in &self.blocks {
            let (m1, s1) = conv_macs(&block.conv1, size);
            let (m2, s2) = conv_macs(&block.conv2, s1);
            total += m1 + m2;
            if let Some(p) = &block.downsample {
                total += conv_macs(&p.conv, size).0;
            }
            size = s2;
        }
        total + linear_macs(&self.head)
    }
}

impl ForwardCost for crate::AirbenchNet {
    fn macs(&self, image_size: [usize; 2]) -> u64 {
        let (mut total, mut size) = conv_macs(&self.whiten, image_size);
        for g in &self.groups {
            let (m1, s1) = conv_macs(&g.conv1, size);
            let pooled = [s1[0] / 2, s1[1] / 2];
            let (m2, s2) = conv_macs(&g.conv2, pooled);
            total += m1 + m2;
            size = s2;
        }
        total + linear_macs(&self.head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AirbenchConfig, ConvNetConfig};
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Device, Distribution};

    #[test]
    fn conv_macs_match_the_formula_and_the_real_output() {
        let device = Device::flex();
        let conv = Conv2dConfig::new([3, 8], [5, 5])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        let (macs, size) = conv_macs(&conv, [17, 13]);
        let y = conv.forward(Tensor::<4>::random(
            [1, 3, 17, 13],
            Distribution::Default,
            &device,
        ));
        assert_eq!([y.dims()[2], y.dims()[3]], size);
        assert_eq!(macs, (size[0] * size[1] * 8 * 3 * 25) as u64);
    }

    #[test]
    fn network_costs() {
        let device = Device::flex().autodiff();
        let bench = ConvNetConfig::benchmark(3, 10, [32, 32]).init(&device);
        // 32²·64·27 + 16²·128·576 + 8²·256·1152 + 4096·10
        assert_eq!(
            bench.macs([32, 32]),
            1_769_472 + 18_874_368 + 18_874_368 + 40_960
        );
        let air = AirbenchConfig::new().init(&device);
        // The whitening weights and batch-norm scales are frozen.
        let convs = 24 * 64 * 9 + 64 * 64 * 9 + 64 * 256 * 9 + 256 * 256 * 9 * 3;
        let biases = 24 + 2 * (64 + 256 + 256);
        assert_eq!(trainable_params(&air), convs + biases + 2560);
        assert!(air.macs([32, 32]) > 100_000_000);
    }
}
