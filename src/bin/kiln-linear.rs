//! `kiln-linear`: linear SVM and softmax classifiers trained with minibatch SGD on hand-derived
//! gradients (or Burn's autodiff with `--grad autodiff`), and random search of their learning
//! rate and regularisation.
//!
//! * `kiln-linear --data DIR --loss svm|softmax [--out RUN]` trains with the config's settings
//!   and prints validation and test accuracy; writes the loss curve and the class templates.
//! * `kiln-linear search --data DIR --loss svm|softmax` runs a coarse then a fine random search.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Int, Tensor, TensorData};
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::json;

use kiln::cli::{self, CommonArgs};
use kiln_classic::linear::{
    GradMode, LinearClassifier, LinearClassifierConfig, LossKind, SgdSettings, loss,
    with_bias_column,
};
use kiln_data::{GridOptions, Image, ImageSet, Normalization, NormalizationKind, Splits};
use kiln_train::plot::{LinePlot, Series};
use kiln_train::search::{SearchPlan, TrialScore, coarse_to_fine_search};
use kiln_train::{Progress, TrainError};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Linear SVM / softmax classifiers with hand-derived gradients"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    args: LinearArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Random search over learning rate and regularisation: coarse, then fine.
    Search(LinearArgs),
}

#[derive(clap::Args, Debug, Default)]
struct LinearArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// svm or softmax.
    #[arg(long, default_value = "svm")]
    loss: String,
    /// Gradients: analytic (hand-derived, default) or autodiff.
    #[arg(long)]
    grad: Option<String>,
    /// Learning rate (overrides the config).
    #[arg(long)]
    learning_rate: Option<f64>,
    /// Regularisation strength (overrides the config).
    #[arg(long)]
    reg: Option<f64>,
    /// SGD iterations (overrides the config).
    #[arg(long)]
    iterations: Option<usize>,
    /// Minibatch size (overrides the config).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Learning-rate factor applied after every epoch (overrides the config).
    #[arg(long)]
    lr_decay: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct LinearConfig {
    data: Option<PathBuf>,
    val_images: usize,
    seed: u64,
    normalization: NormalizationKind,
    init_std: f64,
    loss: LossKind,
    svm: SgdSettings,
    softmax: SgdSettings,
    search: SearchConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SearchConfig {
    coarse_trials: usize,
    coarse_iterations: usize,
    fine_trials: usize,
    fine_iterations: usize,
    fine_width_decades: f64,
    learning_rate: [f64; 2],
    reg: [f64; 2],
}

fn course_sgd() -> SgdSettings {
    SgdSettings {
        learning_rate: 1e-7,
        reg: 2.5e4,
        iterations: 1500,
        batch_size: 200,
        grad: GradMode::Analytic,
        lr_decay: 1.0,
    }
}

impl Default for LinearConfig {
    fn default() -> Self {
        Self {
            data: None,
            val_images: 1000,
            seed: 0,
            normalization: NormalizationKind::MeanImage,
            init_std: 1e-4,
            loss: LossKind::Svm,
            svm: course_sgd(),
            softmax: course_sgd(),
            search: SearchConfig::default(),
        }
    }
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            coarse_trials: 24,
            coarse_iterations: 400,
            fine_trials: 16,
            fine_iterations: 1500,
            fine_width_decades: 1.0,
            learning_rate: [1e-8, 1e-5],
            reg: [1e2, 1e5],
        }
    }
}

impl LinearConfig {
    fn settings(&self) -> &SgdSettings {
        match self.loss {
            LossKind::Svm => &self.svm,
            LossKind::Softmax => &self.softmax,
        }
    }
    fn settings_mut(&mut self) -> &mut SgdSettings {
        match self.loss {
            LossKind::Svm => &mut self.svm,
            LossKind::Softmax => &mut self.softmax,
        }
    }
}

/// The best known settings per dataset (the searches in BENCHMARKS.md), used without --config.
const BEST_KNOWN: [(&str, &str); 2] = [
    (
        "fashion-mnist",
        include_str!("../../configs/fashion-mnist-linear.toml"),
    ),
    ("cifar10", include_str!("../../configs/cifar10-linear.toml")),
];

/// The best known settings for `dataset` (CIFAR-10's for any other dataset).
fn best_known(dataset: &str) -> Result<LinearConfig> {
    let text = BEST_KNOWN
        .iter()
        .find(|(name, _)| *name == dataset)
        .unwrap_or(&BEST_KNOWN[1])
        .1;
    Ok(toml::from_str(text)?)
}

/// Applies the command-line flags to `config` and validates the result.
fn apply_flags(args: &LinearArgs, mut config: LinearConfig) -> Result<LinearConfig> {
    config.loss = args.loss.parse()?;
    if let Some(seed) = args.common.seed {
        config.seed = seed;
    }
    let s = config.settings_mut();
    if let Some(lr) = args.learning_rate {
        s.learning_rate = lr;
    }
    if let Some(reg) = args.reg {
        s.reg = reg;
    }
    if let Some(it) = args.iterations {
        s.iterations = it;
    }
    if let Some(b) = args.batch_size {
        s.batch_size = b;
    }
    if let Some(d) = args.lr_decay {
        s.lr_decay = d;
    }
    if let Some(g) = &args.grad {
        s.grad = match g.as_str() {
            "analytic" => GradMode::Analytic,
            "autodiff" => GradMode::Autodiff,
            other => bail!("--grad {other}: use analytic or autodiff"),
        };
    }
    let s = config.settings();
    if !(s.learning_rate > 0.0 && s.learning_rate.is_finite())
        || s.reg < 0.0
        || s.batch_size == 0
        || !(s.lr_decay > 0.0 && s.lr_decay <= 1.0)
    {
        bail!(
            "learning_rate must be positive, reg non-negative, batch_size positive and lr_decay in (0, 1]"
        );
    }
    Ok(config)
}

/// One split as device tensors: features with the bias column, and labels.
struct Matrix {
    x: Tensor<2>,
    y: Tensor<1, Int>,
    labels: Vec<usize>,
}

fn to_matrix(set: &ImageSet, norm: &Normalization, device: &Device) -> Result<Matrix> {
    let values = norm.apply_set(set);
    if values.iter().any(|v| !v.is_finite()) {
        bail!("the data contain NaN or infinite values after normalisation");
    }
    let x = Tensor::<2>::from_data(
        TensorData::new(values, [set.len(), set.image_len()]),
        device,
    );
    let labels_i64: Vec<i64> = set.labels.iter().map(|&l| l as i64).collect();
    Ok(Matrix {
        x: with_bias_column(x),
        y: Tensor::from_data(TensorData::new(labels_i64, [set.len()]), device),
        labels: set.labels.clone(),
    })
}

struct Prepared {
    config: LinearConfig,
    train: Matrix,
    val: Matrix,
    test: Matrix,
    norm: Normalization,
    geometry: (usize, usize, usize),
    classes: Vec<String>,
    device: Device,
}

fn prepare(args: &LinearArgs) -> Result<Prepared> {
    let device = kiln::backend::device(args.common.device.as_deref())?;
    let file: Option<LinearConfig> = match &args.common.config {
        Some(path) => Some(cli::load_config(Some(path))?),
        None => None,
    };
    let data_in_config = file.as_ref().and_then(|c| c.data.clone());
    let (path, data) =
        cli::open_data(args.common.data.as_deref(), data_in_config.as_deref(), None)?;
    let mut config = apply_flags(
        args,
        match file {
            Some(config) => config,
            None => best_known(&data.name)?,
        },
    )?;
    config.data = Some(path.clone());
    let test = cli::require_test(&data, &path)?;
    let splits = Splits::new(data, config.val_images, config.seed)?;
    let val = splits
        .val
        .clone()
        .context("val_images must be positive: validation accuracy is reported")?;
    let norm = splits.fit_normalization(config.normalization)?;
    let t = &splits.train;
    eprintln!(
        "splits: {} train / {} validation (stratified, seed {}) / {} test; {:?} statistics from the training split",
        t.len(),
        val.len(),
        config.seed,
        test.len(),
        config.normalization
    );
    Ok(Prepared {
        train: to_matrix(t, &norm, &device)?,
        val: to_matrix(&val, &norm, &device)?,
        test: to_matrix(&test, &norm, &device)?,
        geometry: (t.width, t.height, t.channels),
        classes: t.classes.clone(),
        norm,
        config,
        device,
    })
}

fn accuracy(model: &LinearClassifier, m: &Matrix) -> Result<f64> {
    let p = model.predict(m.x.clone())?;
    Ok(kiln_classic::knn::accuracy(&p, &m.labels))
}

fn new_model(p: &Prepared) -> LinearClassifier {
    p.device.seed(p.config.seed);
    let (w, h, c) = p.geometry;
    LinearClassifierConfig::new(w * h * c, p.classes.len())
        .with_init_std(p.config.init_std)
        .init(&p.device)
}

/// Trains one model; `None` when it diverged (the reason is printed).
fn fit(
    p: &Prepared,
    settings: &SgdSettings,
    progress: &Progress,
    mut log: impl FnMut(usize, f64),
) -> Result<Option<LinearClassifier>> {
    let result = kiln_classic::linear::train(
        new_model(p),
        p.config.loss,
        &p.train.x,
        &p.train.y,
        settings,
        p.config.seed,
        |it, l| {
            progress.inc(1);
            if it % 50 == 0 {
                progress.status(format!("loss {l:.4}"));
            }
            log(it, l);
        },
    );
    match result {
        Ok((model, _)) => Ok(Some(model)),
        Err(e @ kiln_classic::ClassicError::Diverged { .. }) => {
            progress.println(format!("stopped: {e}"));
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// The weights of each class as an image (the course's "templates"), stretched to 0–255.
fn templates(model: &LinearClassifier, p: &Prepared) -> Result<Vec<Image>> {
    let (w, h, c) = p.geometry;
    let d = w * h * c;
    let weights = model
        .weight
        .val()
        .into_data()
        .try_to_vec_as::<f32>()
        .map_err(|e| anyhow::anyhow!("reading the weights failed: {e:?}"))?;
    let classes = p.classes.len();
    let mut images = Vec::with_capacity(classes);
    for class in 0..classes {
        let column: Vec<f32> = (0..d).map(|i| weights[i * classes + class]).collect();
        let (lo, hi) = column
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        let span = (hi - lo).max(f32::MIN_POSITIVE);
        let mut data = vec![0u8; d];
        for ch in 0..c {
            for px in 0..w * h {
                data[px * c + ch] = (255.0 * (column[ch * w * h + px] - lo) / span).round() as u8;
            }
        }
        images.push(Image::new(w, h, c, data)?);
    }
    Ok(images)
}

fn sanity_check(p: &Prepared) -> Result<()> {
    let model = new_model(p);
    let n = p.train.labels.len().min(500);
    let x = p.train.x.clone().narrow(0, 0, n);
    let y = p.train.y.clone().narrow(0, 0, n);
    let l = loss(p.config.loss, model.weight.val(), x, &y, 0.0).into_scalar::<f64>();
    let c = p.classes.len() as f64;
    let (expected, why) = match p.config.loss {
        LossKind::Softmax => (c.ln(), "ln(C)"),
        LossKind::Svm => (c - 1.0, "C − 1, every margin ≈ Δ"),
    };
    println!("sanity: initial loss {l:.4} with small weights, expected ≈ {expected:.4} ({why})");
    Ok(())
}

fn train_command(args: LinearArgs) -> Result<()> {
    let p = prepare(&args)?;
    let run = cli::create_run(args.common.out.as_deref(), "kiln-linear", &p.config)?;
    p.norm.save(&run.file("normalization.json"))?;
    sanity_check(&p)?;
    let settings = p.config.settings().clone();
    let progress = Progress::new(settings.iterations as u64, "sgd", "it");
    let log = run.metrics();
    let mut curve = Vec::new();
    let model = fit(&p, &settings, &progress, |it, l| {
        curve.push((it as f64, l));
        if it % 10 == 0 {
            let _ = log.append(&json!({"iteration": it, "loss": l}));
        }
    })?;
    let secs = progress.finish();
    let Some(model) = model else {
        bail!(
            "training diverged; the run directory {} keeps the log",
            run.path().display()
        );
    };
    LinePlot {
        title: format!("{:?} training loss", p.config.loss),
        x_label: "iteration".into(),
        y_label: "loss".into(),
        series: vec![Series::new("minibatch loss", curve)],
    }
    .save_png(&run.file("loss.png"))?;
    let (tr, va, te) = (
        accuracy(&model, &p.train)?,
        accuracy(&model, &p.val)?,
        accuracy(&model, &p.test)?,
    );
    kiln_data::save_grid(
        &[templates(&model, &p)?],
        GridOptions {
            scale: 4,
            ..Default::default()
        },
        &run.file("templates.png"),
    )?;
    kiln_train::save_module(&model, &run.checkpoints()?.join("linear.bpk"))?;
    log.append(
        &json!({"train_accuracy": tr, "val_accuracy": va, "test_accuracy": te, "seconds": secs}),
    )?;
    println!(
        "{:?} (lr {:e}, reg {:e}, {} iterations, {:?} gradients, {:.1} s): train {:.2} %  validation {:.2} %  test {:.2} %",
        p.config.loss,
        settings.learning_rate,
        settings.reg,
        settings.iterations,
        settings.grad,
        secs,
        100.0 * tr,
        100.0 * va,
        100.0 * te
    );
    println!(
        "run directory {} (loss.png, templates.png in class order: {}, checkpoints/linear.bpk)",
        run.path().display(),
        p.classes.join(", ")
    );
    Ok(())
}

fn search_command(args: LinearArgs) -> Result<()> {
    let p = prepare(&args)?;
    let run = cli::create_run(args.common.out.as_deref(), "kiln-linear-search", &p.config)?;
    let s = &p.config.search;
    let plan = SearchPlan {
        names: ["learning_rate", "reg"],
        ranges: [s.learning_rate, s.reg],
        budget_name: "iterations",
        coarse: (s.coarse_trials, s.coarse_iterations),
        fine: (s.fine_trials, s.fine_iterations),
        keep: 3,
        fine_width_decades: s.fine_width_decades,
    };
    let base = p.config.settings().clone();
    let ranked = coarse_to_fine_search(&plan, p.config.seed, &run, |[lr, reg], iterations, _| {
        let settings = SgdSettings {
            learning_rate: lr,
            reg,
            iterations,
            ..base.clone()
        };
        let progress = Progress::new(iterations as u64, "trial", "it");
        let model = fit(&p, &settings, &progress, |_, _| {}).map_err(cli::invalid)?;
        progress.finish();
        let model = model.ok_or_else(|| TrainError::Invalid("diverged".into()))?;
        Ok(TrialScore {
            val_accuracy: accuracy(&model, &p.val).map_err(cli::invalid)?,
            extra: vec![(
                "train_accuracy",
                accuracy(&model, &p.train).map_err(cli::invalid)?,
            )],
        })
    })?;
    let winner = ranked
        .first()
        .filter(|t| t.score.val_accuracy > 0.0)
        .context("every trial diverged; lower the learning-rate range in [search]")?;
    let settings = SgdSettings {
        learning_rate: winner.values[0],
        reg: winner.values[1],
        iterations: winner.budget,
        ..base
    };
    let progress = Progress::new(settings.iterations as u64, "best", "it");
    let model = fit(&p, &settings, &progress, |_, _| {})?
        .context("the best setting diverged when retrained")?;
    progress.finish();
    let (va, te) = (accuracy(&model, &p.val)?, accuracy(&model, &p.test)?);
    run.metrics().append(&json!({"best_learning_rate": settings.learning_rate, "best_reg": settings.reg, "val_accuracy": va, "test_accuracy": te}))?;
    println!(
        "\nbest retrained: lr {:e}, reg {:e}, {} iterations: validation {:.2} %, test {:.2} %",
        settings.learning_rate,
        settings.reg,
        settings.iterations,
        100.0 * va,
        100.0 * te
    );
    println!(
        "put these in the config's [{}] table to train with them",
        format!("{:?}", p.config.loss).to_lowercase()
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    kiln::alloc::tune_allocator();
    let cli = Cli::parse();
    cli::finish(match cli.command {
        Some(Command::Search(args)) => search_command(args),
        None => train_command(cli.args),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_known_configs_parse_and_differ_per_dataset() {
        let cifar = best_known("cifar10").unwrap();
        let fashion = best_known("fashion-mnist").unwrap();
        assert_ne!(cifar.softmax, fashion.softmax);
        assert_eq!(best_known("my-photos").unwrap().softmax, cifar.softmax);
    }
}
