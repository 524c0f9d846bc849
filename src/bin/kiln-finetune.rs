//! `kiln-finetune`: adapt an ImageNet-pretrained network to a new labelled image set.
//!
//! `kiln-finetune --config configs/finetune-cifar10-100.toml --data DIR [--out RUN]` runs the
//! config's strategy (linear probe, head-then-full, full) and reports validation and test
//! accuracy; `--strategy` and `--weights none` switch the strategy or train from scratch.
//! `kiln-finetune bench` times inference and training steps of a network on random images.

use std::time::Instant;

use anyhow::{Result, bail};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Distribution, Int, Tensor};
use clap::{Args, Parser, Subcommand};

use kiln::backend;
use kiln::cli::{self, CommonArgs, finish};
use kiln::finetune::{FinetuneConfig, FinetuneData, Strategy, finetune};
use kiln::pretrained::Architecture;

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
    config.validate()?;
    let weights = config.weight_file()?;
    let device = backend::device(args.common.device.as_deref())?;
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
    if args.size < 32 || args.infer_batch == 0 || args.train_batch == 0 || args.steps == 0 {
        bail!("--size must be at least 32 and the batches and steps positive");
    }
    let arch = Architecture::parse(&args.arch)?;
    let device = backend::device(args.device.as_deref())?;
    let random = |batch: usize, device: &burn::tensor::Device| {
        Tensor::<4>::random(
            [batch, 3, args.size, args.size],
            Distribution::Normal(0.0, 1.0),
            device,
        )
    };

    let net = arch.init(1000, &device).valid();
    let images = random(args.infer_batch, &device);
    let timed = |work: &mut dyn FnMut()| {
        for _ in 0..args.warmup {
            work();
        }
        let started = Instant::now();
        for _ in 0..args.steps {
            work();
        }
        started.elapsed().as_secs_f64()
    };
    let secs = timed(&mut || {
        let _ = net.forward(images.clone()).into_data();
    });
    let inference = (args.steps * args.infer_batch) as f64 / secs;

    let train_device = device.clone().autodiff();
    let mut net = Some(arch.init(1000, &train_device));
    let mut optim = SgdConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&train_device);
    let images = random(args.train_batch, &train_device);
    let targets = Tensor::<1, Int>::zeros([args.train_batch], &train_device);
    let secs = timed(&mut || {
        let model = net
            .take()
            .expect("the network is put back after every step");
        let loss = loss_fn.forward(model.forward(images.clone()), targets.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        net = Some(optim.step(0.01, model, grads));
    });
    let training = (args.steps * args.train_batch) as f64 / secs;
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
