//! `kiln-linear`: linear SVM and softmax classifiers trained with minibatch SGD on hand-derived
//! gradients (or Burn's autodiff with `--grad autodiff`), and random search of their learning
//! rate and regularisation.
//!
//! * `kiln-linear --data DIR --loss svm|softmax [--out RUN]` trains with the config's settings
//!   and prints validation and test accuracy; writes the loss curve and the class templates.
//! * `kiln-linear search --data DIR --loss svm|softmax` runs a coarse then a fine random search.

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::{Parser, Subcommand};
use serde_json::json;

use kiln::cli::{self, CommonArgs};
use kiln::linear::{LinearConfig, LinearData, Matrix, best_known};
use kiln_classic::linear::{GradMode, LinearClassifier, LinearClassifierConfig, SgdSettings, loss};
use kiln_data::{GridOptions, Image};
use kiln_train::plot::{LinePlot, Series};
use kiln_train::search::{TrialScore, coarse_to_fine_search};
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
    config.validate()?;
    Ok(config)
}

/// A run's resolved config, its data on the device, and the device.
struct Prepared {
    config: LinearConfig,
    data: LinearData,
    device: Device,
}

fn prepare(args: &LinearArgs) -> Result<Prepared> {
    args.common.refuse_mixed("kiln-linear")?;
    let device = args.common.device()?;
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
    let data = LinearData::prepare(data, &test, &config, &device)?;
    Ok(Prepared {
        config,
        data,
        device,
    })
}

fn accuracy(model: &LinearClassifier, m: &Matrix) -> Result<f64> {
    let p = model.predict(m.x.clone())?;
    Ok(kiln_classic::knn::accuracy(&p, &m.labels))
}

fn new_model(p: &Prepared) -> LinearClassifier {
    p.device.seed(p.config.seed);
    let [c, h, w] = p.data.geometry;
    LinearClassifierConfig::new(w * h * c, p.data.classes.len())
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
        &p.data.train.x,
        &p.data.train.y,
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

/// The weights of each class as an image (the course's "templates").
fn templates(model: &LinearClassifier, p: &Prepared) -> Result<Vec<Image>> {
    let [c, h, w] = p.data.geometry;
    model
        .templates(p.data.geometry)?
        .into_iter()
        .map(|data| Ok(Image::new(w, h, c, data)?))
        .collect()
}

fn sanity_check(p: &Prepared) -> Result<()> {
    let model = new_model(p);
    let train = &p.data.train;
    let n = train.labels.len().min(500);
    let x = train.x.clone().narrow(0, 0, n);
    let y = train.y.clone().narrow(0, 0, n);
    let l = loss(p.config.loss, model.weight.val(), x, &y, 0.0).into_scalar::<f64>();
    let (expected, why) = p.config.loss.expected_initial_loss(p.data.classes.len());
    println!("sanity: initial loss {l:.4} with small weights, expected ≈ {expected:.4} ({why})");
    Ok(())
}

fn train_command(args: LinearArgs) -> Result<()> {
    let p = prepare(&args)?;
    let run = cli::create_run(args.common.out.as_deref(), "kiln-linear", &p.config)?;
    p.data.norm.save(&run.file("normalization.json"))?;
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
        accuracy(&model, &p.data.train)?,
        accuracy(&model, &p.data.val)?,
        accuracy(&model, &p.data.test)?,
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
        p.data.classes.join(", ")
    );
    Ok(())
}

fn search_command(args: LinearArgs) -> Result<()> {
    let p = prepare(&args)?;
    let run = cli::create_run(args.common.out.as_deref(), "kiln-linear-search", &p.config)?;
    let plan = p.config.search_plan();
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
            val_accuracy: accuracy(&model, &p.data.val).map_err(cli::invalid)?,
            extra: vec![(
                "train_accuracy",
                accuracy(&model, &p.data.train).map_err(cli::invalid)?,
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
    let (va, te) = (
        accuracy(&model, &p.data.val)?,
        accuracy(&model, &p.data.test)?,
    );
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
