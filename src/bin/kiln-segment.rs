//! `kiln-segment`: semantic segmentation with FCNs on a pretrained backbone.
//!
//! - `kiln-segment train --config configs/camvid-fcn32s.toml --data DATA` trains the config's
//!   FCN (16s and 8s start from a trained coarser run: `--init RUN`), then scores the
//!   checkpoint the config reports (`checkpoint`: the last epoch's, or the best on validation)
//!   on the validation split and writes `metrics.json`, `confusion.png` and `predictions.png`;
//! - `kiln-segment eval --run RUN --data DATA [--split val]` scores a trained run on a split;
//! - `kiln-segment predict --run RUN IMAGE…` writes colour masks, overlays and class-id PNGs.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use kiln::backend;
use kiln::cli::{self, TrainArgs, finish};
use kiln_segment::config::SegmentConfig;
use kiln_segment::run::{evaluate_run, load_data, train_and_evaluate};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Train, evaluate and run semantic segmentation networks (FCN)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a config's FCN, then score it on the validation split.
    Train(TrainCommand),
    /// Score a trained run on a split of a data set.
    Eval(EvalArgs),
    /// Segment photos with a trained run.
    Predict(PredictArgs),
}

#[derive(Args, Debug)]
struct TrainCommand {
    #[command(flatten)]
    train: TrainArgs,
    /// A trained FCN run to start from (overrides the config's `init`): FCN-16s from 32s, 8s
    /// from 16s.
    #[arg(long, value_name = "RUN")]
    init: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct EvalArgs {
    /// The trained run's directory.
    #[arg(long, value_name = "RUN")]
    run: PathBuf,
    /// The data set: a folder with `<split>/` and `<split>annot/`, or its .tar.gz.
    #[arg(long, value_name = "PATH")]
    data: PathBuf,
    /// Which split to score.
    #[arg(long, default_value = "val")]
    split: String,
    /// Where metrics.json, confusion.png and predictions.png go (default: RUN/eval-SPLIT).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Compute device: auto, flex, ndarray, wgpu or wgpu:N.
    #[arg(long, value_name = "NAME")]
    device: Option<String>,
}

#[derive(Args, Debug)]
struct PredictArgs {
    /// The trained run's directory.
    #[arg(long, value_name = "RUN")]
    run: PathBuf,
    /// Photos to segment.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
    /// Where the PNGs go (default: RUN/predict).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Compute device: auto, flex, ndarray, wgpu or wgpu:N.
    #[arg(long, value_name = "NAME")]
    device: Option<String>,
}

fn main() -> std::process::ExitCode {
    kiln::alloc::tune_allocator();
    finish(match Cli::parse().command {
        Command::Train(args) => train(&args),
        Command::Eval(args) => eval(&args),
        Command::Predict(args) => predict(&args),
    })
}

fn train(args: &TrainCommand) -> Result<()> {
    let (mut config, resumed): (SegmentConfig, _) = cli::resolve_training(&args.train)?;
    let data_path = cli::training_data(
        args.train.common.data.as_deref(),
        config.data.path.as_deref(),
        "--data (a folder with train/ and trainannot/, or its .tar.gz) or [data] path",
    )?;
    config.data.path = Some(data_path.clone());
    if let Some(init) = &args.init {
        config.init = Some(std::path::absolute(init).unwrap_or(init.clone()));
    }
    config.validate()?;
    let device = args.train.common.device()?;
    device.seed(config.seed);
    eprintln!("loading {} …", data_path.display());
    let data = load_data(&config, &data_path, &kiln_data::download::cache_dir())?;
    eprintln!(
        "loaded {} training and {} validation images from {}",
        data.train.len(),
        data.val.len(),
        data.root.display()
    );
    let (run, resume) = cli::training_run(
        resumed,
        args.train.common.out.as_deref(),
        "segment",
        &config,
    )?;
    match train_and_evaluate(&config, data, &run, &device, resume)? {
        None => {
            let done = config.train.pause_after.unwrap_or(0);
            cli::paused(done, config.train.epochs, &run)
        }
        Some(report) => {
            print!("{}", report.summary());
            println!("run directory: {}", run.path().display());
            Ok(())
        }
    }
}

fn eval(args: &EvalArgs) -> Result<()> {
    let device = backend::device(args.device.as_deref())?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.run.join(format!("eval-{}", args.split)));
    let report = evaluate_run(
        &args.run,
        &args.data,
        &args.split,
        &kiln_data::download::cache_dir(),
        &out,
        &device,
    )?;
    print!("{}", report.summary());
    println!("wrote {}", out.join("metrics.json").display());
    Ok(())
}

fn predict(args: &PredictArgs) -> Result<()> {
    let device = backend::device(args.device.as_deref())?;
    let out = args.out.clone().unwrap_or_else(|| args.run.join("predict"));
    let written = kiln_segment::predict::predict_files(&args.run, &args.images, &out, &device)?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}
