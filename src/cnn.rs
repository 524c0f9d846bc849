//! What `kiln-cnn` trains: the TOML config of a convolutional run, the model it names, and the
//! data preparation shared by training, sanity checks, search and ensembles.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use burn::nn::activation::ActivationConfig;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use kiln_data::augment::{Pipeline, TransformConfig};
use kiln_data::{
    AugmentedImages, ClassificationBatcher, ImageSet, Normalization, NormalizationKind, Splits,
};
use kiln_nets::{AirbenchConfig, ConvNetConfig, ForwardCost, ResNetConfig};
use kiln_train::optim::ScheduleName;
use kiln_train::search::SearchSpec;
use kiln_train::trainer::{ImageClassifier, TrainSettings};

/// Nonlinearities a config can name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActivationName {
    /// max(0, x).
    #[default]
    Relu,
    /// Gaussian error linear unit.
    Gelu,
    /// Hyperbolic tangent.
    Tanh,
    /// max(0.01x, x).
    LeakyRelu,
}

impl ActivationName {
    fn config(self) -> ActivationConfig {
        match self {
            Self::Relu => ActivationConfig::Relu,
            Self::Gelu => ActivationConfig::Gelu,
            Self::Tanh => ActivationConfig::Tanh,
            Self::LeakyRelu => ActivationConfig::LeakyRelu(burn::nn::LeakyReluConfig::new()),
        }
    }
}

fn default_kernel() -> usize {
    3
}
fn yes() -> bool {
    true
}
fn default_resnet_widths() -> Vec<usize> {
    vec![16, 32, 64]
}
fn default_resnet_blocks() -> Vec<usize> {
    vec![3, 3, 3]
}
fn default_airbench_widths() -> Vec<usize> {
    vec![64, 256, 256]
}
fn default_whiten_images() -> usize {
    5000
}
fn default_whiten_eps() -> f64 {
    5e-4
}
fn default_bn_momentum() -> f64 {
    0.4
}
fn default_output_scale() -> f64 {
    1.0 / 9.0
}

/// The `[model]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ModelSpec {
    /// [`kiln_nets::ConvNet`]: stages of convolutions, each closed by a 2×2 max pool.
    ConvNet {
        /// Output channels of each convolution, one list per stage.
        stages: Vec<Vec<usize>>,
        /// Kernel side.
        #[serde(default = "default_kernel")]
        kernel_size: usize,
        /// Batch norm after every convolution.
        #[serde(default = "yes")]
        batch_norm: bool,
        /// Nonlinearity.
        #[serde(default)]
        activation: ActivationName,
        /// Hidden fully connected widths.
        #[serde(default)]
        hidden: Vec<usize>,
        /// Dropout after hidden fully connected layers.
        #[serde(default)]
        dropout: f64,
    },
    /// [`kiln_nets::ResNet`] for small images.
    Resnet {
        /// Channels per stage.
        #[serde(default = "default_resnet_widths")]
        widths: Vec<usize>,
        /// Basic blocks per stage.
        #[serde(default = "default_resnet_blocks")]
        blocks: Vec<usize>,
    },
    /// [`kiln_nets::AirbenchNet`] with its first layer whitened on training patches.
    Airbench {
        /// Widths of the three conv groups.
        #[serde(default = "default_airbench_widths")]
        widths: Vec<usize>,
        /// Training images used to estimate the patch covariance.
        #[serde(default = "default_whiten_images")]
        whiten_images: usize,
        /// ε added to the eigenvalues.
        #[serde(default = "default_whiten_eps")]
        whiten_eps: f64,
        /// Batch-norm momentum (PyTorch's sense).
        #[serde(default = "default_bn_momentum")]
        batch_norm_momentum: f64,
        /// Logit scale.
        #[serde(default = "default_output_scale")]
        output_scale: f64,
    },
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self::ConvNet {
            stages: vec![vec![64], vec![128], vec![256]],
            kernel_size: 3,
            batch_norm: true,
            activation: ActivationName::Relu,
            hidden: Vec::new(),
            dropout: 0.0,
        }
    }
}

/// A `kiln-cnn` run config.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CnnRunConfig {
    /// Dataset path (overridden by `--data`).
    pub data: Option<PathBuf>,
    /// Seed of the split, initialisation, shuffling and augmentation.
    pub seed: u64,
    /// Training images held out for validation. 0 trains on every training image and monitors
    /// each epoch on the test set, as airbench and torchvision's reference scripts do: only for
    /// fixed schedules (the plateau schedule and `search` refuse it), and the "best" checkpoint
    /// is then picked on test data, so the result to report is the last epoch's.
    pub val_images: usize,
    /// Training images kept per class after the validation split (a seeded stratified subset,
    /// the same images `kiln-finetune` draws with the same seed; 0 keeps all).
    pub train_per_class: usize,
    /// Input normalisation, fitted on the training split.
    pub normalization: NormalizationKind,
    /// The network.
    pub model: ModelSpec,
    /// How to train it.
    pub train: TrainSettings,
    /// Training augmentation.
    pub augment: Vec<TransformConfig>,
    /// Random search ranges (`kiln-cnn search`).
    pub search: SearchSpec,
}

impl Default for CnnRunConfig {
    fn default() -> Self {
        Self {
            data: None,
            seed: 0,
            val_images: 1000,
            train_per_class: 0,
            normalization: NormalizationKind::PerChannel,
            model: ModelSpec::default(),
            train: TrainSettings::default(),
            augment: Vec::new(),
            search: SearchSpec::default(),
        }
    }
}

/// The training split cut to `spec.train_images` (stratified, seeded) for search trials.
pub fn subset_for_search(train: &ImageSet, spec: &SearchSpec, seed: u64) -> Result<ImageSet> {
    if spec.train_images == 0 || spec.train_images >= train.len() {
        return Ok(train.clone());
    }
    let per_class = (spec.train_images / train.classes.len()).max(1);
    Ok(kiln_data::split::subset_per_class(train, per_class, seed)?)
}

impl crate::cli::TrainConfig for CnnRunConfig {
    fn seed_mut(&mut self) -> &mut u64 {
        &mut self.seed
    }
    fn train_mut(&mut self) -> &mut TrainSettings {
        &mut self.train
    }
}

/// A network `kiln-cnn` can train.
pub trait CnnModel: ImageClassifier + ForwardCost {}
impl<T: ImageClassifier + ForwardCost> CnnModel for T {}

/// Work to do with whichever network a config names (Rust closures cannot be generic).
pub trait ModelTask {
    /// What the work returns.
    type Output;
    /// Does the work.
    fn run<M: CnnModel>(self, model: M) -> Result<Self::Output>;
}

/// Image geometry and class count a network is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Channels.
    pub channels: usize,
    /// Height.
    pub height: usize,
    /// Width.
    pub width: usize,
    /// Classes.
    pub classes: usize,
}

impl Geometry {
    /// The geometry of a training set.
    pub fn of(set: &ImageSet) -> Self {
        Self {
            channels: set.channels,
            height: set.height,
            width: set.width,
            classes: set.classes.len(),
        }
    }
}

impl ModelSpec {
    /// Builds the network on `device` (seed it first) and hands it to `task`. Airbench's
    /// whitening layer is fitted on `whitening` images (normalised, NCHW) when given.
    pub fn build<T: ModelTask>(
        &self,
        geometry: Geometry,
        whitening: Option<(&[f32], [usize; 4])>,
        device: &Device,
        task: T,
    ) -> Result<T::Output> {
        let g = geometry;
        match self {
            Self::ConvNet {
                stages,
                kernel_size,
                batch_norm,
                activation,
                hidden,
                dropout,
            } => {
                let config =
                    ConvNetConfig::new(g.channels, g.classes, [g.height, g.width], stages.clone())
                        .with_kernel_size(*kernel_size)
                        .with_batch_norm(*batch_norm)
                        .with_activation(activation.config())
                        .with_hidden(hidden.clone())
                        .with_dropout(*dropout);
                config
                    .validate()
                    .map_err(|e| anyhow::anyhow!("[model] {e}"))?;
                task.run(config.init(device))
            }
            Self::Resnet { widths, blocks } => {
                let config = ResNetConfig::new(g.channels, g.classes)
                    .with_widths(widths.clone())
                    .with_blocks(blocks.clone());
                config
                    .validate()
                    .map_err(|e| anyhow::anyhow!("[model] {e}"))?;
                task.run(config.init(device))
            }
            Self::Airbench {
                widths,
                whiten_eps,
                batch_norm_momentum,
                output_scale,
                ..
            } => {
                let config = AirbenchConfig::new()
                    .with_in_channels(g.channels)
                    .with_classes(g.classes)
                    .with_widths(widths.clone())
                    .with_batch_norm_momentum(*batch_norm_momentum)
                    .with_output_scale(*output_scale);
                config
                    .validate()
                    .map_err(|e| anyhow::anyhow!("[model] {e}"))?;
                if g.height < 8 || g.width < 8 {
                    bail!("[model] airbench needs images of at least 8×8 pixels");
                }
                let mut net = config.init(device);
                if let Some((images, shape)) = whitening {
                    net = net.with_whitening(images, shape, *whiten_eps);
                }
                task.run(net)
            }
        }
    }

    /// Training images the model's initialisation looks at (airbench's whitening), 0 if none.
    pub fn init_images(&self) -> usize {
        match self {
            Self::Airbench { whiten_images, .. } => *whiten_images,
            _ => 0,
        }
    }
}

/// Data of a run: splits, the training split's normalisation and the batcher.
pub struct PreparedData {
    /// Training, validation and test images.
    pub splits: Splits,
    /// Whether the validation split is the test set (`val_images = 0`).
    pub val_is_test: bool,
    /// Normalisation fitted on the training split.
    pub normalization: Normalization,
}

impl PreparedData {
    /// Splits `data` (validation held out of training, seeded) and fits the normalisation.
    /// With `val_images = 0` the whole training split trains and the test set stands in for
    /// validation.
    pub fn new(data: kiln_data::TrainTest, config: &CnnRunConfig) -> Result<Self> {
        let val_is_test = config.val_images == 0;
        if val_is_test && config.train.schedule.name == ScheduleName::Plateau {
            bail!(
                "val_images = 0 monitors on the test set, which must not steer the plateau schedule; hold out validation images (e.g. val_images = 1000) or use a fixed schedule"
            );
        }
        let mut splits = Splits::new(data, config.val_images, config.seed)?;
        if val_is_test {
            splits.val = Some(splits.test.clone().context(
                "val_images = 0 monitors on the test set, but the dataset has no test split; set val_images > 0",
            )?);
        }
        splits.train =
            kiln_data::split::subset_per_class(&splits.train, config.train_per_class, config.seed)?;
        let normalization = splits.fit_normalization(config.normalization)?;
        Ok(Self {
            splits,
            val_is_test,
            normalization,
        })
    }

    /// About `count` training images (a stratified, seeded subset: folders are sorted by
    /// class), normalised, as NCHW values (for whitening).
    pub fn init_images(&self, count: usize, seed: u64) -> Result<Option<(Vec<f32>, [usize; 4])>> {
        if count == 0 {
            return Ok(None);
        }
        let t = &self.splits.train;
        let smallest = t.class_counts().into_iter().min().unwrap_or(0);
        let per_class = count.div_ceil(t.classes.len()).clamp(1, smallest.max(1));
        let indices = kiln_data::split::per_class_subset(&t.labels, per_class, seed)?;
        let subset = t.subset(&indices);
        let values = self.normalization.apply_set(&subset);
        Ok(Some((
            values,
            [subset.len(), t.channels, t.height, t.width],
        )))
    }

    /// Training items with `augment` applied (seeded).
    pub fn train_set(&self, augment: &[TransformConfig], seed: u64) -> Result<AugmentedImages> {
        let pipeline = Pipeline::from_config(augment, seed)?;
        Ok(AugmentedImages::new(
            Arc::new(self.splits.train.clone()),
            Arc::new(pipeline),
        ))
    }

    /// Un-augmented items of `set`.
    pub fn plain(set: &ImageSet) -> AugmentedImages {
        AugmentedImages::new(Arc::new(set.clone()), Arc::new(Pipeline::default()))
    }

    /// The batcher with the training normalisation.
    pub fn batcher(&self) -> ClassificationBatcher {
        ClassificationBatcher::new(self.normalization.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shipped config, parsed and with valid training settings.
    fn parse_valid(name: &str, text: &str) -> CnnRunConfig {
        let config: CnnRunConfig = toml::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        config.train.validate().unwrap();
        config
    }

    #[test]
    fn model_tables_parse_with_defaults() {
        let config: CnnRunConfig = toml::from_str(
            "[model]\ntype = \"airbench\"\nwidths = [32, 64, 64]\n[train]\nepochs = 2\n",
        )
        .unwrap();
        match config.model {
            ModelSpec::Airbench {
                widths,
                whiten_images,
                ..
            } => {
                assert_eq!(widths, vec![32, 64, 64]);
                assert_eq!(whiten_images, 5000);
            }
            other => panic!("{other:?}"),
        }
        assert!(toml::from_str::<CnnRunConfig>("[model]\ntype = \"vgg\"\n").is_err());
        for (name, text) in [
            ("cifar10-cnn", include_str!("../configs/cifar10-cnn.toml")),
            (
                "cifar10-airbench",
                include_str!("../configs/cifar10-airbench.toml"),
            ),
            (
                "fashion-mnist-cnn",
                include_str!("../configs/fashion-mnist-cnn.toml"),
            ),
        ] {
            let config = parse_valid(name, text);
            assert!(config.train.lookahead.is_some(), "{name}");
            assert_eq!(config.model.init_images(), 5000, "{name}");
        }
        assert!(toml::from_str::<CnnRunConfig>("[model]\ntype = \"resnet\"\ndepth = 3\n").is_err());
    }

    #[test]
    fn small_data_configs_keep_100_images_a_class() {
        for (name, text) in [
            (
                "cifar10-cnn-100",
                include_str!("../configs/cifar10-cnn-100.toml"),
            ),
            (
                "fashion-mnist-cnn-100",
                include_str!("../configs/fashion-mnist-cnn-100.toml"),
            ),
        ] {
            let config = parse_valid(name, text);
            assert_eq!(
                (config.train_per_class, config.val_images),
                (100, 1000),
                "{name}"
            );
        }
    }
}
