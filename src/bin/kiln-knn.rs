//! `kiln-knn`: k-nearest-neighbour classification on raw pixels, and its cross-validation.
//!
//! * `kiln-knn --data DIR --metric l1|l2 --k K [--out RUN]` stores the training split and
//!   prints test accuracy.
//! * `kiln-knn cv --data DIR [--subset]` runs k-fold cross-validation over k and both metrics,
//!   picks the best, retrains on all training data and reports test accuracy, with the
//!   accuracy-vs-k plot (error bars: one standard deviation over folds).

use std::time::Instant;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use serde_json::json;

use kiln::cli::{self, CommonArgs};
use kiln::knn::{KnnConfig, sample};
use kiln_classic::cross_validation::{CrossValidation, CvProgress, Fold, LabelledRows, check_plan};
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
struct Setup {
    config: KnnConfig,
    train: ImageSet,
    test: ImageSet,
    options: KnnOptions,
    device: burn::tensor::Device,
}

fn setup(args: &KnnArgs) -> Result<Setup> {
    let mut config = resolve(args)?;
    args.common.refuse_mixed("kiln-knn")?;
    let device = args.common.device()?;
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
    let (metric, k) = (s.config.metric, s.config.k);
    if k == 0 || k > s.train.len() {
        bail!(
            "k = {k} (--k) must be between 1 and the {} training images",
            s.train.len()
        );
    }
    let run = cli::create_run(args.common.out.as_deref(), "kiln-knn", &s.config)?;
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

/// Progress bar and per-fold lines while cross-validating.
struct CvReport<'a> {
    progress: &'a Progress,
    run: &'a kiln_train::RunDir,
    failed: Option<kiln_train::TrainError>,
}

impl CvProgress for CvReport<'_> {
    fn queries_done(&mut self, queries: usize) {
        self.progress.inc(queries as u64);
    }

    fn fold_done(&mut self, fold: usize, metric: Metric, seconds: f64, scores: &[(usize, f64)]) {
        for &(k, a) in scores {
            let record = json!({"fold": fold, "metric": metric, "k": k, "val_accuracy": a});
            if let Err(e) = self.run.metrics().append(&record) {
                self.failed.get_or_insert(e);
            }
        }
        self.progress
            .println(format!("fold {} {metric}: {seconds:.1} s", fold + 1));
    }
}

fn cross_validate(args: KnnArgs) -> Result<()> {
    let s = setup(&args)?;
    let cv = &s.config.cv;
    let folds: Vec<Fold> =
        kiln_data::split::stratified_k_fold(&s.train.labels, cv.folds, s.config.seed)?
            .into_iter()
            .map(|split| Fold {
                train: split.train,
                val: split.val,
            })
            .collect();
    // Refused before the run directory exists.
    check_plan(&folds, &cv.ks, &cv.metrics)?;
    let run = cli::create_run(args.common.out.as_deref(), "kiln-knn-cv", &s.config)?;
    let rows = LabelledRows {
        pixels: &s.train.pixels,
        dims: s.train.image_len(),
        labels: &s.train.labels,
        classes: s.train.classes.len(),
    };
    let progress = Progress::new((s.train.len() * cv.metrics.len()) as u64, "cv", "img");
    let mut report = CvReport {
        progress: &progress,
        run: &run,
        failed: None,
    };
    let result = kiln_classic::cross_validation::cross_validate(
        rows,
        &folds,
        &cv.ks,
        &cv.metrics,
        &s.options,
        &s.device,
        &mut report,
    )?;
    if let Some(e) = report.failed {
        return Err(e.into());
    }
    progress.finish();
    print_cv_table(&result, cv.folds, s.train.len(), &run)?;

    let (metric, k, best_acc) = result.best();
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

/// The table of mean ± standard deviation per k and metric, and `cv_accuracy.png`.
fn print_cv_table(
    cv: &CrossValidation,
    folds: usize,
    images: usize,
    run: &kiln_train::RunDir,
) -> Result<()> {
    println!("\n{folds}-fold cross-validation on {images} training images");
    let header: String = cv
        .metrics
        .iter()
        .map(|m| format!("{:>18}", m.to_string()))
        .collect();
    println!("{:>5} {header}", "k");
    for (ki, k) in cv.ks.iter().enumerate() {
        let row: String = (0..cv.metrics.len())
            .map(|mi| {
                let (mean, std) = cv.mean_std(mi, ki);
                format!("{:>11.2} ± {:>4.2}", 100.0 * mean, 100.0 * std)
            })
            .collect();
        println!("{k:>5} {row}");
    }
    let series = cv
        .metrics
        .iter()
        .enumerate()
        .map(|(mi, metric)| {
            let stats: Vec<(f64, f64)> = (0..cv.ks.len()).map(|ki| cv.mean_std(mi, ki)).collect();
            Series {
                name: metric.to_string(),
                points: cv
                    .ks
                    .iter()
                    .zip(&stats)
                    .map(|(&k, s)| (k as f64, s.0))
                    .collect(),
                errors: Some(stats.iter().map(|s| s.1).collect()),
            }
        })
        .collect();
    LinePlot {
        title: format!("kNN {folds}-fold cross-validation"),
        x_label: "k".into(),
        y_label: "validation accuracy".into(),
        series,
    }
    .save_png(&run.file("cv_accuracy.png"))?;
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
