//! `kiln-data`: look at a dataset before training on it.
//!
//! `kiln-data [--data PATH] [--config configs/cifar10-augment.toml]` prints the dataset's size,
//! class counts and channel statistics, and writes `samples.png` (original images, one row a
//! class) and `augmented.png` (the same images through the augmentation pipeline) into the run
//! directory. `kiln-data bench` measures the augmentation pipeline's single-core throughput.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};

use burn::data::dataset::Dataset;
use kiln::cli::{self, CommonArgs};
use kiln_data::augment::{PaddingMode, Pipeline, TransformConfig};
use kiln_data::throughput::pipeline_throughput;
use kiln_data::{
    AugmentedImages, ClassificationBatcher, GridOptions, ImageSet, Normalization,
    NormalizationKind, TrainTest,
};
use kiln_train::Progress;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Inspect a dataset: sizes, class counts, statistics and sample grids"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    inspect: InspectArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Measure the augmentation pipeline's throughput on one core.
    Bench(BenchArgs),
}

#[derive(clap::Args, Debug, Default)]
struct InspectArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Images drawn per class in the grids.
    #[arg(long)]
    samples_per_class: Option<usize>,
    /// Resize every image to WxH when loading (needed for ImageFolders of mixed sizes).
    #[arg(long, value_parser = parse_size)]
    resize: Option<[usize; 2]>,
}

#[derive(clap::Args, Debug)]
struct BenchArgs {
    #[command(flatten)]
    inspect: InspectArgs,
    /// Images to push through the pipeline.
    #[arg(long, default_value_t = 50_000)]
    images: usize,
}

/// `configs/*-augment.toml`: what `kiln-data` reads.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct DataConfig {
    /// Dataset path (overridden by --data).
    data: Option<PathBuf>,
    /// Seed for sampling and augmentation.
    seed: u64,
    /// Images per class in the grids.
    samples_per_class: usize,
    /// Pixel scale of the grids.
    scale: usize,
    /// Resize on load, [width, height].
    resize: Option<[usize; 2]>,
    /// The augmentation pipeline; empty means the CIFAR-10 training recipe sized to the data.
    augment: Vec<TransformConfig>,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            data: None,
            seed: 0,
            samples_per_class: 8,
            scale: 3,
            resize: None,
            augment: Vec::new(),
        }
    }
}

fn parse_size(text: &str) -> Result<[usize; 2], String> {
    let (w, h) = text
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("`{text}` is not WxH"))?;
    let parse = |v: &str| {
        v.trim()
            .parse::<usize>()
            .map_err(|_| format!("`{text}` is not WxH"))
    };
    let size = [parse(w)?, parse(h)?];
    let most = kiln_data::image_folder::MAX_IMAGE_SIDE;
    if size.iter().any(|&side| side == 0 || side > most) {
        return Err(format!("`{text}`: each side must be between 1 and {most}"));
    }
    Ok(size)
}

/// Flip, translate by an eighth of the side with reflection, and colour jitter.
fn default_augment(side: usize) -> Vec<TransformConfig> {
    vec![
        TransformConfig::RandomCrop {
            size: side,
            padding: side.div_ceil(8),
            padding_mode: PaddingMode::Reflect,
        },
        TransformConfig::HorizontalFlip { p: 0.5 },
        TransformConfig::ColorJitter {
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.4,
            hue: 0.1,
        },
    ]
}

struct Loaded {
    config: DataConfig,
    data_path: PathBuf,
    data: TrainTest,
    load_secs: f64,
}

fn load(args: &InspectArgs) -> Result<Loaded> {
    // Nothing here computes on a device, but a wrong --device is still reported.
    args.common.refuse_mixed("kiln-data")?;
    args.common.device()?;
    let mut config: DataConfig = cli::load_config(args.common.config.as_deref())?;
    if let Some(seed) = args.common.seed {
        config.seed = seed;
    }
    if let Some(n) = args.samples_per_class {
        config.samples_per_class = n;
    }
    if args.resize.is_some() {
        config.resize = args.resize;
    }
    let started = Instant::now();
    let (data_path, data) = cli::open_data(
        args.common.data.as_deref(),
        config.data.as_deref(),
        config.resize,
    )?;
    let load_secs = started.elapsed().as_secs_f64();
    config.data = Some(data_path.clone());
    if config.augment.is_empty() {
        config.augment = default_augment(data.train.width.min(data.train.height));
    }
    Ok(Loaded {
        config,
        data_path,
        data,
        load_secs,
    })
}

/// The first `n` images of every class (in dataset order), one row a class.
fn fmt_values(values: &[f32]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.4}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn inspect(args: InspectArgs) -> Result<()> {
    let Loaded {
        config,
        data_path,
        data,
        load_secs,
    } = load(&args)?;
    let run = cli::create_run(args.common.out.as_deref(), "kiln-data", &config)?;
    let pipeline = Pipeline::for_class_labels(&config.augment, config.seed)
        .context("invalid augmentation in the config")?;
    let train = &data.train;

    println!(
        "dataset   {} ({}), loaded in {load_secs:.1} s",
        data.name,
        data_path.display()
    );
    println!(
        "images    {}x{}x{}, {} classes",
        train.width,
        train.height,
        train.channels,
        train.classes.len()
    );
    let splits: Vec<(&str, &ImageSet)> = std::iter::once(("train", train))
        .chain(data.test.as_ref().map(|t| ("test", t)))
        .collect();
    let header: String = splits.iter().map(|(n, _)| format!("{n:>9}")).collect();
    println!("\n{:<16}{header}", "class");
    let counts: Vec<Vec<usize>> = splits.iter().map(|(_, s)| s.class_counts()).collect();
    for (c, name) in train.classes.iter().enumerate() {
        let row: String = counts.iter().map(|k| format!("{:>9}", k[c])).collect();
        println!("{name:<16}{row}");
    }
    let totals: String = splits
        .iter()
        .map(|(_, s)| format!("{:>9}", s.len()))
        .collect();
    println!("{:<16}{totals}\n", "total");

    let log = run.metrics();
    for (name, set) in &splits {
        let (mean, std) = kiln_data::channel_mean_std(set);
        println!(
            "{name:<6} mean {}   std {}   (per channel, [0, 1] scale)",
            fmt_values(&mean),
            fmt_values(&std)
        );
        log.append(&serde_json::json!({
            "split": name,
            "images": set.len(),
            "class_counts": set.class_counts(),
            "mean": mean,
            "std": std,
        }))?;
    }
    let normalization = Normalization::fit(NormalizationKind::PerChannel, train)?;
    normalization.save(&run.file("normalization.json"))?;

    let rows = train.first_of_each_class(config.samples_per_class);
    let originals: Vec<Vec<_>> = rows
        .iter()
        .map(|r| r.iter().map(|&i| train.image(i)).collect())
        .collect();
    // Item i of epoch 0, as training would see it.
    let through_pipeline = AugmentedImages::new(Arc::new(train.clone()), Arc::new(pipeline));
    let augmented: Vec<Vec<_>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|&i| {
                    Ok(through_pipeline
                        .get(i)
                        .context("augmenting a sample")?
                        .image)
                })
                .collect::<Result<_>>()
        })
        .collect::<Result<_>>()?;
    let grid = GridOptions {
        scale: config.scale,
        ..Default::default()
    };
    let samples_png = run.file("samples.png");
    let augmented_png = run.file("augmented.png");
    kiln_data::save_grid(&originals, grid, &samples_png)?;
    kiln_data::save_grid(&augmented, grid, &augmented_png)?;

    println!("\nrun directory {}", run.path().display());
    println!(
        "  samples.png    {} per class, rows in class order ({})",
        config.samples_per_class,
        train.classes.join(", ")
    );
    println!(
        "  augmented.png  the same images through {} augmentation steps",
        config.augment.len()
    );
    println!("  normalization.json, metrics.jsonl, config.toml");
    Ok(())
}

fn bench(args: BenchArgs) -> Result<()> {
    let Loaded { config, data, .. } = load(&args.inspect)?;
    let run = cli::create_run(
        args.inspect.common.out.as_deref(),
        "kiln-data-bench",
        &config,
    )?;
    let pipeline = Arc::new(Pipeline::for_class_labels(&config.augment, config.seed)?);
    let train = &data.train;
    let batcher =
        ClassificationBatcher::new(Normalization::fit(NormalizationKind::PerChannel, train)?);
    let n = args.images.max(1);

    // Everything below runs on this one thread.
    let progress = Progress::new(n as u64, "augment", "img");
    let rates = pipeline_throughput(train, &pipeline, &batcher, n, |k| progress.inc(k as u64));
    progress.finish();
    let (augment_rate, full_rate, checksum) =
        (rates.augment, rates.augment_and_normalise, rates.checksum);
    println!(
        "{} {}x{} images, {} steps, 1 thread:",
        n,
        train.width,
        train.height,
        config.augment.len()
    );
    println!("  augment               {augment_rate:>10.0} images/s");
    println!("  augment + normalise   {full_rate:>10.0} images/s   (checksum {checksum})");
    run.metrics().append(&serde_json::json!({
        "images": n,
        "augment_images_per_sec": augment_rate,
        "augment_normalize_images_per_sec": full_rate,
        "threads": 1,
    }))?;
    println!("run directory {}", run.path().display());
    Ok(())
}

fn main() -> std::process::ExitCode {
    kiln::alloc::tune_allocator();
    let cli = Cli::parse();
    cli::finish(match cli.command {
        Some(Command::Bench(args)) => bench(args),
        None => inspect(cli.inspect),
    })
}
