//! Transfer learning: a pretrained ImageNet network adapted to a new, small labelled set by a
//! linear probe, by training the new head and then the whole network, or by fine-tuning
//! everything at once (`kiln-finetune`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::module::Module;
use burn::nn::LinearConfig;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use kiln_data::augment::{Pipeline, TransformConfig};
use kiln_data::presets::resize_set;
use kiln_data::{AugmentedImages, ClassificationBatcher, ImageSet, Normalization, Splits};
use kiln_nets::download::resolve_weights;
use kiln_nets::{Architecture, IMAGENET_MEAN, IMAGENET_STD, Network};

use crate::classify::{ClassifierData, TestScores, train_and_test};
use crate::probe::{FeatureSet, evaluate_probe, fit_linear_probe};
use crate::trainer::{EpochRecord, LrGroup, TrainSettings};
use crate::{Progress, Result, RunDir, TrainError};

fn invalid(message: impl Into<String>) -> TrainError {
    TrainError::Invalid(message.into())
}

/// How the pretrained network is adapted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Backbone frozen: its pooled features are computed once, and only a linear classifier is
    /// trained on them (`[probe]` settings).
    LinearProbe,
    /// The linear probe first, then the whole network (`[train]`), the backbone at
    /// `backbone_lr_scale` times the head's learning rate.
    #[default]
    HeadThenFull,
    /// The whole network from the start with a fresh head (`[train]`).
    Full,
}

/// A `kiln-finetune` run, as written in TOML.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FinetuneConfig {
    /// Dataset path (overridden by `--data`).
    pub data: Option<PathBuf>,
    /// Seed for the splits, the subset, initialisation and augmentation.
    pub seed: u64,
    /// Architecture, see [`Architecture::name`].
    pub arch: String,
    /// Pretrained weights (a `.pth` file or a published name); absent or `"none"` trains the
    /// architecture from random initialisation.
    pub weights: Option<String>,
    /// How to adapt the network.
    pub strategy: Strategy,
    /// Side of the square images the network sees (inputs are resized to it).
    pub image_size: usize,
    /// Training images kept per class (a seeded stratified subset; 0 keeps all).
    pub train_per_class: usize,
    /// Validation images held out of the training split before the subset is drawn.
    pub val_images: usize,
    /// Learning-rate multiplier of the backbone relative to the head.
    pub backbone_lr_scale: f64,
    /// Batch norms keep the pretrained running statistics while the whole network trains
    /// (scale and shift still train), as is usual with little data. Only for pretrained
    /// starts: a randomly initialised network has no statistics to keep.
    pub freeze_batch_norm: bool,
    /// The linear probe (and the head phase of `head-then-full`).
    pub probe: TrainSettings,
    /// Training of the whole network (`head-then-full`, `full`).
    pub train: TrainSettings,
    /// Augmentation of the training images (at `image_size`) for whole-network training.
    pub augment: Vec<TransformConfig>,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        Self {
            data: None,
            seed: 0,
            arch: Architecture::EfficientNetLite0.name().into(),
            weights: Some(Architecture::EfficientNetLite0.name().into()),
            strategy: Strategy::default(),
            image_size: 224,
            train_per_class: 0,
            val_images: 1000,
            backbone_lr_scale: 0.1,
            freeze_batch_norm: true,
            probe: TrainSettings::default(),
            train: TrainSettings::default(),
            augment: Vec::new(),
        }
    }
}

impl FinetuneConfig {
    /// Checks what can be checked before loading anything.
    pub fn validate(&self) -> Result<()> {
        Architecture::parse(&self.arch)?;
        if self.image_size < 32 {
            return Err(invalid(format!(
                "image_size {} is too small (at least 32)",
                self.image_size
            )));
        }
        if self.val_images == 0 {
            return Err(invalid(
                "val_images must be positive: validation picks nothing without it",
            ));
        }
        if !(self.backbone_lr_scale > 0.0 && self.backbone_lr_scale.is_finite()) {
            return Err(invalid("backbone_lr_scale must be positive"));
        }
        let in_table = |table: &str, e: TrainError| invalid(format!("in [{table}]: {e}"));
        self.probe.validate().map_err(|e| in_table("probe", e))?;
        self.train.validate().map_err(|e| in_table("train", e))?;
        Ok(())
    }

    /// Whether the network starts from pretrained weights.
    pub fn pretrained(&self) -> bool {
        self.weights
            .as_deref()
            .is_some_and(|w| !w.eq_ignore_ascii_case("none"))
    }
}

/// The images of a fine-tuning run, resized for the network and normalised as ImageNet
/// weights expect.
pub struct FinetuneData {
    /// Training images (the per-class subset).
    pub train: ImageSet,
    /// Validation images.
    pub val: ImageSet,
    /// Test images.
    pub test: ImageSet,
}

impl FinetuneData {
    /// Holds out validation images, draws the per-class training subset (both seeded) and
    /// resizes every split to `image_size`.
    pub fn prepare(data: kiln_data::TrainTest, config: &FinetuneConfig) -> Result<Self> {
        let splits = Splits::new(data, config.val_images, config.seed)?;
        let train =
            kiln_data::split::subset_per_class(&splits.train, config.train_per_class, config.seed)?;
        let val = splits.val.ok_or_else(|| invalid("no validation split"))?;
        let test = splits.test.ok_or_else(|| {
            invalid("the dataset has no test split (ImageFolder: add test/<class>/…)")
        })?;
        let size = config.image_size;
        eprintln!(
            "resizing {} training, {} validation and {} test images to {size}x{size} …",
            train.len(),
            val.len(),
            test.len()
        );
        Ok(Self {
            train: resize_set(&train, size)?,
            val: resize_set(&val, size)?,
            test: resize_set(&test, size)?,
        })
    }

    /// The batcher: ImageNet mean and standard deviation (what the pretrained weights saw).
    pub fn batcher() -> ClassificationBatcher {
        ClassificationBatcher::new(Normalization::PerChannel {
            mean: IMAGENET_MEAN.to_vec(),
            std: IMAGENET_STD.to_vec(),
        })
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.train.classes.len()
    }
}

impl FinetuneConfig {
    /// The weight file to start from (`None` for random initialisation), found (downloaded
    /// if need be) and checked to hold the config's architecture.
    pub fn weight_file(&self) -> Result<Option<PathBuf>> {
        if !self.pretrained() {
            return Ok(None);
        }
        let arch = Architecture::parse(&self.arch)?;
        let spec = self.weights.as_deref().unwrap_or_default();
        let (found, path) = resolve_weights(spec).map_err(|e| invalid(e.to_string()))?;
        if found != arch {
            return Err(invalid(format!(
                "weights {} hold {found}, but the config's arch is {arch}; make them agree",
                path.display()
            )));
        }
        Ok(Some(path))
    }
}

/// The network a run starts from: the config's architecture with the weights at `weights`
/// (see [`FinetuneConfig::weight_file`]; head replaced), or randomly initialised when `None`.
pub fn initial_network(
    config: &FinetuneConfig,
    weights: Option<&Path>,
    classes: usize,
    device: &Device,
) -> Result<Network> {
    let arch = Architecture::parse(&config.arch)?;
    match weights {
        None => {
            eprintln!("{arch} from random initialisation");
            Ok(arch.init(classes, device))
        }
        Some(path) => {
            eprintln!("{arch} from {}", path.display());
            Ok(arch.load(path, device)?.with_classes(classes, device))
        }
    }
}

/// Pooled backbone features of every image of `set` (eval mode, computed once).
pub fn embed(
    net: &Network,
    set: &ImageSet,
    batch: usize,
    device: &Device,
    label: &str,
) -> Result<FeatureSet> {
    let net = net.valid();
    let batcher = FinetuneData::batcher();
    let items = AugmentedImages::plain(set);
    let progress = Progress::new(set.len() as u64, label, "img");
    let mut features = Vec::with_capacity(set.len() * net.feature_size());
    let order: Vec<usize> = (0..set.len()).collect();
    for chunk in order.chunks(batch.max(1)) {
        let samples: Vec<_> = chunk
            .iter()
            .map(|&i| burn::data::dataset::Dataset::get(&items, i))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| invalid(format!("reading image: {e}")))?;
        let (values, shape) = batcher.images_to_nchw(&samples);
        let images = Tensor::<4>::from_data(TensorData::new(values, shape), device);
        let embedding = net.forward_embedding(images).into_data();
        features.extend(
            embedding
                .convert::<f32>()
                .try_to_vec_as::<f32>()
                .map_err(|e| invalid(format!("reading features: {e:?}")))?,
        );
        progress.inc(chunk.len() as u64);
    }
    progress.finish();
    FeatureSet::new(features, set.labels.clone(), net.feature_size())
}

/// What a fine-tuning run measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FinetuneResult {
    /// Strategy used.
    pub strategy: Strategy,
    /// Architecture.
    pub arch: String,
    /// Whether it started from pretrained weights.
    pub pretrained: bool,
    /// Image side.
    pub image_size: usize,
    /// Training images.
    pub train_images: usize,
    /// Validation accuracy at the end.
    pub val_accuracy: f64,
    /// Test accuracy at the end.
    pub test_accuracy: f64,
    /// Test accuracy with the `[train]` TTA (whole-network strategies with TTA on).
    pub test_accuracy_tta: Option<f64>,
    /// Wall-clock seconds of the whole run.
    pub seconds: f64,
}

/// Runs `config` from `weights` (its resolved [`FinetuneConfig::weight_file`]) on prepared
/// `data` into `run`.
pub fn finetune(
    config: &FinetuneConfig,
    weights: Option<&Path>,
    data: &FinetuneData,
    run: &RunDir,
    device: &Device,
) -> Result<FinetuneResult> {
    let started = std::time::Instant::now();
    let train_device = device.clone().autodiff();
    let classes = data.classes();
    let mut net = initial_network(config, weights, classes, &train_device)?;
    let head_prefix = net.head_path().to_string();
    let batcher = FinetuneData::batcher();

    if config.strategy != Strategy::Full {
        let eval_batch = config.probe.batch_size.clamp(1, 64);
        let train = embed(&net, &data.train, eval_batch, device, "features (train)")?;
        let val = embed(&net, &data.val, eval_batch, device, "features (val)")?;
        let probe_run = RunDir::create(
            &run.path().join("probe"),
            "# The linear-probe phase of the run in the directory above (see ../config.toml).\n",
        )?;
        let head = LinearConfig::new(net.feature_size(), classes).init(device);
        let (head, history) = fit_linear_probe(
            head,
            &train,
            &val,
            &config.probe,
            config.seed,
            &probe_run,
            device,
        )?;
        net = net.with_head(head.fork(&train_device));
        if config.strategy == Strategy::LinearProbe {
            let test = embed(&net, &data.test, eval_batch, device, "features (test)")?;
            let head = net.head().clone();
            let (test_loss, test_accuracy) = evaluate_probe(&head, &test, 1024, device)?;
            crate::save_module(&net, &run.checkpoints()?.join("final.bpk"))?;
            let test = TestScores {
                loss: test_loss,
                accuracy: test_accuracy,
                accuracy_tta: None,
            };
            run.metrics().append(&serde_json::json!({
                "test_loss": test.loss,
                "test_accuracy": test.accuracy,
                "test_accuracy_tta": test.accuracy_tta,
            }))?;
            return FinetuneResult::record(config, data, &history, test, started);
        }
    }

    let mut settings = config.train.clone();
    settings.freeze_batch_norm |= config.freeze_batch_norm && config.pretrained();
    if config.backbone_lr_scale != 1.0 {
        settings.lr_groups.push(LrGroup {
            param: String::new(),
            except: vec![head_prefix],
            lr_scale: config.backbone_lr_scale,
        });
    }
    let pipeline = Pipeline::for_class_labels(&config.augment, config.seed)?;
    let train = AugmentedImages::new(Arc::new(data.train.clone()), Arc::new(pipeline));
    let trained = train_and_test(
        net,
        ClassifierData {
            train,
            val: &data.val,
            test: Some(&data.test),
            batcher,
            eval_batch: 64,
        },
        &settings,
        config.seed,
        run,
        device,
        false,
    )?;
    let test = trained
        .test
        .ok_or_else(|| invalid("the run stopped before its test"))?;
    FinetuneResult::record(config, data, &trained.history, test, started)
}

impl FinetuneResult {
    /// Sums the run up.
    fn record(
        config: &FinetuneConfig,
        data: &FinetuneData,
        history: &[EpochRecord],
        test: TestScores,
        started: std::time::Instant,
    ) -> Result<Self> {
        Ok(Self {
            strategy: config.strategy,
            arch: config.arch.clone(),
            pretrained: config.pretrained(),
            image_size: config.image_size,
            train_images: data.train.len(),
            val_accuracy: history
                .last()
                .and_then(|r| r.metric("val_accuracy"))
                .unwrap_or(f64::NAN),
            test_accuracy: test.accuracy,
            test_accuracy_tta: test.accuracy_tta,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_parse_and_validate() {
        let config: FinetuneConfig = toml::from_str(
            "arch = \"resnet18\"\nweights = \"none\"\nstrategy = \"full\"\nimage_size = 64\n\
             train_per_class = 10\n[train]\nepochs = 2\n",
        )
        .unwrap();
        assert!(!config.pretrained());
        assert_eq!(config.strategy, Strategy::Full);
        config.validate().unwrap();
        let bad = FinetuneConfig {
            arch: "vgg".into(),
            ..FinetuneConfig::default()
        };
        assert!(bad.validate().is_err());
        let tiny = FinetuneConfig {
            image_size: 8,
            ..FinetuneConfig::default()
        };
        assert!(tiny.validate().is_err());
        assert!(toml::from_str::<FinetuneConfig>("strategy = \"half\"\n").is_err());
    }

    #[test]
    fn shipped_configs_parse_and_validate() {
        for (name, text) in [
            (
                "cifar10",
                include_str!("../../../configs/finetune-cifar10-100.toml"),
            ),
            (
                "cifar10-scratch",
                include_str!("../../../configs/finetune-cifar10-100-scratch.toml"),
            ),
            (
                "fashion-mnist",
                include_str!("../../../configs/finetune-fashion-mnist-100.toml"),
            ),
            (
                "fashion-mnist-scratch",
                include_str!("../../../configs/finetune-fashion-mnist-100-scratch.toml"),
            ),
        ] {
            let config: FinetuneConfig =
                toml::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            config.validate().unwrap();
            assert_eq!(config.train_per_class, 100, "{name}");
            assert_eq!(config.pretrained(), !name.ends_with("scratch"), "{name}");
        }
    }

    #[test]
    fn the_head_is_found_in_every_architecture() {
        let device = Device::flex();
        for arch in [Architecture::EfficientNetLite0, Architecture::ResNet18] {
            let net = arch.init(3, &device);
            let params = crate::params::named_params(&net);
            let head = format!("{}.weight", net.head_path());
            assert!(params.iter().any(|p| p.path == head), "{head}");
        }
    }
}
