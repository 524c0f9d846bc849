//! Fully connected networks: `[linear → (batch norm) → activation → (dropout)] × hidden`, then a
//! linear head producing class scores.

use burn::config::Config;
use burn::module::Module;
use burn::nn::activation::{Activation, ActivationConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Initializer, Linear, LinearConfig,
};
use burn::tensor::{Device, Tensor};

/// Configuration of an [`Mlp`].
#[derive(Config, Debug)]
pub struct MlpConfig {
    /// Input features (e.g. 3·32·32 for flattened CIFAR-10 images).
    pub inputs: usize,
    /// Width of each hidden layer, in order; empty gives a linear classifier.
    pub hidden: Vec<usize>,
    /// Number of output classes.
    pub classes: usize,
    /// Nonlinearity after every hidden layer.
    #[config(default = "ActivationConfig::Relu")]
    pub activation: ActivationConfig,
    /// Batch normalisation between each hidden linear layer and its activation.
    #[config(default = false)]
    pub batch_norm: bool,
    /// Inverted-dropout probability after every hidden activation (0 disables it).
    #[config(default = 0.0)]
    pub dropout: f64,
}

impl MlpConfig {
    /// Checks sizes and the dropout probability, saying what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.inputs == 0 || self.classes == 0 || self.hidden.contains(&0) {
            return Err(format!(
                "MLP sizes must be positive: inputs {}, hidden {:?}, classes {}",
                self.inputs, self.hidden, self.classes
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("dropout {} must be in [0, 1)", self.dropout));
        }
        Ok(())
    }

    /// Builds the network with He initialisation (normal, std √(2 / fan_in)) and zero biases;
    /// hidden layers followed by batch norm have no bias.
    ///
    /// # Panics
    ///
    /// When [`MlpConfig::validate`] fails; call it first to report bad configs as errors.
    pub fn init(&self, device: &Device) -> Mlp {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let he = Initializer::KaimingNormal {
            gain: 2f64.sqrt(),
            fan_out_only: false,
        };
        let linear = |i: usize, o: usize, bias: bool| {
            let layer = LinearConfig::new(i, o)
                .with_initializer(he.clone())
                .with_bias(bias)
                .init(device);
            Linear {
                bias: layer.bias.map(crate::init::zeroed),
                ..layer
            }
        };
        let mut widths = vec![self.inputs];
        widths.extend(&self.hidden);
        Mlp {
            // Batch norm subtracts the mean, so a bias before it would be a dead parameter.
            layers: widths
                .windows(2)
                .map(|w| linear(w[0], w[1], !self.batch_norm))
                .collect(),
            norms: if self.batch_norm {
                self.hidden
                    .iter()
                    .map(|&h| BatchNormConfig::new(h).init(device))
                    .collect()
            } else {
                Vec::new()
            },
            dropout: DropoutConfig::new(self.dropout).init(),
            activation: self.activation.init(device),
            head: linear(*widths.last().expect("inputs"), self.classes, true),
        }
    }
}

/// A multilayer perceptron classifier.
#[derive(Module, Debug)]
pub struct Mlp {
    /// Hidden linear layers.
    pub layers: Vec<Linear>,
    /// One batch norm per hidden layer, or none.
    pub norms: Vec<BatchNorm>,
    /// Dropout after each hidden activation.
    pub dropout: Dropout,
    /// The hidden nonlinearity.
    pub activation: Activation,
    /// The output layer.
    pub head: Linear,
}

impl Mlp {
    /// Class scores `[batch, classes]` of inputs `[batch, inputs]`.
    pub fn forward(&self, mut x: Tensor<2>) -> Tensor<2> {
        for (i, layer) in self.layers.iter().enumerate() {
            x = crate::linear::forward(layer, x);
            x = match self.norms.get(i) {
                Some(norm) => crate::norm::forward_then(norm, x, &self.activation),
                None => self.activation.forward(x),
            };
            x = self.dropout.forward(x);
        }
        crate::linear::forward(&self.head, x)
    }

    /// Class scores of images `[batch, channels, height, width]`, flattened.
    pub fn forward_images(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward(images.flatten(1, 3))
    }
}

impl crate::ImageClassifier for Mlp {
    fn scores(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward_images(images)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{LocalNormal, RedrawTrainable};
    use burn::tensor::{DType, Distribution};
    use kiln_classic::gradcheck::{CastFloat, GradCheckOptions, check_module};

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f64> {
        t.into_data().try_to_vec_as::<f64>().unwrap()
    }

    #[test]
    fn shapes_and_he_initialisation() {
        let device = Device::flex();
        device.seed(0);
        let mlp = MlpConfig::new(512, vec![256, 64], 10).init(&device);
        let x = Tensor::<4>::random([3, 2, 16, 16], Distribution::Default, &device);
        assert_eq!(mlp.forward_images(x).dims(), [3, 10]);
        let w = values(mlp.layers[0].weight.val());
        let std = (w.iter().map(|v| v * v).sum::<f64>() / w.len() as f64).sqrt();
        let expected = (2.0f64 / 512.0).sqrt();
        assert!(
            (std / expected - 1.0).abs() < 0.03,
            "std {std} vs {expected}"
        );
        let bias = values(mlp.layers[0].bias.as_ref().unwrap().val());
        assert!(bias.iter().all(|&b| b == 0.0));
        let trained = MlpConfig::new(512, vec![256], 10).init(&device.clone().autodiff());
        assert!(trained.layers[0].bias.as_ref().unwrap().is_require_grad());
        assert!(MlpConfig::new(4, vec![0], 2).validate().is_err());
        assert!(
            MlpConfig::new(4, vec![3], 2)
                .with_dropout(1.0)
                .validate()
                .is_err()
        );
    }

    #[test]
    fn dropout_acts_only_in_training() {
        let device = Device::flex().autodiff();
        let mlp = MlpConfig::new(8, vec![64], 3)
            .with_dropout(0.5)
            .init(&device);
        let x = Tensor::<2>::ones([4, 8], &device);
        let (a, b) = (
            values(mlp.forward(x.clone())),
            values(mlp.forward(x.clone())),
        );
        assert_ne!(a, b, "dropout should randomise training passes");
        let eval = mlp.valid();
        let (c, d) = (values(eval.forward(x.clone())), values(eval.forward(x)));
        assert_eq!(c, d);
    }

    #[test]
    fn every_layer_passes_the_gradient_check() {
        let device = Device::flex().autodiff();
        for (batch_norm, activation) in [
            (false, ActivationConfig::Relu),
            (true, ActivationConfig::Relu),
            (false, ActivationConfig::Tanh),
            (true, ActivationConfig::Gelu),
        ] {
            // Weights and inputs from the test's own generator: the backend's shared one is
            // drawn from by tests running beside this one, and a draw that puts a ReLU input
            // within the finite-difference step of its kink fails the check.
            let mut normal = LocalNormal::new(3);
            let mlp = MlpConfig::new(5, vec![7, 6], 3)
                .with_batch_norm(batch_norm)
                .with_activation(activation.clone())
                .init(&device)
                .map(&mut CastFloat(DType::F64));
            let x = normal.tensor([8, 5], 1.0, &device).cast(DType::F64);
            let mlp = mlp.map(&mut RedrawTrainable { normal, scale: 0.5 });
            let options = GradCheckOptions {
                samples: Some(40),
                ..Default::default()
            };
            let report = check_module(
                &mlp,
                |m| m.forward(x.clone()).powi_scalar(2).sum(),
                &options,
            )
            .unwrap();
            assert!(
                report.max_relative_error < 1e-6,
                "bn {batch_norm} {activation:?}: {report:?}"
            );
            assert!(report.checked > 100);
        }
    }
}
