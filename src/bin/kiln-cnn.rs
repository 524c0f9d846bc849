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
use burn::data::dataloader::DataLoaderBuilder;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;

use kiln::cli::{self, CommonArgs, TrainArgs};
use kiln::cnn::{CnnModel, CnnRunConfig, Geometry, ModelTask, PreparedData};
use kiln_data::{ImageSet, Normalization};
use kiln_nets::design::{DesignRule, compare};
use kiln_nets::{AirbenchConfig, ConvNetConfig, trainable_params};
use kiln_train::optim::{OptimizerConfig, OptimizerName};
use kiln_train::plot::{LinePlot, Series};
use kiln_train::search::lr_weight_decay_search;
use kiln_train::trainer::{EpochRecord, FitData, Tta, evaluate_with, fit, tta_scores};
use kiln_train::{Progress, RunDir, load_module};

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
    #[arg(long, value_enum, default_value_t = Which::Best)]
    checkpoint: Which,
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

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Which {
    Best,
    Last,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum BenchNet {
    /// conv-BN-ReLU-pool × 3 (64/128/256) + linear: the convolution issue's net.
    Benchmark,
    /// The airbench94 network (64/256/256).
    Airbench,
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// Images per step.
    #[arg(long, default_value_t = 128)]
    batch: usize,
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

fn load(args: &CommonArgs, config: &mut CnnRunConfig) -> Result<(PreparedData, ImageSet)> {
    let (path, data) = cli::open_data(args.data.as_deref(), config.data.as_deref(), None)?;
    config.data = Some(path.clone());
    let test = cli::require_test(&data, &path)?;
    Ok((PreparedData::new(data, config)?, test))
}

/// What one training run produced.
struct Trained {
    history: Vec<EpochRecord>,
    test_accuracy: f64,
    tta_accuracy: Option<f64>,
    params: usize,
    macs: u64,
}

struct TrainTask<'a> {
    config: &'a CnnRunConfig,
    data: &'a PreparedData,
    test: Option<&'a ImageSet>,
    run: &'a RunDir,
    device: &'a Device,
    resume: bool,
}

impl ModelTask for TrainTask<'_> {
    type Output = Trained;

    fn run<M: CnnModel>(self, model: M) -> Result<Trained> {
        let c = self.config;
        let t = &self.data.splits.train;
        let params = trainable_params(&model);
        let macs = model.macs([t.height, t.width]);
        eprintln!(
            "model: {:.3} M trainable parameters, {:.1} M multiply-adds per image",
            params as f64 / 1e6,
            macs as f64 / 1e6
        );
        let val = self
            .data
            .splits
            .val
            .as_ref()
            .context("no validation split")?;
        let train = self.data.train_set(&c.augment, c.seed)?;
        let fit_data = FitData {
            epoch: train.epoch_counter(),
            train,
            val: PreparedData::plain(val),
            batcher: self.data.batcher(),
        };
        let (model, history) = fit(
            model,
            fit_data,
            &c.train,
            c.seed,
            self.run,
            self.device,
            self.resume,
        )?;
        let paused = history.last().is_some_and(|r| r.epoch < c.train.epochs);
        let Some(test) = self.test.filter(|_| !paused) else {
            return Ok(Trained {
                test_accuracy: f64::NAN,
                tta_accuracy: None,
                history,
                params,
                macs,
            });
        };
        let test_set = PreparedData::plain(test);
        let batcher = self.data.batcher();
        let eval = |tta| evaluate_with(&model, &test_set, &batcher, 500, self.device, tta);
        let (test_loss, test_accuracy) = eval(Tta::None)?;
        let tta_accuracy = match c.train.tta {
            Tta::None => None,
            tta => Some(eval(tta)?.1),
        };
        self.run.metrics().append(&json!({
            "test_loss": test_loss,
            "test_accuracy": test_accuracy,
            "test_accuracy_tta": tta_accuracy,
        }))?;
        Ok(Trained {
            history,
            test_accuracy,
            tta_accuracy,
            params,
            macs,
        })
    }
}

/// Trains `config` on `data` into `run`.
fn train_in(
    config: &CnnRunConfig,
    data: &PreparedData,
    test: Option<&ImageSet>,
    run: &RunDir,
    device: &Device,
    resume: bool,
) -> Result<Trained> {
    data.normalization.save(&run.file("normalization.json"))?;
    let train_device = device.clone().autodiff();
    train_device.seed(config.seed);
    let whitening = data.init_images(config.model.init_images(), config.seed)?;
    let task = TrainTask {
        config,
        data,
        test,
        run,
        device,
        resume,
    };
    config.model.build(
        Geometry::of(&data.splits.train),
        whitening.as_ref().map(|(v, s)| (v.as_slice(), *s)),
        &train_device,
        task,
    )
}

fn train(args: TrainArgs) -> Result<()> {
    let device = kiln::backend::device(args.common.device.as_deref())?;
    let (mut config, run): (CnnRunConfig, _) = cli::resolve_training(&args)?;
    let (data, test) = load(&args.common, &mut config)?;
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
    let trained = train_in(
        &config,
        &data,
        Some(&test),
        &run,
        &device,
        args.resume.is_some(),
    )?;
    let last = trained.history.last().context("no epoch ran")?;
    if last.epoch < config.train.epochs {
        println!(
            "paused after epoch {} of {}; continue with --resume {}",
            last.epoch,
            config.train.epochs,
            run.path().display()
        );
        return Ok(());
    }
    let best = trained
        .history
        .iter()
        .map(|r| r.val_accuracy)
        .fold(0.0, f64::max);
    let tta = trained
        .tta_accuracy
        .map(|a| format!(", with {:?} TTA {:.2} %", config.train.tta, 100.0 * a))
        .unwrap_or_default();
    let validation = if data.val_is_test {
        "no held-out validation (val_images = 0)".to_string()
    } else {
        format!(
            "validation {:.2} % (best {:.2} %)",
            100.0 * last.val_accuracy,
            100.0 * best
        )
    };
    println!(
        "CNN ({:.2} M parameters, {:.0} M multiply-adds): {} epochs in {:.0} s, {validation}, test {:.2} %{tta}, {:.0} training images/s",
        trained.params as f64 / 1e6,
        trained.macs as f64 / 1e6,
        last.epoch,
        started.elapsed().as_secs_f64(),
        100.0 * trained.test_accuracy,
        last.images_per_sec
    );
    println!(
        "run directory {} (loss.png, accuracy.png, update_ratios.png, filters.png, checkpoints/)",
        run.path().display()
    );
    Ok(())
}

/// Sanity checks on a fresh network: its initial loss and whether it can overfit a subset.
struct SanityTask<'a> {
    data: &'a PreparedData,
    subset: ImageSet,
    steps: usize,
    run: &'a RunDir,
    device: Device,
}

impl ModelTask for SanityTask<'_> {
    type Output = (f64, f64, Option<usize>);

    fn run<M: CnnModel>(self, model: M) -> Result<Self::Output> {
        let batcher = self.data.batcher();
        let batch_of = |set: &ImageSet| {
            let items = PreparedData::plain(set);
            let loader = DataLoaderBuilder::new(batcher.clone())
                .batch_size(set.len())
                .set_device(self.device.clone())
                .build(items);
            loader
                .iter()
                .next()
                .context("empty subset")?
                .map_err(|e| anyhow::anyhow!("reading a batch: {e}"))
        };
        let loss_fn = CrossEntropyLossConfig::new().init(&self.device);
        // Initial loss on up to 500 training images, in training mode (batch statistics).
        let first = self.data.splits.train.len().min(500);
        let probe = self
            .data
            .splits
            .train
            .subset(&(0..first).collect::<Vec<_>>());
        let b = batch_of(&probe)?;
        let initial: f64 = loss_fn
            .forward(model.scores(b.images), b.targets)
            .into_scalar();
        let classes = self.data.splits.train.classes.len() as f64;
        // Overfit: full-batch Adam, no regularisation.
        let b = batch_of(&self.subset)?;
        let mut optim = OptimizerConfig {
            name: OptimizerName::Adam,
            ..Default::default()
        }
        .build()?;
        let mut model = model;
        let mut curve = Vec::new();
        let mut reached = None;
        for step in 1..=self.steps {
            let scores = model.scores(b.images.clone());
            let hits: i64 = scores
                .clone()
                .argmax(1)
                .squeeze_dim::<1>(1)
                .equal(b.targets.clone())
                .int()
                .sum()
                .into_scalar();
            let loss = loss_fn.forward(scores, b.targets.clone());
            let value: f64 = loss.clone().into_scalar();
            let accuracy = hits as f64 / self.subset.len() as f64;
            curve.push((step as f64, accuracy));
            self.run.metrics().append(
                &json!({"overfit_step": step, "loss": value, "train_accuracy": accuracy}),
            )?;
            if accuracy == 1.0 {
                reached = Some(step);
                break;
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-3, model, grads);
        }
        LinePlot {
            title: format!("overfitting {} images", self.subset.len()),
            x_label: "step".into(),
            y_label: "training accuracy".into(),
            series: vec![Series::new("train", curve)],
        }
        .save_png(&self.run.file("overfit.png"))?;
        Ok((initial, classes.ln(), reached))
    }
}

fn sanity(args: SanityArgs) -> Result<()> {
    let device = kiln::backend::device(args.common.device.as_deref())?;
    let mut config: CnnRunConfig = cli::load_config(args.common.config.as_deref())?;
    if let Some(seed) = args.common.seed {
        config.seed = seed;
    }
    let (data, _) = load(&args.common, &mut config)?;
    let t = &data.splits.train;
    let per_class = args.images.div_ceil(t.classes.len()).max(1);
    let indices = kiln_data::split::per_class_subset(&t.labels, per_class, config.seed)?;
    let subset = t.subset(&indices[..indices.len().min(args.images)]);
    let run = cli::create_run(args.common.out.as_deref(), "kiln-cnn-sanity", &config)?;
    let train_device = device.autodiff();
    train_device.seed(config.seed);
    let whitening = data.init_images(config.model.init_images(), config.seed)?;
    let task = SanityTask {
        data: &data,
        subset,
        steps: args.steps,
        run: &run,
        device: train_device.clone(),
    };
    let (initial, expected, reached) = config.model.build(
        Geometry::of(t),
        whitening.as_ref().map(|(v, s)| (v.as_slice(), *s)),
        &train_device,
        task,
    )?;
    let close = (initial - expected).abs() <= 0.25 * expected;
    println!(
        "initial loss {initial:.3} vs ln(C) = {expected:.3}: {}",
        if close {
            "PASS"
        } else {
            "FAIL (scores are not near-uniform at initialisation: check the init scale)"
        }
    );
    match reached {
        Some(step) => println!(
            "overfit {} images: PASS (100 % training accuracy after {step} steps)",
            args.images
        ),
        None => println!(
            "overfit {} images: FAIL (not 100 % after {} steps)",
            args.images, args.steps
        ),
    }
    println!("run directory {} (overfit.png)", run.path().display());
    if !close || reached.is_none() {
        bail!("sanity checks failed");
    }
    Ok(())
}

fn search(args: TrainArgs) -> Result<()> {
    let device = kiln::backend::device(args.common.device.as_deref())?;
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
    let (mut data, _) = load(&args.common, &mut config)?;
    let spec = config.search.clone();
    data.splits.train = kiln::cnn::subset_for_search(&data.splits.train, &spec, config.seed)?;
    let run = cli::create_run(args.common.out.as_deref(), "kiln-cnn-search", &config)?;
    lr_weight_decay_search(&spec, config.seed, &run, |lr, wd, epochs, dir| {
        let mut trial = config.clone();
        trial.train.learning_rate = lr;
        trial.train.optimizer.weight_decay = wd;
        trial.train.epochs = epochs;
        let trial_run = RunDir::create(dir, &cli::to_toml(&trial).map_err(invalid)?)?;
        let trained = train_in(&trial, &data, None, &trial_run, &device, false).map_err(invalid)?;
        Ok(trained.history.last().map_or(0.0, |r| r.val_accuracy))
    })?;
    Ok(())
}

fn invalid(e: anyhow::Error) -> kiln_train::TrainError {
    kiln_train::TrainError::Invalid(format!("{e:#}"))
}

/// Class probabilities of a trained run's network on the test set.
struct ProbabilitiesTask<'a> {
    checkpoint: PathBuf,
    test: &'a ImageSet,
    normalization: Normalization,
    tta: Tta,
    device: Device,
}

impl ModelTask for ProbabilitiesTask<'_> {
    type Output = Vec<f32>;

    fn run<M: CnnModel>(self, model: M) -> Result<Vec<f32>> {
        let model = load_module(model, &self.checkpoint)?.valid();
        let batcher = kiln_data::ClassificationBatcher::new(self.normalization);
        let loader = DataLoaderBuilder::new(batcher)
            .batch_size(500)
            .set_device(self.device.clone())
            .build(PreparedData::plain(self.test));
        let mut out = Vec::with_capacity(self.test.len() * self.test.classes.len());
        for b in loader.iter() {
            let b = b.map_err(|e| anyhow::anyhow!("reading a batch: {e}"))?;
            let p = softmax(tta_scores(&model, b.images, self.tta), 1);
            out.extend(
                p.into_data()
                    .try_to_vec_as::<f32>()
                    .map_err(|e| anyhow::anyhow!("reading probabilities: {e:?}"))?,
            );
        }
        Ok(out)
    }
}

fn accuracy(probabilities: &[f32], labels: &[usize], classes: usize) -> f64 {
    let hits = probabilities
        .chunks_exact(classes)
        .zip(labels)
        .filter(|(p, l)| {
            let best = p
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i);
            best == **l
        })
        .count();
    hits as f64 / labels.len().max(1) as f64
}

fn ensemble(args: EnsembleArgs) -> Result<()> {
    let device = kiln::backend::device(args.device.as_deref())?;
    let mut configs = Vec::new();
    for dir in &args.runs {
        let run = RunDir::open(dir)?;
        let config: CnnRunConfig = cli::load_config(Some(&run.file("config.toml")))?;
        configs.push((run, config));
    }
    let first_data = configs[0].1.data.clone();
    let (path, data) = cli::open_data(args.data.as_deref(), first_data.as_deref(), None)?;
    let test = cli::require_test(&data, &path)?;
    let geometry = Geometry::of(&data.train);
    let classes = geometry.classes;
    let name = match args.checkpoint {
        Which::Best => "best.bpk",
        Which::Last => "last.bpk",
    };
    let mut sum = vec![0f32; test.len() * classes];
    let mut members = Vec::new();
    for (run, config) in &configs {
        let checkpoint = run.path().join("checkpoints").join(name);
        if !checkpoint.exists() {
            bail!(
                "{} does not exist; train the run first or pick --checkpoint last",
                checkpoint.display()
            );
        }
        let normalization = Normalization::load(&run.file("normalization.json"))?;
        let task = ProbabilitiesTask {
            checkpoint,
            test: &test,
            normalization,
            tta: config.train.tta,
            device: device.clone(),
        };
        // Whitening filters come from the checkpoint, so none are fitted here.
        let probabilities = config.model.build(geometry, None, &device, task)?;
        let acc = accuracy(&probabilities, &test.labels, classes);
        println!("{}: test {:.2} %", run.path().display(), 100.0 * acc);
        for (s, p) in sum.iter_mut().zip(&probabilities) {
            *s += p;
        }
        members.push(json!({"run": run.path(), "test_accuracy": acc}));
    }
    let combined = accuracy(&sum, &test.labels, classes);
    println!(
        "ensemble of {} ({} checkpoints, averaged probabilities): test {:.2} %",
        configs.len(),
        name,
        100.0 * combined
    );
    let out = cli::create_run(
        args.out.as_deref(),
        "kiln-cnn-ensemble",
        &json!({"runs": args.runs, "checkpoint": name}),
    )?;
    out.metrics()
        .append(&json!({"members": members, "ensemble_test_accuracy": combined}))?;
    println!("run directory {}", out.path().display());
    Ok(())
}

/// Trains a network on random data and reports images per second.
struct BenchTask {
    args: BenchArgs,
    device: Device,
}

impl ModelTask for BenchTask {
    type Output = f64;

    fn run<M: CnnModel>(self, model: M) -> Result<f64> {
        let a = &self.args;
        let d = &self.device;
        let images = Tensor::<4>::random([a.batch, 3, 32, 32], Distribution::Normal(0.0, 1.0), d);
        let labels: Vec<i64> = (0..a.batch as i64).map(|i| i % 10).collect();
        let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [a.batch]), d);
        let mut optim = OptimizerConfig {
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
            ..Default::default()
        }
        .build()?;
        let loss_fn = CrossEntropyLossConfig::new().init(d);
        let mut model = model;
        let progress = Progress::new((a.warmup + a.steps) as u64, "bench", "step");
        let mut started = Instant::now();
        for step in 0..a.warmup + a.steps {
            if step == a.warmup {
                started = Instant::now();
            }
            let loss = loss_fn.forward(model.scores(images.clone()), targets.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(0.01, model, grads);
            // Reading the loss waits for the step to finish on asynchronous backends.
            let _: f32 = loss.into_scalar();
            progress.inc(1);
        }
        let secs = started.elapsed().as_secs_f64();
        progress.finish();
        Ok((a.steps * a.batch) as f64 / secs)
    }
}

fn bench(args: BenchArgs) -> Result<()> {
    if args.batch == 0 || args.steps == 0 {
        bail!("--batch and --steps must be positive");
    }
    let name = args.device.clone().unwrap_or_else(|| "auto".into());
    let device = kiln::backend::device(args.device.as_deref())?.autodiff();
    device.seed(0);
    let net = args.net;
    let batch = args.batch;
    let task = BenchTask {
        args,
        device: device.clone(),
    };
    let per_sec = match net {
        BenchNet::Benchmark => task.run(ConvNetConfig::benchmark(3, 10, [32, 32]).init(&device)),
        BenchNet::Airbench => task.run(AirbenchConfig::new().init(&device)),
    }?;
    println!(
        "{net:?} net, batch {batch}, device {name} ({:?}): {per_sec:.0} training images/s",
        kiln::backend::compiled_backends()
    );
    Ok(())
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
        let rule = match r.rule {
            DesignRule::Single => "one N×N conv".to_string(),
            DesignRule::Stacked3x3 => "stacked 3×3 convs".to_string(),
            DesignRule::Bottleneck { reduction } => format!("1×1 bottleneck (C/{reduction})"),
            DesignRule::Factored => "1×N + N×1".to_string(),
        };
        println!(
            "{k}×{k}    {rule:<26} {:>6} {:>10} {:>15}",
            r.layers,
            r.params,
            r.macs,
            k = r.kernel
        );
    }
    if let Some(path) = &args.config {
        let config: CnnRunConfig = cli::load_config(Some(path))?;
        let geometry = Geometry {
            channels: args.input[0],
            height: args.size,
            width: args.size,
            classes: args.input[1],
        };
        struct Summary(usize);
        impl ModelTask for Summary {
            type Output = (usize, u64);
            fn run<M: CnnModel>(self, model: M) -> Result<(usize, u64)> {
                Ok((trainable_params(&model), model.macs([self.0, self.0])))
            }
        }
        let (p, m) = config
            .model
            .build(geometry, None, &device, Summary(args.size))?;
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
