//! `kiln-knn`: k-nearest-neighbour classification on raw pixels, and its cross-validation.
//!
//! * `kiln-knn --data DIR --metric l1|l2 --k K [--out RUN]` stores the training split and
//!   prints test accuracy.
//! * `kiln-knn cv --data DIR [--subset]` runs k-fold cross-validation over k and both metrics,
//!   picks the best, retrains on all training data and reports test accuracy, with the
//!   accuracy-vs-k plot (error bars: one standard deviation over folds).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::json;

use kiln::cli::{self, CommonArgs};
use kiln_classic::knn::{DistanceKernel, KnnClassifier, KnnOptions, Metric, accuracy};
use kiln_data::ImageSet;
use kiln_train::Progress;
use kiln_train::plot::{LinePlot, Series};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "k-nearest neighbours on raw pixels, with cross-validation"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    args: KnnArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// k-fold cross-validation over k and the metrics, then the best setting on the test set.
    Cv(KnnArgs),
}

#[derive(clap::Args, Debug, Default)]
struct KnnArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Distance: l1 or l2.
    #[arg(long)]
    metric: Option<String>,
    /// Neighbours that vote.
    #[arg(long)]
    k: Option<usize>,
    /// Largest block of distances held at once, in MiB.
    #[arg(long)]
    memory_budget_mb: Option<usize>,
    /// Use the course's subset sizes (5,000 training and 500 test images, stratified and seeded;
    /// see the config).
    #[arg(long)]
    subset: bool,
    /// Number of folds (cv).
    #[arg(long)]
    folds: Option<usize>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct KnnConfig {
    data: Option<PathBuf>,
    metric: Metric,
    k: usize,
    memory_budget_mb: usize,
    seed: u64,
    subset_used: bool,
    cv: CvConfig,
    subset: SubsetConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct CvConfig {
    folds: usize,
    ks: Vec<usize>,
    metrics: Vec<Metric>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SubsetConfig {
    train: usize,
    test: usize,
}

impl Default for KnnConfig {
    fn default() -> Self {
        Self {
            data: None,
            metric: Metric::L1,
            k: 1,
            memory_budget_mb: 1024,
            seed: 0,
            subset_used: false,
            cv: CvConfig::default(),
            subset: SubsetConfig::default(),
        }
    }
}

impl Default for CvConfig {
    fn default() -> Self {
        Self {
            folds: 5,
            ks: vec![1, 3, 5, 8, 10, 12, 15, 20, 50, 100],
            metrics: vec![Metric::L1, Metric::L2],
        }
    }
}

impl Default for SubsetConfig {
    fn default() -> Self {
        Self {
            train: 5000,
            test: 500,
        }
    }
}

fn resolve(args: &KnnArgs) -> Result<KnnConfig> {
    let mut config: KnnConfig = cli::load_config(args.common.config.as_deref())?;
    if let Some(m) = &args.metric {
        config.metric = m.parse()?;
    }
    if let Some(k) = args.k {
        config.k = k;
    }
    if let Some(mb) = args.memory_budget_mb {
        config.memory_budget_mb = mb;
    }
    if let Some(seed) = args.common.seed {
        config.seed = seed;
    }
    if let Some(f) = args.folds {
        config.cv.folds = f;
    }
    config.subset_used |= args.subset;
    if config.memory_budget_mb == 0 {
        bail!("--memory-budget-mb must be positive");
    }
    Ok(config)
}

/// `n` images spread evenly over the classes, drawn with `seed` (file order is often sorted by
/// class, so "the first n" would not be a sample).
fn sample(set: &ImageSet, n: usize, seed: u64) -> Result<ImageSet> {
    let per_class = (n / set.classes.len()).max(1);
    let indices = kiln_data::split::per_class_subset(&set.labels, per_class, seed)?;
    Ok(set.subset(&indices))
}

struct Setup {
    config: KnnConfig,
    train: ImageSet,
    test: ImageSet,
    options: KnnOptions,
    device: burn::tensor::Device,
}

fn setup(args: &KnnArgs) -> Result<Setup> {
    let mut config = resolve(args)?;
    let device = kiln::backend::device(args.common.device.as_deref())?;
    let (path, data) = cli::open_data(args.common.data.as_deref(), config.data.as_deref(), None)?;
    config.data = Some(path.clone());
    let mut test = cli::require_test(&data, &path)?;
    let mut train = data.train;
    if config.subset_used {
        train = sample(&train, config.subset.train, config.seed)?;
        test = sample(&test, config.subset.test, config.seed)?;
    }
    let options = KnnOptions {
        memory_budget: config.memory_budget_mb << 20,
        kernel: if kiln::backend::is_cpu(args.common.device.as_deref()) {
            DistanceKernel::Native
        } else {
            DistanceKernel::Tensor
        },
    };
    Ok(Setup {
        config,
        train,
        test,
        options,
        device,
    })
}

fn mb(bytes: usize) -> f64 {
    bytes as f64 / 1e6
}

/// Fits on `train`, returns the neighbour lists of `queries` (k_max each) and the seconds taken.
fn neighbours(
    train: &ImageSet,
    queries: &ImageSet,
    k_max: usize,
    metric: Metric,
    s: &Setup,
    progress: &Progress,
) -> Result<(KnnClassifier, Vec<Vec<u32>>, f64)> {
    let knn = KnnClassifier::fit(
        train.pixels.clone(),
        train.image_len(),
        train.labels.clone(),
        train.classes.len(),
        &s.device,
    )?;
    knn.prepare(metric, &s.options);
    let started = Instant::now();
    let nb = knn.neighbours(&queries.pixels, k_max, metric, &s.options, |n| {
        progress.inc(n as u64)
    })?;
    Ok((knn, nb, started.elapsed().as_secs_f64()))
}

fn classify(args: KnnArgs) -> Result<()> {
    let s = setup(&args)?;
    let run = cli::create_run(args.common.out.as_deref(), "kiln-knn", &s.config)?;
    let (metric, k) = (s.config.metric, s.config.k);
    let progress = Progress::new(s.test.len() as u64, "classify", "img");
    let (knn, nb, secs) = neighbours(&s.train, &s.test, k, metric, &s, &progress)?;
    progress.finish();
    let memory = knn.memory();
    let predicted = knn.vote_k(&nb, k);
    let acc = accuracy(&predicted, &s.test.labels);
    let held: Vec<String> = memory
        .iter()
        .map(|(what, bytes)| format!("{:.1} MB as {what}", mb(*bytes)))
        .collect();
    println!(
        "training set kept in memory: {} images x {} values = {}",
        s.train.len(),
        s.train.image_len(),
        held.join(", ")
    );
    println!(
        "{metric} k={k}: test accuracy {:.2} % on {} images ({:.1} s, {:.0} queries/s)",
        100.0 * acc,
        s.test.len(),
        secs,
        s.test.len() as f64 / secs
    );
    run.metrics().append(&json!({
        "metric": metric, "k": k, "test_accuracy": acc, "seconds": secs,
        "train_images": s.train.len(), "test_images": s.test.len(),
        "memory_bytes": memory.iter().map(|(w, b)| (w.to_string(), *b)).collect::<std::collections::BTreeMap<_, _>>(),
    }))?;
    println!("run directory {}", run.path().display());
    Ok(())
}

fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

fn cross_validate(args: KnnArgs) -> Result<()> {
    let s = setup(&args)?;
    let cv = &s.config.cv;
    let run = cli::create_run(args.common.out.as_deref(), "kiln-knn-cv", &s.config)?;
    let folds = kiln_data::split::stratified_k_fold(&s.train.labels, cv.folds, s.config.seed)?;
    let fold_size = s.train.len().div_ceil(cv.folds);
    let mut ks = cv.ks.clone();
    ks.sort_unstable();
    ks.dedup();
    let k_max = *ks.last().ok_or_else(|| anyhow::anyhow!("cv.ks is empty"))?;
    if k_max > s.train.len() - fold_size {
        bail!(
            "k = {k_max} exceeds the {} images of a training fold",
            s.train.len() - fold_size
        );
    }
    let total = (s.train.len() * cv.metrics.len()) as u64;
    let progress = Progress::new(total, "cv", "img");
    // accuracy[metric][k index][fold]
    let mut acc = vec![vec![Vec::new(); ks.len()]; cv.metrics.len()];
    for (fi, fold) in folds.iter().enumerate() {
        let train = s.train.subset(&fold.train);
        let val = s.train.subset(&fold.val);
        for (mi, &metric) in cv.metrics.iter().enumerate() {
            let (knn, nb, secs) = neighbours(&train, &val, k_max, metric, &s, &progress)?;
            for (ki, &k) in ks.iter().enumerate() {
                let a = accuracy(&knn.vote_k(&nb, k), &val.labels);
                acc[mi][ki].push(a);
                run.metrics()
                    .append(&json!({"fold": fi, "metric": metric, "k": k, "val_accuracy": a}))?;
            }
            progress.println(format!("fold {} {metric}: {:.1} s", fi + 1, secs));
        }
    }
    progress.finish();

    println!(
        "\n{}-fold cross-validation on {} training images",
        cv.folds,
        s.train.len()
    );
    println!(
        "{:>5} {}",
        "k",
        cv.metrics
            .iter()
            .map(|m| format!("{:>18}", m.to_string()))
            .collect::<String>()
    );
    let mut best = (f64::NEG_INFINITY, Metric::L1, 0usize);
    let mut series: Vec<Series> = Vec::new();
    for (mi, &metric) in cv.metrics.iter().enumerate() {
        let mut s_points = Vec::new();
        let mut s_err = Vec::new();
        for (ki, &k) in ks.iter().enumerate() {
            let (m, sd) = mean_std(&acc[mi][ki]);
            s_points.push((k as f64, m));
            s_err.push(sd);
            if m > best.0 {
                best = (m, metric, k);
            }
        }
        series.push(Series {
            name: metric.to_string(),
            points: s_points,
            errors: Some(s_err),
        });
    }
    for (ki, k) in ks.iter().enumerate() {
        let row: String = series
            .iter()
            .map(|se| {
                format!(
                    "{:>11.2} ± {:>4.2}",
                    100.0 * se.points[ki].1,
                    100.0 * se.errors.as_ref().unwrap()[ki]
                )
            })
            .collect();
        println!("{k:>5} {row}");
    }
    let plot = LinePlot {
        title: format!("kNN {}-fold cross-validation", cv.folds),
        x_label: "k".into(),
        y_label: "validation accuracy".into(),
        series,
    };
    plot.save_png(&run.file("cv_accuracy.png"))?;

    let (best_acc, metric, k) = best;
    let progress = Progress::new(s.test.len() as u64, "test", "img");
    let (knn, nb, secs) = neighbours(&s.train, &s.test, k, metric, &s, &progress)?;
    progress.finish();
    let test_acc = accuracy(&knn.vote_k(&nb, k), &s.test.labels);
    println!(
        "\nbest: {metric} k={k} ({:.2} % cross-validated); retrained on all {} training images: test accuracy {:.2} % ({:.1} s)",
        100.0 * best_acc,
        s.train.len(),
        100.0 * test_acc,
        secs
    );
    run.metrics().append(&json!({"best_metric": metric, "best_k": k, "cv_accuracy": best_acc, "test_accuracy": test_acc}))?;
    println!("run directory {} (cv_accuracy.png)", run.path().display());
    Ok(())
}

fn main() -> std::process::ExitCode {
    kiln::alloc::tune_allocator();
    let cli = Cli::parse();
    cli::finish(match cli.command {
        Some(Command::Cv(args)) => cross_validate(args),
        None => classify(cli.args),
    })
}
