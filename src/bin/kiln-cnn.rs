//! `kiln-cnn`: convolutional networks trained with kiln's training loop.
//!
//! * `kiln-cnn --config configs/cifar10-cnn.toml --data DIR [--out RUN]` trains, checkpoints
//!   every epoch and reports validation and test accuracy; `--resume RUN` continues a killed run.
//! * `kiln-cnn sanity --config …` checks the initial loss against ln(C) and that the network can
//!   overfit 50 training images.
//! * `kiln-cnn search --config …` runs a coarse-then-fine random search of learning rate and
//!   weight decay.
//! * `kiln-cnn ensemble RUN RUN …` averages the class probabilities of trained runs.
//! * `kiln-cnn bench` times training steps of the convolution benchmark net.
//! * `kiln-cnn params` prints parameters and multiply-adds of the design-rule blocks (and of a
//!   config's network).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::{Args, Parser, Subcommand};

use kiln::backend::Precision;
use kiln::cli::{self, CommonArgs, TrainArgs};
use kiln::cnn::CnnRunConfig;
use kiln::cnn::bench::{BenchNet, BenchRun, print_training_speeds};
use kiln::cnn::ensemble::{Checkpoint, test_ensemble, write_ensemble_run};
use kiln_nets::design::compare;
use kiln_nets::{Geometry, trainable_params};
use kiln_train::RunDir;
use kiln_train::classify::sanity::sanity_check;
use kiln_train::classify::subset_for_search;
use kiln_train::search::lr_weight_decay_search;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Train convolutional networks on image datasets",
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
    /// Check the initial loss against ln(C) and overfit a tiny subset.
    Sanity(SanityArgs),
    /// Random search (coarse, then fine) of learning rate and weight decay.
    Search(TrainArgs),
    /// Average the class probabilities of trained runs on the test set.
    Ensemble(EnsembleArgs),
    /// Time training steps of a network on random data.
    Bench(BenchArgs),
    /// Parameters and multiply-adds of the design-rule blocks and of a config's network.
    Params(ParamsArgs),
}

#[derive(Args, Debug)]
struct SanityArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Images in the overfitting subset (stratified).
    #[arg(long, default_value_t = 50)]
    images: usize,
    /// Most full-batch Adam steps allowed to reach 100 % training accuracy.
    #[arg(long, default_value_t = 300)]
    steps: usize,
}

#[derive(Args, Debug)]
struct EnsembleArgs {
    /// Run directories written by `kiln-cnn` (each has config.toml, normalization.json and
    /// checkpoints/).
    #[arg(required = true, num_args = 1..)]
    runs: Vec<PathBuf>,
    /// Which checkpoint of each run.
    #[arg(long, value_enum, default_value_t = Checkpoint::Best)]
    checkpoint: Checkpoint,
    /// Dataset with the test split (default: the first run's).
    #[arg(long, value_name = "PATH")]
    data: Option<PathBuf>,
    /// Backend device.
    #[arg(long, value_name = "NAME")]
    device: Option<String>,
    /// Run directory for the results.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// Images per step; several (`--batch 128,1024`) are timed one after the other in one
    /// process, so kernels compile once.
    #[arg(long, value_delimiter = ',', default_values_t = [128])]
    batch: Vec<usize>,
    /// Timed steps.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Untimed steps first (kernel compilation, allocator warm-up).
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Which network.
    #[arg(long, value_enum, default_value_t = BenchNet::Benchmark)]
    net: BenchNet,
    /// Backend device.
    #[arg(long, value_name = "NAME")]
    device: Option<String>,
    /// Float type: of every tensor (f32, f16, bf16: weights, activations, gradients,
    /// optimizer state), or of the passes with f32 weights (f16-mixed, bf16-mixed).
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    precision: Precision,
    /// Steps per read of the loss (1 waits for every step).
    #[arg(long, default_value_t = 1)]
    read_every: usize,
}

#[derive(Args, Debug)]
struct ParamsArgs {
    /// Also summarise this config's network.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Channels of the design-rule blocks.
    #[arg(long, default_value_t = 64)]
    channels: usize,
    /// Feature-map side for multiply-adds (and the config network's input side).
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// Input channels and classes of the config's network.
    #[arg(long, num_args = 2, value_names = ["CHANNELS", "CLASSES"], default_values_t = [3, 10])]
    input: Vec<usize>,
}

fn train(args: TrainArgs) -> Result<()> {
    let device = args.common.device()?;
    let (mut config, run): (CnnRunConfig, _) = cli::resolve_training(&args)?;
    let (data, test) = config.load(&args.common, &device)?;
    if data.val_is_test {
        eprintln!(
            "val_images = 0: training on all {} training images; the per-epoch validation columns are the test set",
            data.splits.train.len()
        );
    }
    let run = match run {
        Some(run) => run,
        None => cli::create_run(args.common.out.as_deref(), "kiln-cnn", &config)?,
    };
    let started = Instant::now();
    let trained =
        config.train_and_test(&data, Some(&test), &run, &device, args.resume.is_some())?;
    let last = trained.last().context("no epoch ran")?;
    let Some(scores) = trained.test else {
        return cli::paused(last.epoch, config.train.epochs, &run);
    };
    let tta = scores
        .accuracy_tta
        .map(|a| format!(", with {:?} TTA {:.2} %", config.train.tta, 100.0 * a))
        .unwrap_or_default();
    let validation = if data.val_is_test {
        "no held-out validation (val_images = 0)".to_string()
    } else {
        format!(
            "validation {:.2} % (best {:.2} %)",
            100.0 * trained.val_accuracy(),
            100.0 * trained.best_val_accuracy()
        )
    };
    let t = &data.splits.train;
    println!(
        "CNN ({:.2} M parameters, {:.0} M multiply-adds): {} epochs in {:.0} s, {validation}, test {:.2} %{tta}, {:.0} training images/s",
        trainable_params(&trained.model) as f64 / 1e6,
        trained.model.macs([t.height, t.width]).unwrap_or(0) as f64 / 1e6,
        last.epoch,
        started.elapsed().as_secs_f64(),
        100.0 * scores.accuracy,
        last.images_per_sec
    );
    println!(
        "run directory {} (loss.png, accuracy.png, update_ratios.png, filters.png, checkpoints/)",
        run.path().display()
    );
    Ok(())
}

fn sanity(args: SanityArgs) -> Result<()> {
    args.common.refuse_mixed("kiln-cnn sanity")?;
    let device = args.common.device()?;
    let mut config: CnnRunConfig = cli::load_config(args.common.config.as_deref())?;
    if let Some(seed) = args.common.seed {
        config.seed = seed;
    }
    let (data, _) = config.load(&args.common, &device)?;
    let t = &data.splits.train;
    let per_class = args.images.div_ceil(t.classes.len()).max(1);
    let indices = kiln_data::split::per_class_subset(&t.labels, per_class, config.seed)?;
    let subset = t.subset(&indices[..indices.len().min(args.images)]);
    let run = cli::create_run(args.common.out.as_deref(), "kiln-cnn-sanity", &config)?;
    let net = config.build_network(&data, &device)?;
    let report = sanity_check(
        net,
        t,
        &subset,
        &data.batcher(),
        args.steps,
        &run,
        &device.autodiff(),
    )?;
    println!(
        "initial loss {:.3} vs ln(C) = {:.3}: {}",
        report.initial_loss,
        report.expected_loss,
        if report.initial_loss_ok() {
            "PASS"
        } else {
            "FAIL (scores are not near-uniform at initialisation: check the init scale)"
        }
    );
    match report.overfit_step {
        Some(step) => println!(
            "overfit {} images: PASS (100 % training accuracy after {step} steps)",
            report.overfit_images
        ),
        None => println!(
            "overfit {} images: FAIL (not 100 % after {} steps)",
            report.overfit_images, args.steps
        ),
    }
    println!("run directory {} (overfit.png)", run.path().display());
    if !report.passed() {
        bail!("sanity checks failed");
    }
    Ok(())
}

fn search(args: TrainArgs) -> Result<()> {
    let device = args.common.device()?;
    if args.resume.is_some() {
        bail!("search does not resume; start a new one");
    }
    let (mut config, _): (CnnRunConfig, _) = cli::resolve_training(&args)?;
    if config.val_images == 0 {
        bail!(
            "search ranks trials by validation accuracy, and val_images = 0 would rank them on the test set; set val_images > 0 in {}",
            args.common
                .config
                .as_deref()
                .map_or("the config".into(), |p| p.display().to_string())
        );
    }
    let (mut data, _) = config.load(&args.common, &device)?;
    let spec = config.search.clone();
    data.splits.train = subset_for_search(&data.splits.train, spec.train_images, config.seed)?;
    let run = cli::create_run(args.common.out.as_deref(), "kiln-cnn-search", &config)?;
    lr_weight_decay_search(&spec, config.seed, &run, |lr, wd, epochs, dir| {
        let mut trial = config.clone();
        trial.train.learning_rate = lr;
        trial.train.optimizer.weight_decay = wd;
        trial.train.epochs = epochs;
        let trial_run = RunDir::create(dir, &cli::to_toml(&trial).map_err(cli::invalid)?)?;
        let trained = trial
            .train_and_test(&data, None, &trial_run, &device, false)
            .map_err(cli::invalid)?;
        Ok(trained.val_accuracy())
    })?;
    Ok(())
}

fn ensemble(args: EnsembleArgs) -> Result<()> {
    let device = kiln::backend::device(args.device.as_deref())?;
    let scores = test_ensemble(&args.runs, args.data.as_deref(), args.checkpoint, &device)?;
    for member in &scores.members {
        println!(
            "{}: test {:.2} %",
            member.run.display(),
            100.0 * member.accuracy
        );
    }
    let name = args.checkpoint.file_name();
    println!(
        "ensemble of {} ({name} checkpoints, averaged probabilities): test {:.2} %",
        scores.members.len(),
        100.0 * scores.accuracy
    );
    let out = write_ensemble_run(&scores, &args.runs, args.checkpoint, args.out.as_deref())?;
    println!("run directory {}", out.path().display());
    Ok(())
}

fn bench(args: BenchArgs) -> Result<()> {
    let device = kiln::backend::device_with(args.device.as_deref(), args.precision)?;
    let run = BenchRun {
        net: args.net,
        steps: args.steps,
        warmup: args.warmup,
        read_every: args.read_every,
        mixed_precision: args.precision.mixed(),
    };
    let name = args.device.as_deref().unwrap_or("auto");
    print_training_speeds(run, &args.batch, args.precision, name, &device)
}

fn params(args: ParamsArgs) -> Result<()> {
    let device = Device::flex().autodiff();
    let rows = compare(args.channels, args.size, &[3, 5, 7], &device);
    println!(
        "Design rules at {c} channels on {s}×{s} maps (same receptive field per group):",
        c = args.channels,
        s = args.size
    );
    println!("field  rule                       layers     params   multiply-adds");
    for r in &rows {
        println!(
            "{k}×{k}    {:<26} {:>6} {:>10} {:>15}",
            r.rule.describe(),
            r.layers,
            r.params,
            r.macs,
            k = r.kernel
        );
    }
    if let Some(path) = &args.config {
        let config: CnnRunConfig = cli::load_config(Some(path))?;
        let geometry = Geometry::new(args.input[0], args.size, args.size, args.input[1]);
        let net = config.model.build(geometry, None, &device)?;
        let p = trainable_params(&net);
        let m = net.macs([args.size, args.size]).unwrap_or(0);
        println!(
            "{}: {p} trainable parameters, {m} multiply-adds per {}×{} image",
            path.display(),
            args.size,
            args.size
        );
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    kiln::alloc::tune_allocator();
    let cli = Cli::parse();
    cli::finish(match cli.command {
        None => train(cli.train),
        Some(Command::Sanity(a)) => sanity(a),
        Some(Command::Search(a)) => search(a),
        Some(Command::Ensemble(a)) => ensemble(a),
        Some(Command::Bench(a)) => bench(a),
        Some(Command::Params(a)) => params(a),
    })
}
