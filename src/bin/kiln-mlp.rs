//! `kiln-mlp`: a multilayer perceptron trained on images with kiln's training loop.
//!
//! `kiln-mlp --config configs/cifar10-mlp.toml --data DIR [--out RUN]` trains, checkpoints every
//! epoch and reports validation and test accuracy; `--resume RUN` continues a killed run.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Result, bail};
use clap::Parser;
use serde::{Deserialize, Serialize};
use serde_json::json;

use kiln::cli::{self, CommonArgs};
use kiln_data::augment::{Pipeline, TransformConfig};
use kiln_data::{AugmentedImages, ClassificationBatcher, NormalizationKind, Splits};
use kiln_nets::MlpConfig;
use kiln_train::RunDir;
use kiln_train::trainer::{FitData, TrainSettings, evaluate, fit};

#[derive(Parser, Debug)]
#[command(version, about = "Train a multilayer perceptron on an image dataset")]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// Epochs (overrides the config).
    #[arg(long)]
    epochs: Option<usize>,
    /// Continue the run in this directory from its last checkpoint.
    #[arg(long, value_name = "RUN")]
    resume: Option<PathBuf>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct MlpRunConfig {
    data: Option<PathBuf>,
    seed: u64,
    val_images: usize,
    normalization: NormalizationKind,
    hidden: Vec<usize>,
    batch_norm: bool,
    dropout: f64,
    train: TrainSettings,
    augment: Vec<TransformConfig>,
}

impl Default for MlpRunConfig {
    fn default() -> Self {
        Self {
            data: None,
            seed: 0,
            val_images: 1000,
            normalization: NormalizationKind::PerChannel,
            hidden: vec![1024, 512],
            batch_norm: true,
            dropout: 0.0,
            train: TrainSettings::default(),
            augment: Vec::new(),
        }
    }
}

fn run(args: Cli) -> Result<()> {
    let device = kiln::backend::device(args.common.device.as_deref())?;
    let (mut config, run) = match &args.resume {
        Some(dir) => {
            if args.common.config.is_some() {
                bail!("--resume uses the run's own config.toml; drop --config");
            }
            let run = RunDir::open(dir)?;
            let config: MlpRunConfig = cli::load_config(Some(&run.file("config.toml")))?;
            (config, Some(run))
        }
        None => (cli::load_config(args.common.config.as_deref())?, None),
    };
    if let Some(seed) = args.common.seed {
        config.seed = seed;
    }
    if let Some(e) = args.epochs {
        config.train.epochs = e;
    }
    let (path, data) = cli::open_data(args.common.data.as_deref(), config.data.as_deref(), None)?;
    config.data = Some(path.clone());
    let test = cli::require_test(&data, &path)?;
    let splits = Splits::new(data, config.val_images, config.seed)?;
    let Some(val) = splits.val.clone() else {
        bail!("val_images must be positive: validation drives checkpoints and schedules");
    };
    let t = &splits.train;
    let mlp = MlpConfig::new(t.image_len(), config.hidden.clone(), t.classes.len())
        .with_batch_norm(config.batch_norm)
        .with_dropout(config.dropout);
    mlp.validate().map_err(anyhow::Error::msg)?;
    let pipeline = Pipeline::from_config(&config.augment, config.seed)?;
    let run = match run {
        Some(run) => run,
        None => cli::create_run(args.common.out.as_deref(), "kiln-mlp", &config)?,
    };
    let norm = splits.fit_normalization(config.normalization)?;
    norm.save(&run.file("normalization.json"))?;
    let train_device = device.clone().autodiff();
    train_device.seed(config.seed);
    let model = mlp.init(&train_device);
    let train = AugmentedImages::new(Arc::new(splits.train.clone()), Arc::new(pipeline));
    let epoch = train.epoch_counter();
    let data = FitData {
        train,
        epoch,
        val: AugmentedImages::new(Arc::new(val), Arc::new(Pipeline::default())),
        batcher: ClassificationBatcher::new(norm),
    };
    let batcher = data.batcher.clone();
    let (model, history) = fit(
        model,
        data,
        &config.train,
        config.seed,
        &run,
        &device,
        args.resume.is_some(),
    )?;
    let test_set = AugmentedImages::new(Arc::new(test), Arc::new(Pipeline::default()));
    let (test_loss, test_accuracy) = evaluate(
        &model,
        &test_set,
        &batcher,
        config.train.batch_size,
        &device,
    )?;
    run.metrics()
        .append(&json!({"test_loss": test_loss, "test_accuracy": test_accuracy}))?;
    let last = history.last().expect("at least one epoch");
    let best = history.iter().map(|r| r.val_accuracy).fold(0.0, f64::max);
    println!(
        "MLP {:?}: {} epochs, validation {:.2} % (best {:.2} %), test {:.2} %, {:.0} training images/s",
        config.hidden,
        last.epoch,
        100.0 * last.val_accuracy,
        100.0 * best,
        100.0 * test_accuracy,
        last.images_per_sec
    );
    println!(
        "run directory {} (loss.png, accuracy.png, checkpoints/last.bpk, checkpoints/best.bpk)",
        run.path().display()
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    cli::finish(run(Cli::parse()))
}
