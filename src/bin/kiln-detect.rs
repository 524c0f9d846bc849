//! `kiln-detect`: object detection the CS231n way, from localization to R-CNN.
//!
//! - `kiln-detect train --config configs/raccoon-localize.toml --data DATA` trains the config's
//!   method (localize, overfeat, rcnn, fast-rcnn, faster-rcnn), then detects on the test split and writes
//!   `detections.json` (COCO results), `metrics.json`, `pr_curve.png` and `predictions.png`;
//! - `kiln-detect eval --gt DATA|instances.json --detections results.json` scores detections
//!   (COCO AP as pycocotools computes it, VOC AP);
//! - `kiln-detect proposals --data DATA` runs selective search, caches the proposals and
//!   reports their recall;
//! - `kiln-detect predict --run RUN IMAGE…` draws a trained run's detections on photos;
//! - `kiln-detect test --run RUN [--batch N]` tests a trained run again on its test split (e.g.
//!   to time it at another batch size);
//! - `kiln-detect compare --out speed_accuracy.png RUN…` plots the runs' test AP50 against
//!   their test images per second;
//! - `kiln-detect anchors --config configs/raccoon-yolo.toml --data DATA [--write]` fits a YOLO
//!   config's anchor sizes to the training boxes (k-means) and writes them into the config;
//! - `kiln-detect shapes --out DIR --train 2000 --test 300` generates the *Shapes*
//!   instance-segmentation data set (PNGs and COCO instances files with masks);
//! - `kiln-detect camvid-instances --data camvid.tar.gz --out DIR` turns CamVid's label maps
//!   into car, pedestrian, bicyclist and sign instances (connected components) in COCO layout.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use kiln::backend;
use kiln::cli::{self, TrainArgs, finish};
use kiln::detect;
use kiln_detect::config::DetectConfig;
use kiln_detect::data::DetectionSet;
use kiln_detect::data::coco::read_coco_instances;
use kiln_detect::data::results::{read_coco_mask_results, read_coco_results};
use kiln_detect::eval::format_report;
use kiln_detect::proposals::SelectiveSearchConfig;
use kiln_detect::run::{score_detections, train_and_test};

#[derive(Parser, Debug)]
#[command(version, about = "Train, evaluate and run object detectors")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a config's detector, then detect on the test split and score it.
    Train(TrainCommand),
    /// Score COCO-results detections against ground truth.
    Eval(EvalArgs),
    /// Draw a trained run's detections on photos.
    Predict(PredictArgs),
    /// Selective-search proposals for a dataset's images: cached, with their recall.
    Proposals(ProposalArgs),
    /// Fit a YOLO config's anchor sizes to the training boxes (k-means on IoU).
    Anchors(AnchorArgs),
    /// Test a trained run again on its test split.
    Test(TestArgs),
    /// Plot runs' test AP50 against their test images per second.
    Compare(CompareArgs),
    /// Generate the Shapes instance-segmentation data set (COCO layout, with masks).
    Shapes(detect::ShapesArgs),
    /// CamVid's car, pedestrian, bicyclist and sign labels as instances (COCO layout).
    CamvidInstances(detect::CamvidInstancesArgs),
}

#[derive(Args, Debug)]
struct TestArgs {
    /// The trained run's directory.
    #[arg(long, value_name = "RUN")]
    run: PathBuf,
    /// The dataset (default: the one the run was trained on).
    #[arg(long, value_name = "PATH")]
    data: Option<PathBuf>,
    /// Test images per step (default: the config's eval_batch).
    #[arg(long)]
    batch: Option<usize>,
    /// Where the results go (default: RUN/test-bN for --batch N, else RUN/test).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Compute device: auto, flex, ndarray, wgpu or wgpu:N.
    #[arg(long, value_name = "NAME")]
    device: Option<String>,
}

#[derive(Args, Debug)]
struct CompareArgs {
    /// Finished training runs, or `kiln-detect test` outputs (none when every detector is
    /// given with `--point`).
    #[arg(value_name = "DIR")]
    runs: Vec<PathBuf>,
    /// A detector measured elsewhere, plotted beside the runs (repeatable), e.g.
    /// `--point rcnn=0.848@0.05` for a run no longer on this machine.
    #[arg(long = "point", value_name = "LABEL=AP50@IMAGES_PER_SEC")]
    points: Vec<detect::MeasuredPoint>,
    /// The PNG to write.
    #[arg(long, value_name = "FILE", default_value = "speed_accuracy.png")]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct AnchorArgs {
    /// The YOLO config (its input size, strides, anchor count, split and classes are used).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The dataset (a VOC folder or its .tar.gz); default: the config's data path.
    #[arg(long, value_name = "PATH")]
    data: Option<PathBuf>,
    /// Anchors to fit (default: as many as the config has).
    #[arg(long)]
    count: Option<usize>,
    /// Write the fitted sizes into the config's yolo.anchor table (other lines are kept).
    #[arg(long)]
    write: bool,
}

#[derive(Args, Debug)]
struct ProposalArgs {
    /// The dataset (a VOC folder or its .tar.gz).
    #[arg(long, value_name = "PATH")]
    data: PathBuf,
    /// Which images: train, test or all.
    #[arg(long, default_value = "train")]
    split: String,
    /// Selective-search settings (TOML; default: the paper's fast mode, long side 500).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Threads, one image each at a time (0: one per core).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Where proposals are cached (default: kiln's cache, `proposals/`).
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Run directory for the report and plot (default `runs/proposals-<UTC time>`).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Test share used to split a folder without split files.
    #[arg(long, default_value_t = 0.2)]
    test_fraction: f32,
    /// Seed of that split.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args, Debug)]
struct TrainCommand {
    #[command(flatten)]
    train: TrainArgs,
    /// Drop images that are missing or cannot be decoded (listed in one warning) instead of
    /// stopping.
    #[arg(long)]
    skip_bad_images: bool,
}

#[derive(Args, Debug)]
struct EvalArgs {
    /// Ground truth: a VOC dataset (folder or .tar.gz; see --split) or a COCO instances .json.
    #[arg(long, value_name = "PATH")]
    gt: PathBuf,
    /// Detections as a COCO results .json (`image_id`, `category_id`, `bbox`, `score`).
    #[arg(long, value_name = "FILE")]
    detections: PathBuf,
    /// Which split of a VOC dataset is the ground truth: test, train or all.
    #[arg(long, default_value = "test")]
    split: String,
    /// Test share used to split a VOC folder without split files (as in training).
    #[arg(long, default_value_t = 0.2)]
    test_fraction: f32,
    /// Seed of that split.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where metrics.json and pr_curve.png go (default: beside the detections file).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// What is compared: bbox (boxes), or segm (instance masks: the detections need a
    /// segmentation each, and the ground truth COCO segmentations).
    #[arg(long, default_value = "bbox", value_parser = ["bbox", "segm"])]
    iou_type: String,
}

#[derive(Args, Debug)]
struct PredictArgs {
    /// The trained run's directory.
    #[arg(long, value_name = "RUN")]
    run: PathBuf,
    /// Photos to detect objects in.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
    /// Where the drawn PNGs go (default: RUN/predict).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Detections scoring below this are not drawn.
    #[arg(long, default_value_t = 0.3)]
    min_score: f32,
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
        Command::Proposals(args) => proposals(&args),
        Command::Anchors(args) => anchors(&args),
        Command::Test(args) => test(&args),
        Command::Compare(args) => compare(&args),
        Command::Shapes(args) => detect::run_shapes(&args),
        Command::CamvidInstances(args) => detect::run_camvid_instances(&args),
    })
}

fn train(args: &TrainCommand) -> Result<()> {
    let (mut config, resumed): (DetectConfig, _) = cli::resolve_training(&args.train)?;
    let data_path = cli::training_data(
        args.train.common.data.as_deref(),
        config.data.path.as_deref(),
        "--data (a VOC folder or its .tar.gz) or [data] path",
    )?;
    config.data.path = Some(data_path.clone());
    config.validate()?;
    let device = args.train.common.device()?;
    // The backend's generator initialises the necks and heads: seeded, a run repeats exactly.
    device.seed(config.seed);
    let data = detect::load(&data_path, &config, args.skip_bad_images)?;
    let (run, resume) =
        cli::training_run(resumed, args.train.common.out.as_deref(), "detect", &config)?;
    match train_and_test(&config, &data, &run, &device, resume)? {
        None => {
            let done = config.train.pause_after.unwrap_or(0);
            cli::paused(done, config.train.epochs, &run)
        }
        Some((report, scores)) => {
            detect::print_report(&report, &format_report(&scores.coco, &scores.voc));
            println!("run directory: {}", run.path().display());
            Ok(())
        }
    }
}

/// One split (`test`, `train` or `all`) of a VOC dataset split as training would split it.
fn voc_split(path: &Path, split: &str, test_fraction: f32, seed: u64) -> Result<DetectionSet> {
    if !matches!(split, "test" | "train" | "all") {
        bail!("--split {split}: choose test, train or all");
    }
    let config = DetectConfig {
        seed,
        data: kiln_detect::config::DataConfig {
            test_fraction,
            ..Default::default()
        },
        ..Default::default()
    };
    let data = detect::load(path, &config, false)?;
    Ok(match split {
        "test" => data.test,
        "train" => data.train,
        _ => {
            let mut all = data.train;
            all.images.extend(data.test.images);
            all
        }
    })
}

/// The ground truth `eval` compares with.
fn ground_truth(args: &EvalArgs) -> Result<DetectionSet> {
    if args
        .gt
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        let images = args.gt.parent().unwrap_or(Path::new("."));
        return Ok(read_coco_instances(&args.gt, images)?);
    }
    voc_split(&args.gt, &args.split, args.test_fraction, args.seed)
}

fn proposals(args: &ProposalArgs) -> Result<()> {
    let config: SelectiveSearchConfig = cli::load_config(args.config.as_deref())?;
    config.validate()?;
    let set = voc_split(&args.data, &args.split, args.test_fraction, args.seed)?;
    let cache = args
        .cache
        .clone()
        .unwrap_or_else(|| kiln_data::download::cache_dir().join("proposals"));
    let run = cli::create_run(args.out.as_deref(), "proposals", &config)?;
    let report = detect::proposals(&set, &config, &cache, args.threads, &run)?;
    println!("{report}");
    println!("run directory: {}", run.path().display());
    Ok(())
}

fn test(args: &TestArgs) -> Result<()> {
    let run = kiln_train::RunDir::open(&args.run)?;
    let (config, _) = kiln_detect::predict::run_config(&run)?;
    let data_path = cli::training_data(
        args.data.as_deref(),
        config.data.path.as_deref(),
        "--data (the run's dataset)",
    )?;
    let device = backend::device(args.device.as_deref())?;
    let data = detect::load(&data_path, &config, false)?;
    let out = args.out.clone().unwrap_or_else(|| {
        args.run.join(match args.batch {
            Some(b) => format!("test-b{b}"),
            None => "test".into(),
        })
    });
    let (report, scores) = kiln_detect::run::test_run(&run, &data, args.batch, &out, &device)?;
    detect::print_report(&report, &format_report(&scores.coco, &scores.voc));
    println!("results in {}", out.display());
    Ok(())
}

fn compare(args: &CompareArgs) -> Result<()> {
    println!("{}", detect::compare(&args.runs, &args.points, &args.out)?);
    println!("wrote {}", args.out.display());
    Ok(())
}

fn anchors(args: &AnchorArgs) -> Result<()> {
    let config: DetectConfig = cli::load_config(Some(&args.config))?;
    config.validate()?;
    let data_path = cli::training_data(
        args.data.as_deref(),
        config.data.path.as_deref(),
        "--data (a VOC folder or its .tar.gz) or [data] path",
    )?;
    let data = detect::load(&data_path, &config, false)?;
    let count = args.count.unwrap_or(config.yolo.anchor.sizes.len());
    let fit = detect::fit_anchors(&data.train, &config, count)?;
    println!("{}", detect::anchor_report(&fit, &config));
    if args.write {
        detect::write_anchors(&args.config, &fit.sizes)?;
        println!("wrote the sizes into {}", args.config.display());
    }
    Ok(())
}

fn eval(args: &EvalArgs) -> Result<()> {
    let gt = ground_truth(args)?;
    let out = match &args.out {
        Some(dir) => dir.clone(),
        None => args
            .detections
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    if args.iou_type == "segm" {
        let detections = read_coco_mask_results(&args.detections, &gt)?;
        let report = kiln_detect::run::score_masks(&gt, &detections, &out)?;
        println!("{}", detect::mask_summary(&report));
        println!("wrote {}", out.join("mask_metrics.json").display());
        return Ok(());
    }
    let detections = read_coco_results(&args.detections, &gt)?;
    let scores = score_detections(&gt, &detections, &out)?;
    println!("{}", format_report(&scores.coco, &scores.voc));
    println!(
        "wrote {} and {}",
        out.join("metrics.json").display(),
        out.join("pr_curve.png").display()
    );
    Ok(())
}

fn predict(args: &PredictArgs) -> Result<()> {
    let device = backend::device(args.device.as_deref())?;
    let out = args.out.clone().unwrap_or_else(|| args.run.join("predict"));
    let written = kiln_detect::predict::predict_files(
        &args.run,
        &args.images,
        &out,
        args.min_score,
        &device,
    )?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}
