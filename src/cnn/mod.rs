//! The config of a `kiln-cnn` run: data split, network (`[model]`), training, augmentation and
//! search, as written in TOML; and what `kiln-cnn ensemble` and `kiln-cnn bench` compute.

pub mod bench;
pub mod ensemble;

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use kiln_data::augment::TransformConfig;
use kiln_data::{ImageSet, NormalizationKind, TrainTest};
use kiln_nets::{Geometry, ModelSpec, Network, trainable_params};
use kiln_train::RunDir;
use kiln_train::classify::{ClassifierData, PreparedData, SplitSpec, Trained, train_and_test};
use kiln_train::optim::ScheduleName;
use kiln_train::search::SearchSpec;
use kiln_train::trainer::TrainSettings;

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

impl CnnRunConfig {
    /// How the data is split for this run.
    pub fn split_spec(&self) -> SplitSpec {
        SplitSpec {
            val_images: self.val_images,
            train_per_class: self.train_per_class,
            normalization: self.normalization,
            seed: self.seed,
        }
    }

    /// Whether the schedule watches validation (then validation must not be the test set).
    pub fn watches_validation(&self) -> bool {
        self.train.schedule.name == ScheduleName::Plateau
    }

    /// Splits `data` as this config says and fits the normalisation, after checking that the
    /// augmentation keeps the images' size and that `[model]` builds for them (so that a bad
    /// config is refused before anything is written).
    pub fn prepare(&self, data: TrainTest, device: &Device) -> Result<PreparedData> {
        let t = &data.train;
        TransformConfig::check_size_kept(&self.augment, [t.width, t.height], "[[augment]]")?;
        let geometry = Geometry::new(t.channels, t.height, t.width, t.classes.len());
        self.model.build(geometry, None, device)?;
        Ok(PreparedData::new(
            data,
            &self.split_spec(),
            self.watches_validation(),
        )?)
    }

    /// The `[model]` network, seeded, on the autodiff version of `device`, its whitening (if
    /// any) fitted on the training images.
    pub fn build_network(&self, data: &PreparedData, device: &Device) -> Result<Network> {
        let train_device = device.clone().autodiff();
        train_device.seed(self.seed);
        let whitening = data.init_images(self.model.init_images(), self.seed)?;
        let whitening = whitening.as_ref().map(|(v, s)| (v.as_slice(), *s));
        Ok(self
            .model
            .build(geometry_of(&data.splits.train), whitening, &train_device)?)
    }

    /// Trains this config on `data` into `run` (see [`train_and_test`]), scoring `test` when
    /// given.
    pub fn train_and_test(
        &self,
        data: &PreparedData,
        test: Option<&ImageSet>,
        run: &RunDir,
        device: &Device,
        resume: bool,
    ) -> Result<Trained<Network>> {
        data.normalization.save(&run.file("normalization.json"))?;
        let net = self.build_network(data, device)?;
        let t = &data.splits.train;
        eprintln!(
            "model: {:.3} M trainable parameters, {:.1} M multiply-adds per image",
            trainable_params(&net) as f64 / 1e6,
            net.macs([t.height, t.width]).unwrap_or(0) as f64 / 1e6
        );
        let classifier_data = ClassifierData {
            train: data.train_set(&self.augment, self.seed)?,
            val: data.val()?,
            test,
            batcher: data.batcher(),
            eval_batch: 500,
        };
        Ok(train_and_test(
            net,
            classifier_data,
            &self.train,
            self.seed,
            run,
            device,
            resume,
        )?)
    }

    /// Opens the data of `args` (or of the config's `data`), checks that the config names its
    /// network and the data has a test split, and prepares the splits; records the data path in
    /// the config. Returns the prepared data and the test images.
    pub fn load(
        &mut self,
        args: &crate::cli::CommonArgs,
        device: &Device,
    ) -> Result<(PreparedData, ImageSet)> {
        require_model_table(args.config.as_deref())?;
        let (path, data) = crate::cli::open_data(args.data.as_deref(), self.data.as_deref(), None)?;
        self.data = Some(path.clone());
        let test = crate::cli::require_test(&data, &path)?;
        let prepared = self.prepare(data, device).with_context(|| {
            let file = args.config.as_deref().map(|p| p.display().to_string());
            format!("config {}", file.unwrap_or_else(|| "(defaults)".into()))
        })?;
        Ok((prepared, test))
    }
}

/// Checks that the config file at `path` (if one is given) names its network: `[model]` is the
/// one table kiln-cnn does not fill in with defaults, since training a network the user did
/// not choose would be a silent surprise.
pub fn require_model_table(path: Option<&std::path::Path>) -> Result<()> {
    let Some(path) = path else {
        return Ok(());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("invalid config {}: {e}", path.display()))?;
    if !table.contains_key("model") {
        anyhow::bail!(
            "config {} has no [model] table; name the network to train (e.g. `[model]` with \
             `type = \"conv-net\"`, see configs/cifar10-cnn.toml)",
            path.display()
        );
    }
    Ok(())
}

/// The geometry and class count of a training set, for [`ModelSpec::build`].
pub fn geometry_of(train: &ImageSet) -> Geometry {
    Geometry::new(
        train.channels,
        train.height,
        train.width,
        train.classes.len(),
    )
}

impl crate::cli::TrainConfig for CnnRunConfig {
    fn seed_mut(&mut self) -> &mut u64 {
        &mut self.seed
    }
    fn train_mut(&mut self) -> &mut TrainSettings {
        &mut self.train
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
            (
                "cifar10-cnn",
                include_str!("../../configs/cifar10-cnn.toml"),
            ),
            (
                "cifar10-airbench",
                include_str!("../../configs/cifar10-airbench.toml"),
            ),
            (
                "fashion-mnist-cnn",
                include_str!("../../configs/fashion-mnist-cnn.toml"),
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
                include_str!("../../configs/cifar10-cnn-100.toml"),
            ),
            (
                "fashion-mnist-cnn-100",
                include_str!("../../configs/fashion-mnist-cnn-100.toml"),
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
