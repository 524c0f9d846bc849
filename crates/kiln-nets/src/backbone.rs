//! What kiln's networks promise the code that uses them: class scores ([`ImageClassifier`]) and
//! feature maps by stride ([`Backbone`]).
//!
//! A detector or a segmentation head takes any [`Backbone`]: it asks for the maps' strides and
//! channel counts once ([`Backbone::feature_levels`]) to size its own layers, then receives the
//! maps themselves from [`Backbone::feature_maps`] in the same order, finest first.
//!
//! ```ignore
//! use kiln_nets::{Backbone, EfficientNetLiteConfig};
//!
//! let net = EfficientNetLiteConfig::lite0(1000).init(&device);
//! let maps = net.feature_maps(images);          // strides 2, 4, 8, 16, 32
//! let c5 = maps.at_stride(32).unwrap();         // [batch, 1280, h/32, w/32]
//! ```

use burn::module::Module;
use burn::tensor::Tensor;

/// A network that scores classes: `[batch, classes]` from images `[batch, channels, h, w]`.
pub trait ImageClassifier: Module + Clone + Send + 'static {
    /// Class scores (logits).
    fn scores(&self, images: Tensor<4>) -> Tensor<2>;

    /// Weights `[filters, channels, k, k]` of the first convolution (drawn as an image of the
    /// learned filters); `None` for networks without one.
    fn first_conv(&self) -> Option<Tensor<4>> {
        None
    }
}

/// The shape of one feature map relative to the input image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureLevel {
    /// How many input pixels one map pixel steps over (a power of two).
    pub stride: usize,
    /// Channels of the map.
    pub channels: usize,
}

/// A backbone's feature maps by stride, finest first, with their [`FeatureLevel`]s.
#[derive(Clone, Debug)]
pub struct FeatureMaps {
    levels: Vec<FeatureLevel>,
    maps: Vec<Tensor<4>>,
}

impl FeatureMaps {
    /// Pairs `levels` with `maps` (same length, strides rising).
    ///
    /// # Panics
    /// When the lengths differ or the strides do not rise: a bug in the backbone.
    pub fn new(levels: Vec<FeatureLevel>, maps: Vec<Tensor<4>>) -> Self {
        assert_eq!(levels.len(), maps.len(), "one level per feature map");
        assert!(
            levels.windows(2).all(|w| w[0].stride < w[1].stride),
            "feature maps must come finest first"
        );
        Self { levels, maps }
    }

    /// The levels, finest first.
    pub fn levels(&self) -> &[FeatureLevel] {
        &self.levels
    }

    /// Number of maps.
    pub fn len(&self) -> usize {
        self.maps.len()
    }

    /// True when there is no map.
    pub fn is_empty(&self) -> bool {
        self.maps.is_empty()
    }

    /// The map at `stride`, if the backbone has one.
    pub fn at_stride(&self, stride: usize) -> Option<&Tensor<4>> {
        let index = self.levels.iter().position(|l| l.stride == stride)?;
        Some(&self.maps[index])
    }

    /// The coarsest map (the one a classifier pools).
    ///
    /// # Panics
    /// When there is no map.
    pub fn coarsest(&self) -> &Tensor<4> {
        self.maps
            .last()
            .expect("a backbone returns at least one map")
    }

    /// `(level, map)` pairs, finest first.
    pub fn iter(&self) -> impl Iterator<Item = (FeatureLevel, &Tensor<4>)> {
        self.levels.iter().copied().zip(&self.maps)
    }

    /// The maps, finest first, without their levels.
    pub fn into_maps(self) -> Vec<Tensor<4>> {
        self.maps
    }
}

/// A network that turns images into feature maps at several strides: the interface detection
/// and segmentation heads build on. Every backbone in this crate implements it.
pub trait Backbone: Module + Clone + Send + 'static {
    /// Stride and channels of each map [`feature_maps`](Self::feature_maps) returns, finest
    /// first; the same for every input size.
    fn feature_levels(&self) -> Vec<FeatureLevel>;

    /// The feature maps of `images` `[batch, channels, h, w]`, finest first.
    fn feature_maps(&self, images: Tensor<4>) -> FeatureMaps;
}

/// The levels of a network whose stem outputs `stem` and whose blocks follow as
/// `(stride, output channels)`: the map before each strided block, and the last block's.
pub(crate) fn levels_of_blocks(
    stem: FeatureLevel,
    blocks: impl IntoIterator<Item = (usize, usize)>,
) -> Vec<FeatureLevel> {
    let mut levels = Vec::new();
    let mut current = stem;
    for (stride, channels) in blocks {
        if stride > 1 {
            levels.push(current);
            current.stride *= stride;
        }
        current.channels = channels;
    }
    levels.push(current);
    levels
}

/// `[batch, channels, h, w]` → `[batch, channels]`, the spatial mean.
pub(crate) fn global_average(x: Tensor<4>) -> Tensor<2> {
    x.mean_dim(3).mean_dim(2).flatten(1, 3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn maps_are_found_by_stride() {
        let device = Device::flex();
        let maps = FeatureMaps::new(
            vec![
                FeatureLevel {
                    stride: 8,
                    channels: 2,
                },
                FeatureLevel {
                    stride: 16,
                    channels: 3,
                },
            ],
            vec![
                Tensor::zeros([1, 2, 4, 4], &device),
                Tensor::zeros([1, 3, 2, 2], &device),
            ],
        );
        assert_eq!(maps.len(), 2);
        assert_eq!(maps.at_stride(16).unwrap().dims(), [1, 3, 2, 2]);
        assert!(maps.at_stride(32).is_none());
        assert_eq!(maps.coarsest().dims(), [1, 3, 2, 2]);
        let strides: Vec<usize> = maps.iter().map(|(l, _)| l.stride).collect();
        assert_eq!(strides, [8, 16]);
    }

    #[test]
    #[should_panic(expected = "finest first")]
    fn maps_out_of_order_are_a_bug() {
        let device = Device::flex();
        let level = |stride| FeatureLevel {
            stride,
            channels: 1,
        };
        FeatureMaps::new(
            vec![level(16), level(8)],
            vec![
                Tensor::zeros([1, 1, 1, 1], &device),
                Tensor::zeros([1, 1, 2, 2], &device),
            ],
        );
    }
}
