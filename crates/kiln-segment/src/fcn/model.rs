//! The fully convolutional network (Long, Shelhamer & Darrell 2015) on a kiln-nets backbone:
//! 1×1 score layers on the stride-32 map (FCN-32s), plus the stride-16 map (16s) and the
//! stride-8 map (8s), each coarser score map upsampled ×2 and added to the next finer one, the
//! sum upsampled to the input.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Dropout, DropoutConfig, Initializer};
use burn::tensor::{Device, Tensor};
use kiln_nets::Backbone;
use kiln_nets::conv;
use kiln_nets::zoo::Network;
use serde::{Deserialize, Serialize};

use super::upsample::Upsample;
use crate::{Result, SegmentError};

/// How fine the finest skip is: the stride of the map the prediction is last refined at.
/// Variants order coarse to fine: `Fcn32s < Fcn16s < Fcn8s`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FcnVariant {
    /// Scores of the stride-32 map alone.
    #[serde(rename = "32s")]
    Fcn32s,
    /// Plus the stride-16 map.
    #[serde(rename = "16s")]
    Fcn16s,
    /// Plus the stride-16 and stride-8 maps.
    #[default]
    #[serde(rename = "8s")]
    Fcn8s,
}

impl FcnVariant {
    /// The stride of the finest map scored (32, 16 or 8).
    pub fn stride(self) -> usize {
        match self {
            Self::Fcn32s => 32,
            Self::Fcn16s => 16,
            Self::Fcn8s => 8,
        }
    }

    /// `FCN-8s` etc.
    pub fn name(self) -> String {
        format!("FCN-{}s", self.stride())
    }
}

/// The head's settings (`[fcn]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FcnConfig {
    /// Which FCN.
    pub variant: FcnVariant,
    /// Whether the ×2 upsamplings between skips learn (FCN: yes, starting bilinear).
    pub learn_skip_upsampling: bool,
    /// Whether the final upsampling to the input learns (FCN: no, fixed bilinear).
    pub learn_final_upsampling: bool,
    /// Dropout on the stride-32 features before scoring (FCN keeps VGG's 0.5 in fc6/fc7).
    pub dropout: f64,
}

impl Default for FcnConfig {
    fn default() -> Self {
        Self {
            variant: FcnVariant::Fcn8s,
            learn_skip_upsampling: true,
            learn_final_upsampling: false,
            dropout: 0.1,
        }
    }
}

impl FcnConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(SegmentError::invalid(
                "[fcn] dropout",
                format!("{} is not in [0, 1)", self.dropout),
            ));
        }
        Ok(())
    }

    /// FCN on `backbone` for `classes` classes, with zero-initialised score layers (as the
    /// paper initialises them) and bilinear upsampling.
    ///
    /// # Errors
    /// When the backbone has no map at a stride the variant needs.
    pub fn init(&self, backbone: Network, classes: usize, device: &Device) -> Result<Fcn> {
        let (score16, up32) = self.skip(&backbone, 16, classes, device)?.unzip();
        let (score8, up16) = self.skip(&backbone, 8, classes, device)?.unzip();
        let score32 = score_layer(&backbone, 32, classes, device)?;
        let finest = self.variant.stride();
        Ok(Fcn {
            backbone,
            dropout: DropoutConfig::new(self.dropout).init(),
            score32,
            score16,
            score8,
            up32,
            up16,
            output: Upsample::new(classes, finest, self.learn_final_upsampling, device),
        })
    }

    /// The skip from the map at `stride` when the variant reaches it: its score layer and the
    /// ×2 upsampling of the coarser scores it is added to.
    fn skip(
        &self,
        backbone: &Network,
        stride: usize,
        classes: usize,
        device: &Device,
    ) -> Result<Option<(Conv2d, Upsample)>> {
        if self.variant.stride() > stride {
            return Ok(None);
        }
        Ok(Some((
            score_layer(backbone, stride, classes, device)?,
            Upsample::new(classes, 2, self.learn_skip_upsampling, device),
        )))
    }
}

/// A zero-initialised 1×1 convolution from the backbone's map at `stride` to class scores.
fn score_layer(
    backbone: &Network,
    stride: usize,
    classes: usize,
    device: &Device,
) -> Result<Conv2d> {
    let levels = backbone.feature_levels();
    let level = levels.iter().find(|l| l.stride == stride).ok_or_else(|| {
        SegmentError::invalid(
            "[backbone]",
            format!(
                "the backbone has no stride-{stride} feature map (it has strides {:?}); FCN needs 8, 16 and 32",
                levels.iter().map(|l| l.stride).collect::<Vec<_>>()
            ),
        )
    })?;
    Ok(Conv2dConfig::new([level.channels, classes], [1, 1])
        .with_initializer(Initializer::Zeros)
        .init(device))
}

/// FCN-32s, 16s or 8s (the variant is which skips exist).
#[derive(Module, Debug)]
pub struct Fcn {
    /// The pretrained backbone (its classifier unused).
    pub backbone: Network,
    /// Dropout on the stride-32 features.
    pub dropout: Dropout,
    /// Scores of the stride-32 map.
    pub score32: Conv2d,
    /// Scores of the stride-16 map (16s, 8s).
    pub score16: Option<Conv2d>,
    /// Scores of the stride-8 map (8s).
    pub score8: Option<Conv2d>,
    /// ×2 from stride 32 to 16 (16s, 8s).
    pub up32: Option<Upsample>,
    /// ×2 from stride 16 to 8 (8s).
    pub up16: Option<Upsample>,
    /// From the finest scored stride to the input.
    pub output: Upsample,
}

impl Fcn {
    /// Which FCN this is.
    pub fn variant(&self) -> FcnVariant {
        match (&self.score16, &self.score8) {
            (_, Some(_)) => FcnVariant::Fcn8s,
            (Some(_), None) => FcnVariant::Fcn16s,
            _ => FcnVariant::Fcn32s,
        }
    }

    /// Number of classes scored.
    pub fn classes(&self) -> usize {
        self.score32.weight.dims()[0]
    }

    /// Class logits `[batch, classes, h, w]` of images `[batch, 3, h, w]` (`h`, `w` multiples
    /// of 32).
    pub fn forward(&self, images: Tensor<4>) -> Tensor<4> {
        let maps = self.backbone.feature_maps(images);
        let map = |stride| {
            maps.at_stride(stride)
                .cloned()
                .expect("the backbone was checked for this stride when the head was built")
        };
        let mut scores =
            conv::forward(&self.score32, self.dropout.forward(maps.coarsest().clone()));
        if let (Some(up), Some(skip)) = (&self.up32, &self.score16) {
            scores = up.forward(scores) + conv::forward(skip, map(16));
        }
        if let (Some(up), Some(skip)) = (&self.up16, &self.score8) {
            scores = up.forward(scores) + conv::forward(skip, map(8));
        }
        self.output.forward(scores)
    }

    /// This network grown to a finer `config.variant`, as FCN trains 16s from 32s and 8s from
    /// 16s: trained layers kept, new skips zero-initialised (so the output starts as this
    /// network's, up to the final interpolation), and the final upsampling replaced.
    pub fn grown(self, config: &FcnConfig, device: &Device) -> Result<Fcn> {
        let target = config.variant;
        if target < self.variant() {
            return Err(SegmentError::invalid(
                "[fcn] init",
                format!(
                    "cannot start {} from a trained {}: a network only grows finer skips (32s → 16s → 8s)",
                    target.name(),
                    self.variant().name()
                ),
            ));
        }
        let classes = self.classes();
        let mut grown = self;
        if grown.score16.is_none() {
            (grown.score16, grown.up32) =
                config.skip(&grown.backbone, 16, classes, device)?.unzip();
        }
        if grown.score8.is_none() {
            (grown.score8, grown.up16) = config.skip(&grown.backbone, 8, classes, device)?.unzip();
        }
        grown.output = Upsample::new(
            classes,
            target.stride(),
            config.learn_final_upsampling,
            device,
        );
        Ok(grown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use kiln_nets::Architecture;

    fn backbone(device: &Device) -> Network {
        Architecture::parse("efficientnet-lite0")
            .unwrap()
            .init(1, device)
    }

    #[test]
    fn each_variant_scores_every_pixel_and_starts_at_zero() {
        let device = Device::flex();
        let images = Tensor::<4>::random([1, 3, 64, 96], Distribution::Normal(0.0, 1.0), &device);
        for variant in [FcnVariant::Fcn32s, FcnVariant::Fcn16s, FcnVariant::Fcn8s] {
            let config = FcnConfig {
                variant,
                ..FcnConfig::default()
            };
            let net = config.init(backbone(&device), 5, &device).unwrap();
            assert_eq!(net.variant(), variant);
            let logits = net.valid().forward(images.clone());
            assert_eq!(logits.dims(), [1, 5, 64, 96]);
            // Zero-initialised score layers: every logit starts at 0.
            let max = logits.abs().max().into_scalar::<f32>();
            assert_eq!(max, 0.0, "{variant:?}");
        }
    }

    #[test]
    fn torchvision_resnets_plug_in_the_same_way() {
        // ResNet-18's maps at strides 8, 16 and 32 have 128, 256 and 512 channels.
        let device = Device::flex();
        let resnet = Architecture::parse("resnet18").unwrap().init(1, &device);
        let net = FcnConfig::default().init(resnet, 4, &device).unwrap();
        assert_eq!(net.score8.as_ref().unwrap().weight.dims(), [4, 128, 1, 1]);
        assert_eq!(net.score16.as_ref().unwrap().weight.dims(), [4, 256, 1, 1]);
        assert_eq!(net.score32.weight.dims(), [4, 512, 1, 1]);
        let images = Tensor::<4>::random([1, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
        assert_eq!(net.valid().forward(images).dims(), [1, 4, 64, 64]);
    }

    #[test]
    fn growing_keeps_the_trained_layers_and_only_goes_finer() {
        let device = Device::flex();
        let mut net = FcnConfig {
            variant: FcnVariant::Fcn32s,
            ..FcnConfig::default()
        }
        .init(backbone(&device), 3, &device)
        .unwrap();
        // Give the stride-32 scores something learnt.
        net.score32.weight = net
            .score32
            .weight
            .map(|w| w.random_like(Distribution::Normal(0.0, 0.1)));
        let before = net.score32.weight.val();
        let config = FcnConfig::default();
        let grown = net.grown(&config, &device).unwrap();
        assert_eq!(grown.variant(), FcnVariant::Fcn8s);
        assert_eq!(grown.output.factor, 8);
        grown
            .score32
            .weight
            .val()
            .into_data()
            .assert_eq(&before.into_data(), true);
        // The new skips are zero-initialised: they add nothing until they learn.
        let images = Tensor::<4>::random([1, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
        let skip16 = grown.score16.as_ref().unwrap().forward(
            grown
                .backbone
                .feature_maps(images)
                .at_stride(16)
                .unwrap()
                .clone(),
        );
        assert_eq!(skip16.abs().max().into_scalar::<f32>(), 0.0);
        let back = FcnConfig {
            variant: FcnVariant::Fcn16s,
            ..FcnConfig::default()
        };
        let err = grown.grown(&back, &device).unwrap_err().to_string();
        assert!(
            err.contains("cannot start FCN-16s from a trained FCN-8s"),
            "{err}"
        );
    }
}
