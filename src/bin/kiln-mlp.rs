//! `kiln-mlp`: a multilayer perceptron trained on images with kiln's training loop.
//!
//! `kiln-mlp --config configs/cifar10-mlp.toml --data DIR [--out RUN]` trains, checkpoints every
//! epoch and reports validation and test accuracy; `--resume RUN` continues a killed run.
//! `kiln-mlp search --config …` runs a coarse-then-fine random search of learning rate and
//! weight decay (the config's `[search]` table).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Result, bail};
use burn::tensor::Device;
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::json;

use kiln::cli::{self, TrainArgs};
use kiln_data::augment::{Pipeline, TransformConfig};
use kiln_data::{
    AugmentedImages, ClassificationBatcher, ImageSet, Normalization, NormalizationKind, Splits,
};
use kiln_nets::MlpConfig;
use kiln_train::RunDir;
use kiln_train::search::{SearchSpec, lr_weight_decay_search};
use kiln_train::trainer::{EpochRecord, FitData, TrainSettings, evaluate, fit};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Train a multilayer perceptron on an image dataset",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Random search (coarse, then fine) of learning rate and weight decay.
    Search(TrainArgs),
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
    search: SearchSpec,
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
            search: SearchSpec::default(),
        }
    }
}

/// The training and validation sets of a loaded dataset, and its test split.
struct Data {
    train: ImageSet,
    val: ImageSet,
    test: ImageSet,
    normalization: Normalization,
}

impl cli::TrainConfig for MlpRunConfig {
    fn seed_mut(&mut self) -> &mut u64 {
        &mut self.seed
    }
    fn train_mut(&mut self) -> &mut TrainSettings {
        &mut self.train
    }
}

fn load(args: &TrainArgs, config: &mut MlpRunConfig) -> Result<Data> {
    let (path, data) = cli::open_data(args.common.data.as_deref(), config.data.as_deref(), None)?;
    config.data = Some(path.clone());
    let test = cli::require_test(&data, &path)?;
    let splits = Splits::new(data, config.val_images, config.seed)?;
    let normalization = splits.fit_normalization(config.normalization)?;
    let Some(val) = splits.val.clone() else {
        bail!("val_images must be positive: validation drives checkpoints and schedules");
    };
    Ok(Data {
        train: splits.train,
        val,
        test,
        normalization,
    })
}

/// Trains `config` into `run`; with `test`, scores the final network on it.
fn train_in(
    config: &MlpRunConfig,
    data: &Data,
    test: Option<&ImageSet>,
    run: &RunDir,
    device: &Device,
    resume: bool,
) -> Result<(Vec<EpochRecord>, Option<f64>)> {
    let t = &data.train;
    let mlp = MlpConfig::new(t.image_len(), config.hidden.clone(), t.classes.len())
        .with_batch_norm(config.batch_norm)
        .with_dropout(config.dropout);
    mlp.validate().map_err(anyhow::Error::msg)?;
    let pipeline = Pipeline::from_config(&config.augment, config.seed)?;
    data.normalization.save(&run.file("normalization.json"))?;
    let train_device = device.clone().autodiff();
    train_device.seed(config.seed);
    let model = mlp.init(&train_device);
    let train = AugmentedImages::new(Arc::new(t.clone()), Arc::new(pipeline));
    let epoch = train.epoch_counter();
    let fit_data = FitData {
        train,
        epoch,
        val: AugmentedImages::new(Arc::new(data.val.clone()), Arc::new(Pipeline::default())),
        batcher: ClassificationBatcher::new(data.normalization.clone()),
    };
    let batcher = fit_data.batcher.clone();
    let (model, history) = fit(
        model,
        fit_data,
        &config.train,
        config.seed,
        run,
        device,
        resume,
    )?;
    let paused = history
        .last()
        .is_some_and(|r| r.epoch < config.train.epochs);
    let Some(test) = test.filter(|_| !paused) else {
        return Ok((history, None));
    };
    let test_set = AugmentedImages::new(Arc::new(test.clone()), Arc::new(Pipeline::default()));
    let (test_loss, test_accuracy) =
        evaluate(&model, &test_set, &batcher, config.train.batch_size, device)?;
    run.metrics()
        .append(&json!({"test_loss": test_loss, "test_accuracy": test_accuracy}))?;
    Ok((history, Some(test_accuracy)))
}

fn train(args: TrainArgs) -> Result<()> {
    let device = kiln::backend::device(args.common.device.as_deref())?;
    let (mut config, run): (MlpRunConfig, _) = cli::resolve_training(&args)?;
    let data = load(&args, &mut config)?;
    let run = match run {
        Some(run) => run,
        None => cli::create_run(args.common.out.as_deref(), "kiln-mlp", &config)?,
    };
    let (history, test_accuracy) = train_in(
        &config,
        &data,
        Some(&data.test),
        &run,
        &device,
        args.resume.is_some(),
    )?;
    let last = history.last().expect("at least one epoch");
    if last.epoch < config.train.epochs {
        println!(
            "paused after epoch {} of {}; continue with --resume {}",
            last.epoch,
            config.train.epochs,
            run.path().display()
        );
        return Ok(());
    }
    let best = history.iter().map(|r| r.val_accuracy).fold(0.0, f64::max);
    println!(
        "MLP {:?}: {} epochs, validation {:.2} % (best {:.2} %), test {:.2} %, {:.0} training images/s",
        config.hidden,
        last.epoch,
        100.0 * last.val_accuracy,
        100.0 * best,
        100.0 * test_accuracy.unwrap_or(f64::NAN),
        last.images_per_sec
    );
    println!(
        "run directory {} (loss.png, accuracy.png, checkpoints/last.bpk, checkpoints/best.bpk)",
        run.path().display()
    );
    Ok(())
}

fn search(args: TrainArgs) -> Result<()> {
    if args.resume.is_some() {
        bail!("search does not resume; start a new one");
    }
    let device = kiln::backend::device(args.common.device.as_deref())?;
    let (mut config, _): (MlpRunConfig, _) = cli::resolve_training(&args)?;
    let mut data = load(&args, &mut config)?;
    let spec = config.search.clone();
    data.train = kiln::cnn::subset_for_search(&data.train, &spec, config.seed)?;
    let run = cli::create_run(args.common.out.as_deref(), "kiln-mlp-search", &config)?;
    lr_weight_decay_search(&spec, config.seed, &run, |lr, wd, epochs, dir| {
        let mut trial = config.clone();
        trial.train.learning_rate = lr;
        trial.train.optimizer.weight_decay = wd;
        trial.train.epochs = epochs;
        let invalid = |e: anyhow::Error| kiln_train::TrainError::Invalid(format!("{e:#}"));
        let trial_run = RunDir::create(dir, &cli::to_toml(&trial).map_err(invalid)?)?;
        let (history, _) =
            train_in(&trial, &data, None, &trial_run, &device, false).map_err(invalid)?;
        Ok(history.last().map_or(0.0, |r| r.val_accuracy))
    })?;
    Ok(())
}

fn main() -> std::process::ExitCode {
    kiln::alloc::tune_allocator();
    let cli = Cli::parse();
    cli::finish(match cli.command {
        None => train(cli.train),
        Some(Command::Search(a)) => search(a),
    })
}
