//! `kiln-finetune`: adapt an ImageNet-pretrained network to a new labelled image set.
//!
//! `kiln-finetune --config configs/finetune-cifar10-100.toml --data DIR [--out RUN]` runs the
//! config's strategy (linear probe, head-then-full, full) and reports validation and test
//! accuracy; `--strategy` and `--weights none` switch the strategy or train from scratch.
//! `kiln-finetune bench` times inference and training steps of a network on random images.

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};

use kiln::backend;
use kiln::cli::{self, CommonArgs, finish};
use kiln_nets::Architecture;
use kiln_train::bench::{BenchShape, inference_images_per_sec, training_images_per_sec};
use kiln_train::optim::OptimizerConfig;
use kiln_train::transfer::{FinetuneConfig, FinetuneData, Strategy, finetune};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Fine-tune an ImageNet-pretrained network on an image dataset",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: FinetuneArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Images per second of inference and training steps on random images.
    Bench(BenchArgs),
}

#[derive(Args, Debug, Default)]
struct FinetuneArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Strategy (overrides the config): linear-probe, head-then-full or full.
    #[arg(long, value_name = "NAME")]
    strategy: Option<String>,
    /// Weights (overrides the config): a .pth file, a published name, or `none` for random
    /// initialisation.
    #[arg(long, value_name = "FILE|NAME|none")]
    weights: Option<String>,
    /// Epochs of whole-network training (overrides `[train] epochs`).
    #[arg(long)]
    epochs: Option<usize>,
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// Architecture.
    #[arg(long, default_value = "efficientnet-lite0")]
    arch: String,
    /// Image side.
    #[arg(long, default_value_t = 224)]
    size: usize,
    /// Images per inference step.
    #[arg(long, default_value_t = 32)]
    infer_batch: usize,
    /// Images per training step.
    #[arg(long, default_value_t = 16)]
    train_batch: usize,
    /// Timed steps of each kind.
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Compute device: auto, flex, ndarray, wgpu or wgpu:N.
    #[arg(long, value_name = "NAME")]
    device: Option<String>,
}

fn main() -> std::process::ExitCode {
    kiln::alloc::tune_allocator();
    let cli = Cli::parse();
    finish(match cli.command {
        Some(Command::Bench(args)) => bench(&args),
        None => train(&cli.train),
    })
}

fn train(args: &FinetuneArgs) -> Result<()> {
    let mut config: FinetuneConfig = cli::load_config(args.common.config.as_deref())?;
    if let Some(seed) = args.common.seed {
        config.seed = seed;
    }
    if let Some(strategy) = &args.strategy {
        config.strategy = toml::Value::String(strategy.clone())
            .try_into::<Strategy>()
            .map_err(|_| {
                anyhow::anyhow!(
                    "unknown strategy `{strategy}`; choose linear-probe, head-then-full or full"
                )
            })?;
    }
    if let Some(weights) = &args.weights {
        config.weights = Some(weights.clone());
    }
    if let Some(epochs) = args.epochs {
        config.train.epochs = epochs;
    }
    if let Some(mixed) = args.common.precision.mixed() {
        config.train.mixed_precision = Some(mixed);
    }
    config.validate()?;
    let weights = config.weight_file()?;
    let device = args.common.device()?;
    device.seed(config.seed);
    let (path, data) = cli::open_data(args.common.data.as_deref(), config.data.as_deref(), None)?;
    config.data = Some(path);
    let data = FinetuneData::prepare(data, &config)?;
    let run = cli::create_run(args.common.out.as_deref(), "finetune", &config)?;
    eprintln!("run directory: {}", run.path().display());
    let result = finetune(&config, weights.as_deref(), &data, &run, &device)?;
    run.write(
        "result.json",
        serde_json::to_string_pretty(&result)?.as_bytes(),
    )?;
    println!(
        "{} {} ({}), {} training images at {}²: val {:.2} %, test {:.2} %{} in {:.0} s",
        result.arch,
        serde_json::to_value(result.strategy)?
            .as_str()
            .unwrap_or_default(),
        if result.pretrained {
            "pretrained"
        } else {
            "random init"
        },
        result.train_images,
        result.image_size,
        100.0 * result.val_accuracy,
        100.0 * result.test_accuracy,
        result
            .test_accuracy_tta
            .map(|t| format!(" ({:.2} % with TTA)", 100.0 * t))
            .unwrap_or_default(),
        result.seconds
    );
    Ok(())
}

fn bench(args: &BenchArgs) -> Result<()> {
    if args.size < 32 {
        bail!("--size must be at least 32");
    }
    let arch = Architecture::parse(&args.arch)?;
    let device = backend::device(args.device.as_deref())?;
    let shape = |batch| BenchShape {
        batch,
        image: [3, args.size, args.size],
        classes: 1000,
        warmup: args.warmup,
        steps: args.steps,
        read_every: 1,
        mixed_precision: None,
    };
    let inference =
        inference_images_per_sec(&arch.init(1000, &device), shape(args.infer_batch), &device)?;
    let train_device = device.clone().autodiff();
    let training = training_images_per_sec(
        arch.init(1000, &train_device),
        &OptimizerConfig::default(),
        shape(args.train_batch),
        &train_device,
    )?;
    println!(
        "{arch} at {0}x{0}, device {1}: inference {inference:.1} images/s (batch {2}), \
         training {training:.1} images/s (batch {3})",
        args.size,
        args.device.as_deref().unwrap_or("auto"),
        args.infer_batch,
        args.train_batch
    );
    Ok(())
}
