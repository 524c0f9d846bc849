//! The localization network: a backbone from kiln-nets, then OverFeat's fully connected layers
//! written as convolutions — a 1×1 convolution that narrows the last feature map, a
//! `cells`×`cells` convolution over it (the fully connected layer over a window of the map)
//! and 1×1 class and box heads. On an input of exactly the window size the map is
//! `cells`×`cells` and the network is an ordinary classifier + regressor; on a larger image the
//! same layers slide over the map, one window every 32 pixels.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use kiln_nets::Backbone;
use kiln_nets::conv;
use kiln_nets::zoo::Network;

/// Sizes of a [`Localizer`]'s head.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LocalizerConfig {
    /// Object classes (the class head has one more output, index 0, for background).
    pub classes: usize,
    /// Window side in cells of the last feature map (input side / 32).
    pub cells: usize,
    /// Channels the 1×1 convolution narrows the last feature map to.
    pub reduced: usize,
    /// Width of the fully connected (window-sized convolution) layer.
    pub hidden: usize,
    /// Dropout before the heads.
    pub dropout: f64,
}

impl LocalizerConfig {
    /// The head on `backbone` (whose own classifier is unused).
    pub fn init(&self, backbone: Network, device: &Device) -> Localizer {
        let features = backbone
            .feature_levels()
            .last()
            .map_or(backbone.feature_size(), |l| l.channels);
        let cells = self.cells.max(1);
        Localizer {
            backbone,
            reduce: Conv2dConfig::new([features, self.reduced], [1, 1]).init(device),
            window: Conv2dConfig::new([self.reduced, self.hidden], [cells, cells]).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            classifier: Conv2dConfig::new([self.hidden, self.classes + 1], [1, 1]).init(device),
            regressor: Conv2dConfig::new([self.hidden, 4], [1, 1]).init(device),
        }
    }
}

/// Backbone + OverFeat head (class scores and a box per window).
#[derive(Module, Debug)]
pub struct Localizer {
    /// The pretrained backbone.
    pub backbone: Network,
    /// 1×1 convolution narrowing the last feature map.
    pub reduce: Conv2d,
    /// The fully connected layer over one window of the map, as a convolution.
    pub window: Conv2d,
    /// Dropout before the heads (training only).
    pub dropout: Dropout,
    /// Background + class scores.
    pub classifier: Conv2d,
    /// Box `(x1, y1, x2, y2)` as fractions of the window.
    pub regressor: Conv2d,
}

impl Localizer {
    /// Class scores `[batch, classes + 1, h, w]` and boxes `[batch, 4, h, w]` (fractions of the
    /// window) for every window position of the last feature map, `h = map height − cells + 1`
    /// (at least 1: a smaller map is padded with zeros at the bottom and right).
    pub fn forward_windows(&self, images: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let map = self.backbone.feature_maps(images).coarsest().clone();
        let [_, _, mh, mw] = map.dims();
        let [kh, kw] = self.window.weight.dims()[2..4].try_into().unwrap_or([1, 1]);
        let map = if mh < kh || mw < kw {
            map.pad(
                (0, kw.saturating_sub(mw), 0, kh.saturating_sub(mh)),
                burn::tensor::ops::PadMode::Constant(0.0),
            )
        } else {
            map
        };
        let x = relu(conv::forward(&self.reduce, map));
        let x = self.dropout.forward(relu(conv::forward(&self.window, x)));
        (
            conv::forward(&self.classifier, x.clone()),
            conv::forward(&self.regressor, x),
        )
    }

    /// Class scores `[batch, classes + 1]` and boxes `[batch, 4]` (fractions of the input) for
    /// inputs of the window size.
    pub fn forward(&self, images: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let (scores, boxes) = self.forward_windows(images);
        let [b, k, h, w] = scores.dims();
        // An input larger than the window: its top-left window answers.
        let first = |t: Tensor<4>, k: usize| t.slice([0..b, 0..k, 0..1, 0..1]).reshape([b, k]);
        let _ = (h, w);
        (first(scores, k), first(boxes, 4))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};
    use kiln_nets::Architecture;

    #[test]
    fn sliding_the_head_equals_running_it_on_each_window() {
        let device = Device::flex();
        let net = Architecture::parse("efficientnet-lite0")
            .unwrap()
            .init(1, &device);
        let model = LocalizerConfig {
            classes: 2,
            cells: 2,
            reduced: 8,
            hidden: 16,
            dropout: 0.0,
        }
        .init(net, &device);
        // A 96×64 image has a 3×2 map at stride 32: 2×1 windows of 2×2 cells (64 pixels).
        let image = Tensor::<4>::random([1, 3, 64, 96], Distribution::Normal(0.0, 1.0), &device);
        let (scores, boxes) = model.forward_windows(image.clone());
        assert_eq!(scores.dims(), [1, 3, 1, 2]);
        assert_eq!(boxes.dims(), [1, 4, 1, 2]);
        // The window at cell column 0 sees pixels 0..64 of the map's receptive field; the
        // network on the map of a crop differs only by the backbone's padding, so compare the
        // head on the map itself: the first window's output equals `forward` on an input whose
        // map is exactly that window.
        let map = model.backbone.feature_maps(image).coarsest().clone();
        let window_map = map.slice([0..1, 0..1280, 0..2, 0..2]);
        let x = relu(model.reduce.forward(window_map));
        let x = relu(model.window.forward(x));
        let direct = model.classifier.forward(x).reshape([1, 3]);
        scores
            .slice([0..1, 0..3, 0..1, 0..1])
            .reshape([1, 3])
            .into_data()
            .assert_approx_eq::<f32>(&direct.into_data(), Tolerance::absolute(1e-4));
    }
}
