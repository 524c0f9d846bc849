//! `kiln-mlp`: a multilayer perceptron trained on images with kiln's training loop.
//!
//! `kiln-mlp --config configs/cifar10-mlp.toml --data DIR [--out RUN]` trains, checkpoints every
//! epoch and reports validation and test accuracy; `--resume RUN` continues a killed run.
//! `kiln-mlp search --config …` runs a coarse-then-fine random search of learning rate and
//! weight decay (the config's `[search]` table).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};

use kiln::cli::{self, TrainArgs};
use kiln_data::augment::TransformConfig;
use kiln_data::{ImageSet, NormalizationKind};
use kiln_nets::{Mlp, MlpConfig};
use kiln_train::RunDir;
use kiln_train::classify::{
    ClassifierData, PreparedData, SplitSpec, Trained, subset_for_search, train_and_test,
};
use kiln_train::optim::ScheduleName;
use kiln_train::search::{SearchSpec, lr_weight_decay_search};
use kiln_train::trainer::TrainSettings;

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

impl cli::TrainConfig for MlpRunConfig {
    fn seed_mut(&mut self) -> &mut u64 {
        &mut self.seed
    }
    fn train_mut(&mut self) -> &mut TrainSettings {
        &mut self.train
    }
}

fn load(args: &TrainArgs, config: &mut MlpRunConfig) -> Result<(PreparedData, ImageSet)> {
    let (path, data) = cli::open_data(args.common.data.as_deref(), config.data.as_deref(), None)?;
    config.data = Some(path.clone());
    let test = cli::require_test(&data, &path)?;
    let spec = SplitSpec {
        val_images: config.val_images,
        train_per_class: 0,
        normalization: config.normalization,
        seed: config.seed,
    };
    let plateau = config.train.schedule.name == ScheduleName::Plateau;
    let t = &data.train;
    let config_file = args
        .common
        .config
        .as_deref()
        .map(|p| p.display().to_string());
    let config_file = config_file.unwrap_or_else(|| "the default config".into());
    TransformConfig::check_size_kept(&config.augment, [t.width, t.height], &config_file)?;
    Ok((PreparedData::new(data, &spec, plateau)?, test))
}

/// Trains `config` into `run`; with `test`, scores the final network on it.
fn train_in(
    config: &MlpRunConfig,
    data: &PreparedData,
    test: Option<&ImageSet>,
    run: &RunDir,
    device: &Device,
    resume: bool,
) -> Result<Trained<Mlp>> {
    let t = &data.splits.train;
    let mlp = MlpConfig::new(t.image_len(), config.hidden.clone(), t.classes.len())
        .with_batch_norm(config.batch_norm)
        .with_dropout(config.dropout);
    mlp.validate().map_err(anyhow::Error::msg)?;
    data.normalization.save(&run.file("normalization.json"))?;
    let train_device = device.clone().autodiff();
    train_device.seed(config.seed);
    let classifier_data = ClassifierData {
        train: data.train_set(&config.augment, config.seed)?,
        val: data.val()?,
        test,
        batcher: data.batcher(),
        eval_batch: config.train.batch_size,
    };
    Ok(train_and_test(
        mlp.init(&train_device),
        classifier_data,
        &config.train,
        config.seed,
        run,
        device,
        resume,
    )?)
}

fn train(args: TrainArgs) -> Result<()> {
    let device = args.common.device()?;
    let (mut config, run): (MlpRunConfig, _) = cli::resolve_training(&args)?;
    let (data, test) = load(&args, &mut config)?;
    let run = match run {
        Some(run) => run,
        None => cli::create_run(args.common.out.as_deref(), "kiln-mlp", &config)?,
    };
    let trained = train_in(
        &config,
        &data,
        Some(&test),
        &run,
        &device,
        args.resume.is_some(),
    )?;
    let last = trained.last().context("no epoch ran")?;
    let Some(scores) = trained.test else {
        return cli::paused(last.epoch, config.train.epochs, &run);
    };
    println!(
        "MLP {:?}: {} epochs, validation {:.2} % (best {:.2} %), test {:.2} %, {:.0} training images/s",
        config.hidden,
        last.epoch,
        100.0 * trained.val_accuracy(),
        100.0 * trained.best_val_accuracy(),
        100.0 * scores.accuracy,
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
    let device = args.common.device()?;
    let (mut config, _): (MlpRunConfig, _) = cli::resolve_training(&args)?;
    let (mut data, _) = load(&args, &mut config)?;
    let spec = config.search.clone();
    data.splits.train = subset_for_search(&data.splits.train, spec.train_images, config.seed)?;
    let run = cli::create_run(args.common.out.as_deref(), "kiln-mlp-search", &config)?;
    lr_weight_decay_search(&spec, config.seed, &run, |lr, wd, epochs, dir| {
        let mut trial = config.clone();
        trial.train.learning_rate = lr;
        trial.train.optimizer.weight_decay = wd;
        trial.train.epochs = epochs;
        let trial_run = RunDir::create(dir, &cli::to_toml(&trial).map_err(cli::invalid)?)?;
        let trained =
            train_in(&trial, &data, None, &trial_run, &device, false).map_err(cli::invalid)?;
        Ok(trained.val_accuracy())
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
