//! The course's convolution design rules as interchangeable blocks of the same receptive field:
//! one large N×N convolution, a stack of 3×3 convolutions, a 1×1 bottleneck around an N×N
//! convolution, and N×N factored into 1×N followed by N×1. [`compare`] prints what each costs.

use burn::config::Config;
use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::cost::{conv_macs, trainable_params};

/// Which way to cover an N×N receptive field.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum DesignRule {
    /// One N×N convolution.
    Single,
    /// (N−1)/2 stacked 3×3 convolutions with ReLUs between them.
    Stacked3x3,
    /// 1×1 down to `channels / reduction`, N×N, 1×1 back up.
    Bottleneck {
        /// Channel reduction factor of the bottleneck.
        reduction: usize,
    },
    /// 1×N then N×1.
    Factored,
}

impl DesignRule {
    /// The rule in words, for tables (e.g. `1×1 bottleneck (C/4)`).
    pub fn describe(&self) -> String {
        match self {
            DesignRule::Single => "one N×N conv".into(),
            DesignRule::Stacked3x3 => "stacked 3×3 convs".into(),
            DesignRule::Bottleneck { reduction } => format!("1×1 bottleneck (C/{reduction})"),
            DesignRule::Factored => "1×N + N×1".into(),
        }
    }
}

/// Configuration of a [`DesignBlock`]: `channels` in and out, receptive field `kernel`×`kernel`.
#[derive(Config, Debug)]
pub struct DesignBlockConfig {
    /// Input and output channels.
    pub channels: usize,
    /// Side of the receptive field (odd).
    pub kernel: usize,
    /// How to build it.
    pub rule: DesignRule,
}

impl DesignBlockConfig {
    /// Checks that the rule can build this receptive field.
    pub fn validate(&self) -> Result<(), String> {
        if self.kernel.is_multiple_of(2) || self.channels == 0 {
            return Err(format!(
                "kernel {} must be odd and channels positive",
                self.kernel
            ));
        }
        if let DesignRule::Bottleneck { reduction } = self.rule
            && (reduction == 0 || !self.channels.is_multiple_of(reduction))
        {
            return Err(format!(
                "bottleneck reduction {reduction} must divide {} channels",
                self.channels
            ));
        }
        Ok(())
    }

    /// Builds the block ("same" padding everywhere, so every rule keeps the spatial size).
    ///
    /// # Panics
    ///
    /// When [`DesignBlockConfig::validate`] fails.
    pub fn init(&self, device: &Device) -> DesignBlock {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let c = self.channels;
        let conv = |i: usize, o: usize, kh: usize, kw: usize| {
            Conv2dConfig::new([i, o], [kh, kw])
                .with_padding(PaddingConfig2d::Same)
                .with_bias(false)
                .init(device)
        };
        let n = self.kernel;
        let convs = match self.rule {
            DesignRule::Single => vec![conv(c, c, n, n)],
            DesignRule::Stacked3x3 => (0..(n / 2).max(1)).map(|_| conv(c, c, 3, 3)).collect(),
            DesignRule::Bottleneck { reduction } => {
                let r = c / reduction;
                vec![conv(c, r, 1, 1), conv(r, r, n, n), conv(r, c, 1, 1)]
            }
            DesignRule::Factored => vec![conv(c, c, 1, n), conv(c, c, n, 1)],
        };
        DesignBlock { convs }
    }
}

/// A sequence of convolutions with ReLUs between them.
#[derive(Module, Debug)]
pub struct DesignBlock {
    /// The convolutions in order.
    pub convs: Vec<Conv2d>,
}

impl DesignBlock {
    /// Applies the convolutions, with a ReLU after all but the last.
    pub fn forward(&self, mut x: Tensor<4>) -> Tensor<4> {
        let last = self.convs.len() - 1;
        for (i, conv) in self.convs.iter().enumerate() {
            x = crate::conv::forward(conv, x);
            if i < last {
                x = relu(x);
            }
        }
        x
    }

    /// Multiply-adds on one `[channels, h, w]` input.
    pub fn macs(&self, size: [usize; 2]) -> u64 {
        let mut size = size;
        self.convs
            .iter()
            .map(|c| {
                let (m, s) = conv_macs(c, size);
                size = s;
                m
            })
            .sum()
    }
}

/// One row of a design-rule comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct DesignCost {
    /// Receptive field side.
    pub kernel: usize,
    /// The rule.
    pub rule: DesignRule,
    /// Convolution layers.
    pub layers: usize,
    /// Parameters.
    pub params: usize,
    /// Multiply-adds per image.
    pub macs: u64,
}

/// Costs of every rule for each receptive field in `kernels`, at `channels` channels on
/// `size`×`size` feature maps. `device` should be an autodiff device so parameters count as
/// trainable.
pub fn compare(
    channels: usize,
    size: usize,
    kernels: &[usize],
    device: &Device,
) -> Vec<DesignCost> {
    let rules = [
        DesignRule::Single,
        DesignRule::Stacked3x3,
        DesignRule::Bottleneck { reduction: 4 },
        DesignRule::Factored,
    ];
    kernels
        .iter()
        .flat_map(|&kernel| {
            rules.iter().map(move |&rule| {
                let block = DesignBlockConfig::new(channels, kernel, rule).init(device);
                DesignCost {
                    kernel,
                    rule,
                    layers: block.convs.len(),
                    params: trainable_params(&block),
                    macs: block.macs([size, size]),
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn every_rule_keeps_the_shape() {
        let device = Device::flex();
        let x = Tensor::<4>::random([2, 8, 9, 9], Distribution::Default, &device);
        for rule in [
            DesignRule::Single,
            DesignRule::Stacked3x3,
            DesignRule::Bottleneck { reduction: 4 },
            DesignRule::Factored,
        ] {
            let block = DesignBlockConfig::new(8, 7, rule).init(&device);
            assert_eq!(block.forward(x.clone()).dims(), [2, 8, 9, 9], "{rule:?}");
        }
        assert!(
            DesignBlockConfig::new(6, 5, DesignRule::Bottleneck { reduction: 4 })
                .validate()
                .is_err()
        );
    }

    #[test]
    fn stacked_3x3_costs_less_than_one_large_kernel() {
        let device = Device::flex().autodiff();
        let rows = compare(64, 32, &[5, 7], &device);
        let find = |k: usize, rule: DesignRule| {
            rows.iter()
                .find(|r| r.kernel == k && r.rule == rule)
                .unwrap()
                .clone()
        };
        // The course's numbers: 7×7 → 49 C², three 3×3 → 27 C².
        assert_eq!(find(7, DesignRule::Single).params, 49 * 64 * 64);
        assert_eq!(find(7, DesignRule::Stacked3x3).params, 27 * 64 * 64);
        assert_eq!(find(5, DesignRule::Stacked3x3).params, 18 * 64 * 64);
        assert_eq!(find(7, DesignRule::Factored).params, 14 * 64 * 64);
        // Bottleneck: C·C/4 + 49·(C/4)² + C/4·C.
        assert_eq!(
            find(7, DesignRule::Bottleneck { reduction: 4 }).params,
            2 * 64 * 16 + 49 * 16 * 16
        );
        assert_eq!(
            find(7, DesignRule::Single).macs,
            (32 * 32 * 49 * 64 * 64) as u64
        );
    }
}
