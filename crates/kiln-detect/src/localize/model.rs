//! The localization network: a backbone from kiln-nets, a class head (background + classes)
//! and a box head predicting `(x1, y1, x2, y2)` as fractions of the input's width and height.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::nn::pool::AvgPool2dConfig;
use burn::tensor::{Device, Tensor};
use kiln_nets::Backbone;
use kiln_nets::zoo::Network;

/// Sizes of a [`Localizer`]'s heads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalizerConfig {
    /// Object classes (the class head has one more output, index 0, for background).
    pub classes: usize,
}

impl LocalizerConfig {
    /// Heads on `backbone` (whose own classifier is unused).
    pub fn init(&self, backbone: Network, device: &Device) -> Localizer {
        let features = backbone.feature_size();
        Localizer {
            backbone,
            classifier: LinearConfig::new(features, self.classes + 1).init(device),
            regressor: LinearConfig::new(features, 4).init(device),
        }
    }
}

/// Backbone + class head + box head.
#[derive(Module, Debug)]
pub struct Localizer {
    /// The pretrained backbone.
    pub backbone: Network,
    /// Background + class scores from the pooled features.
    pub classifier: Linear,
    /// Box `(x1, y1, x2, y2)` as fractions of the input's sides.
    pub regressor: Linear,
}

impl Localizer {
    /// Class scores `[batch, classes + 1]` and boxes `[batch, 4]` (fractions of the input).
    pub fn forward(&self, images: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let embedding = self.backbone.forward_embedding(images);
        (
            self.classifier.forward(embedding.clone()),
            self.regressor.forward(embedding),
        )
    }

    /// The heads at every `cells`×`cells` window of the last feature map (stride 1): class
    /// scores `[batch, classes + 1, h, w]` and boxes `[batch, 4, h, w]` (fractions of the
    /// window), `h = map height − cells + 1`. A map smaller than `cells` is averaged whole.
    pub fn forward_windows(&self, images: Tensor<4>, cells: usize) -> (Tensor<4>, Tensor<4>) {
        let maps = self.backbone.feature_maps(images);
        let map = maps.coarsest().clone();
        let [_, _, mh, mw] = map.dims();
        let kernel = [cells.min(mh).max(1), cells.min(mw).max(1)];
        let pooled = AvgPool2dConfig::new(kernel)
            .with_strides([1, 1])
            .init()
            .forward(map);
        let [b, c, h, w] = pooled.dims();
        let rows = pooled.permute([0, 2, 3, 1]).reshape([b * h * w, c]);
        let at_positions = |head: &Linear| {
            let out = head.forward(rows.clone());
            let k = out.dims()[1];
            out.reshape([b, h, w, k]).permute([0, 3, 1, 2])
        };
        (at_positions(&self.classifier), at_positions(&self.regressor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};
    use kiln_nets::zoo::ModelSpec;
    use kiln_nets::zoo::Geometry;

    /// A small backbone (kiln's ConvNet) that works on 64-pixel inputs.
    fn small_localizer(device: &Device) -> Localizer {
        let net = ModelSpec::default()
            .build(Geometry::new(3, 64, 64, 2), None, device)
            .expect("default spec builds");
        LocalizerConfig { classes: 2 }.init(net, device)
    }

    #[test]
    fn windows_of_the_input_size_equal_the_whole_image_forward() {
        let device = Device::flex();
        let model = small_localizer(&device);
        let images = Tensor::<4>::random([2, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
        let (scores, boxes) = model.forward(images.clone());
        let cells = 64 / model.backbone.feature_levels().last().unwrap().stride;
        let (wscores, wboxes) = model.forward_windows(images, cells);
        assert_eq!(wscores.dims(), [2, 3, 1, 1]);
        wscores.reshape([2, 3]).into_data().assert_approx_eq::<f32>(&scores.into_data(), Tolerance::absolute(1e-4));
        wboxes.reshape([2, 4]).into_data().assert_approx_eq::<f32>(&boxes.into_data(), Tolerance::absolute(1e-4));
    }
}
