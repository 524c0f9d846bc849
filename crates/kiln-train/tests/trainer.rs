//! The training loop end to end on a tiny model. Its scenarios run one after the other in this
//! separate test binary: trainings in parallel test threads of one process were seen to perturb
//! each other's numbers, which would break the exact-resume comparison.

use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, InMemDataset};
use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::loss::{MseLoss, Reduction};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{DType, Device, Tensor, TensorData};
use kiln_data::augment::{Pipeline, TransformConfig};
use kiln_data::{AugmentedImages, ClassificationBatcher, EpochCounter, ImageSet, Normalization};
use kiln_nets::{ConvNet, ConvNetConfig, ImageClassifier};
use kiln_train::classify::Classification;
use kiln_train::mixed::MixedPrecision;
use kiln_train::optim::OptimizerConfig;
use kiln_train::task::{Evaluation, StepOutput, Task};
use kiln_train::trainer::{FitData, TrainSettings, fit};
use kiln_train::{Result, RunDir};

#[derive(Module, Debug)]
struct Tiny {
    linear: Linear,
}

impl ImageClassifier for Tiny {
    fn scores(&self, images: Tensor<4>) -> Tensor<2> {
        self.linear.forward(images.flatten(1, 3))
    }
}

/// Class 0 is bright on the left, class 1 on the right; with `noise` the labels ignore the image.
fn images(n: usize, noise: bool) -> Arc<ImageSet> {
    let mut pixels = Vec::new();
    for i in 0..n {
        for _y in 0..4 {
            for x in 0..4 {
                let bright = (x < 2) == (i % 2 == 0);
                let v = if bright { 200 } else { 30 } + (i % 7) as u8;
                pixels.extend([v, v, v]);
            }
        }
    }
    let labels = (0..n)
        .map(|i| if noise { (i / 2) % 2 } else { i % 2 })
        .collect();
    Arc::new(ImageSet::new(4, 4, 3, pixels, labels, vec!["l".into(), "r".into()]).unwrap())
}

fn data(noise: bool) -> FitData<AugmentedImages, AugmentedImages> {
    let cutout = [TransformConfig::Cutout { size: 1, p: 0.5 }];
    let train = AugmentedImages::new(
        images(64, noise),
        Arc::new(Pipeline::from_config(&cutout, 1).unwrap()),
    );
    FitData {
        epoch: train.epoch_counter(),
        train,
        val: AugmentedImages::new(images(16, false), Arc::new(Pipeline::default())),
        batch_groups: None,
    }
}

fn classification() -> Classification<Tiny> {
    Classification::new(ClassificationBatcher::new(Normalization::Symmetric))
}

fn settings(epochs: usize) -> TrainSettings {
    TrainSettings {
        epochs,
        batch_size: 8,
        learning_rate: 0.05,
        workers: 0,
        optimizer: OptimizerConfig {
            momentum: 0.9,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Zero-initialised: runs must not depend on a global random stream.
fn model(device: &Device) -> Tiny {
    Tiny {
        linear: LinearConfig::new(48, 2)
            .with_initializer(Initializer::Constant { value: 0.0 })
            .init(&device.clone().autodiff()),
    }
}

fn learns_writes_the_run_and_resumes_exactly() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let straight = RunDir::create(&dir.path().join("a"), "x = 1\n").unwrap();
    let task = classification();
    let (_, full) = fit(
        &task,
        model(&device),
        data(false),
        &settings(4),
        7,
        &straight,
        &device,
        false,
    )
    .unwrap();
    assert!(
        full[3].metric("val_accuracy") == Some(1.0) && full[3].train_loss < full[0].train_loss,
        "{full:?}"
    );
    for file in [
        "loss.png",
        "accuracy.png",
        "checkpoints/last.bpk",
        "checkpoints/best.bpk",
        "checkpoints/state.json",
    ] {
        assert!(straight.file(file).is_file(), "{file}");
    }
    assert_eq!(
        kiln_train::read_metrics(&straight.file("metrics.jsonl"))
            .unwrap()
            .len(),
        4
    );

    // Two epochs, "killed", then resumed to four: the same numbers as the straight run.
    let split = RunDir::create(&dir.path().join("b"), "x = 1\n").unwrap();
    fit(
        &task,
        model(&device),
        data(false),
        &settings(2),
        7,
        &split,
        &device,
        false,
    )
    .unwrap();
    let (_, resumed) = fit(
        &task,
        model(&device),
        data(false),
        &settings(4),
        7,
        &split,
        &device,
        true,
    )
    .unwrap();
    assert_eq!(resumed.len(), 4);
    for (a, b) in full.iter().zip(&resumed) {
        assert!((a.val_loss - b.val_loss).abs() < 1e-5, "{a:?} vs {b:?}");
        assert!((a.train_loss - b.train_loss).abs() < 1e-5, "{a:?} vs {b:?}");
    }

    // The state names the float type; a run recorded as half precision does not resume on
    // this f32 device, and the error says how to resume it.
    let state_path = split.file("checkpoints/state.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    assert_eq!(state["float_dtype"], "F32");
    state["float_dtype"] = "F16".into();
    std::fs::write(&state_path, state.to_string()).unwrap();
    let err = fit(
        &task,
        model(&device),
        data(false),
        &settings(5),
        7,
        &split,
        &device,
        true,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("state.json")
            && err.contains("trained in f16")
            && err.contains("--precision f16"),
        "{err}"
    );
}

fn a_diverging_run_stops_with_its_checkpoint_named() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::create(&dir.path().join("nan"), "x = 1\n").unwrap();
    let mut s = settings(3);
    s.learning_rate = 1e38;
    let err = fit(
        &classification(),
        model(&device),
        data(true),
        &s,
        7,
        &run,
        &device,
        false,
    )
    .unwrap_err();
    assert!(err.to_string().contains("last good checkpoint"), "{err}");
}

/// A task that is not classification: regress `y = 2·x₀ − x₁ + 0.5` from two inputs. It records
/// the first input of every training item, batch by batch.
#[derive(Clone, Default)]
struct Regression(Arc<std::sync::Mutex<Vec<Vec<f32>>>>);

#[derive(Clone, Debug)]
struct Point {
    x: [f32; 2],
    y: f32,
}

#[derive(Clone, Debug)]
struct Points {
    x: Tensor<2>,
    y: Tensor<2>,
}

#[derive(Clone)]
struct PointBatcher;

impl Batcher<Point, Points> for PointBatcher {
    fn batch(&self, items: Vec<Point>, device: &Device) -> Points {
        let n = items.len();
        let x: Vec<f32> = items.iter().flat_map(|p| p.x).collect();
        let y: Vec<f32> = items.iter().map(|p| p.y).collect();
        Points {
            x: Tensor::from_data(TensorData::new(x, [n, 2]), device),
            y: Tensor::from_data(TensorData::new(y, [n, 1]), device),
        }
    }
}

#[derive(Module, Debug)]
struct Line {
    linear: Linear,
}

impl Task for Regression {
    type Model = Line;
    type Item = Point;
    type Batch = Points;
    type Batcher = PointBatcher;
    const SCORE: &'static str = "close";
    const LOSS_NAME: &'static str = "squared error";

    fn batcher(&self) -> PointBatcher {
        PointBatcher
    }

    fn train_step(&self, model: &Line, batch: Points) -> Result<StepOutput> {
        let first = batch.x.clone().slice_dim(1, 0..1).into_data();
        self.0.lock().unwrap().push(first.try_to_vec().unwrap());
        let items = batch.y.dims()[0];
        let loss = MseLoss::new().forward(model.linear.forward(batch.x), batch.y, Reduction::Mean);
        Ok(StepOutput {
            loss,
            items,
            sums: vec![],
        })
    }

    fn evaluate(
        &self,
        model: &Line,
        batches: &mut dyn Iterator<Item = Result<Points>>,
    ) -> Result<Evaluation> {
        let (mut loss, mut close, mut n) = (0.0, 0.0, 0usize);
        for batch in batches {
            let batch = batch?;
            let count = batch.y.dims()[0];
            let error = (model.linear.forward(batch.x) - batch.y).abs();
            loss += error.clone().powf_scalar(2.0).sum().into_scalar::<f64>();
            close += error.lower_elem(0.05).int().sum().into_scalar::<f64>();
            n += count;
        }
        Ok(Evaluation {
            loss: loss / n as f64,
            metrics: vec![("close", close / n as f64)],
        })
    }
}

fn points(n: usize, offset: usize) -> Arc<InMemDataset<Point>> {
    Arc::new(InMemDataset::new(
        (0..n)
            .map(|i| {
                let t = (i + offset) as f32;
                let x = [(t * 0.37).sin(), (t * 0.91).cos()];
                Point {
                    x,
                    y: 2.0 * x[0] - x[1] + 0.5,
                }
            })
            .collect(),
    ))
}

fn any_task_trains_through_the_same_loop() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::create(&dir.path().join("regression"), "x = 1\n").unwrap();
    let line = Line {
        linear: LinearConfig::new(2, 1)
            .with_initializer(Initializer::Constant { value: 0.0 })
            .init(&device.clone().autodiff()),
    };
    let data = FitData {
        train: points(96, 0),
        epoch: EpochCounter::default(),
        val: points(32, 1000),
        batch_groups: None,
    };
    let settings = TrainSettings {
        epochs: 30,
        batch_size: 16,
        learning_rate: 0.1,
        workers: 0,
        optimizer: OptimizerConfig {
            momentum: 0.9,
            ..Default::default()
        },
        ..Default::default()
    };
    let (trained, history) = fit(
        &Regression::default(),
        line,
        data,
        &settings,
        1,
        &run,
        &device,
        false,
    )
    .unwrap();
    let last = history.last().unwrap();
    assert_eq!(last.metric("val_close"), Some(1.0), "{last:?}");
    assert!(last.val_loss < 1e-3 && !last.metrics.contains_key("train_close"));
    let w: Vec<f32> = trained
        .linear
        .weight
        .val()
        .into_data()
        .try_to_vec()
        .unwrap();
    assert!(
        (w[0] - 2.0).abs() < 0.05 && (w[1] + 1.0).abs() < 0.05,
        "{w:?}"
    );
    // The task's metric gets its own plot; the best checkpoint follows it.
    for file in ["loss.png", "close.png", "checkpoints/best.bpk"] {
        assert!(run.file(file).is_file(), "{file}");
    }
}

/// 8×8 images of four classes: the class is the brighter quadrant, under a fixed texture.
fn quadrants(n: usize, seed: u32) -> Arc<ImageSet> {
    let mut state = seed;
    let mut pixels = Vec::with_capacity(n * 8 * 8 * 3);
    for i in 0..n {
        for y in 0..8 {
            for x in 0..8 {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let quadrant = (y / 4) * 2 + x / 4;
                let base = if quadrant == i % 4 { 170 } else { 60 };
                let v = base + (state >> 26) as u8;
                pixels.extend([v, v, v]);
            }
        }
    }
    let labels = (0..n).map(|i| i % 4).collect();
    let names = ["a", "b", "c", "d"].map(String::from).to_vec();
    Arc::new(ImageSet::new(8, 8, 3, pixels, labels, names).unwrap())
}

/// The history and final weights' float types of `epochs` epochs of the benchmark ConvNet
/// (kiln's convolution, batch-norm and linear layers) on the quadrants, in `mixed` precision;
/// with `resume`, continuing `run`.
fn train_quadrants(
    device: &Device,
    run: &RunDir,
    mixed: Option<MixedPrecision>,
    epochs: usize,
    resume: bool,
) -> (Vec<kiln_train::trainer::EpochRecord>, Vec<DType>) {
    let task = Classification::<ConvNet>::new(ClassificationBatcher::new(Normalization::Symmetric));
    let net = ConvNetConfig::benchmark(3, 4, [8, 8]).init(&device.clone().autodiff());
    let data = FitData {
        train: AugmentedImages::new(quadrants(128, 1), Arc::new(Pipeline::default())),
        epoch: EpochCounter::default(),
        val: AugmentedImages::new(quadrants(32, 2), Arc::new(Pipeline::default())),
        batch_groups: None,
    };
    let settings = TrainSettings {
        epochs,
        batch_size: 16,
        learning_rate: 0.02,
        workers: 0,
        optimizer: OptimizerConfig {
            momentum: 0.9,
            ..Default::default()
        },
        monitor_every: 0,
        mixed_precision: mixed,
        ..Default::default()
    };
    device.seed(3);
    let (trained, history) = fit(&task, net, data, &settings, 5, run, device, resume).unwrap();
    let mut types = FloatTypes(Vec::new());
    trained.visit(&mut types);
    types.0.sort_by_key(|t| format!("{t:?}"));
    types.0.dedup();
    (history, types.0)
}

/// The float types of a module's parameters and buffers.
struct FloatTypes(Vec<DType>);

impl ModuleVisitor for FloatTypes {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.val().dtype());
    }
}

fn mixed_precision_trains_like_f32() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let full_run = RunDir::create(&dir.path().join("f32"), "x = 1\n").unwrap();
    let (full, full_types) = train_quadrants(&device, &full_run, None, 3, false);
    let mixed_run = RunDir::create(&dir.path().join("f16-mixed"), "x = 1\n").unwrap();
    let (mixed, mixed_types) =
        train_quadrants(&device, &mixed_run, Some(MixedPrecision::F16), 3, false);
    assert_eq!(full_types, vec![DType::F32]);
    assert_eq!(
        mixed_types,
        vec![DType::F32],
        "weights and batch-norm statistics stay f32"
    );
    let (f, m) = (full.last().unwrap(), mixed.last().unwrap());
    assert!(
        f.metric("val_accuracy") >= Some(0.9) && m.metric("val_accuracy") >= Some(0.9),
        "f32 {f:?}\nmixed {m:?}"
    );
    let mut skipped = 0;
    for (f, m) in full.iter().zip(&mixed) {
        assert!(
            (f.train_loss - m.train_loss).abs() <= 0.05 + 0.1 * f.train_loss,
            "epoch {}: f32 loss {} against mixed {}",
            f.epoch,
            f.train_loss,
            m.train_loss
        );
        assert_eq!(f.loss_scale, None);
        skipped += m.skipped_steps;
        assert_eq!(
            m.loss_scale,
            Some(65_536.0 / 2f64.powi(skipped as i32)),
            "the scale halves once per skipped step (no growth within 2,000 steps)"
        );
    }
    assert!(
        full.iter()
            .zip(&mixed)
            .all(|(f, m)| f.train_loss != m.train_loss),
        "the mixed run computed in half, so its losses differ in their last digits"
    );
    let state = std::fs::read_to_string(mixed_run.file("checkpoints/state.json")).unwrap();
    assert!(state.contains("\"loss_scaler\""), "{state}");

    // A resumed run continues with the scaler its state holds: two epochs, the state's scale
    // changed, one more epoch at that scale (no overflow and no growth happen in between).
    let split_run = RunDir::create(&dir.path().join("split"), "x = 1\n").unwrap();
    let (first, _) = train_quadrants(&device, &split_run, Some(MixedPrecision::F16), 2, false);
    assert_eq!(first.len(), 2);
    let state_path = split_run.file("checkpoints/state.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    assert_eq!(state["loss_scaler"]["scale"], 65_536.0);
    state["loss_scaler"]["scale"] = 1024.0.into();
    std::fs::write(&state_path, state.to_string()).unwrap();
    let (resumed, _) = train_quadrants(&device, &split_run, Some(MixedPrecision::F16), 3, true);
    assert_eq!(resumed.len(), 3);
    assert_eq!(resumed[2].loss_scale, Some(1024.0), "{:?}", resumed[2]);

    // A task that cannot run in an autocast scope is refused, naming the setting.
    let line = Line {
        linear: LinearConfig::new(2, 1).init(&device.clone().autodiff()),
    };
    let data = FitData {
        train: points(16, 0),
        epoch: EpochCounter::default(),
        val: points(8, 1000),
        batch_groups: None,
    };
    let settings = TrainSettings {
        mixed_precision: Some(MixedPrecision::Bf16),
        workers: 0,
        ..Default::default()
    };
    let run = RunDir::create(&dir.path().join("refused"), "x = 1\n").unwrap();
    let err = fit(
        &Regression::default(),
        line,
        data,
        &settings,
        1,
        &run,
        &device,
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("mixed_precision") && err.contains("--precision f16"),
        "{err}"
    );
}

/// With batch groups (here: the sign of the first input), each epoch's batches come from one
/// group until only leftovers are left, every item is seen once an epoch, and the order changes
/// between epochs; groups of the wrong count are refused.
fn batches_are_drawn_one_group_at_a_time() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let train = points(42, 0);
    let groups: Vec<usize> = (0..train.len())
        .map(|i| usize::from(train.get(i).unwrap().x[0] > 0.0))
        .collect();
    let line = || Line {
        linear: LinearConfig::new(2, 1).init(&device.clone().autodiff()),
    };
    let data = |groups: Vec<usize>| FitData {
        train: train.clone(),
        epoch: EpochCounter::default(),
        val: points(8, 1000),
        batch_groups: Some(groups),
    };
    let settings = TrainSettings {
        epochs: 2,
        batch_size: 4,
        workers: 0,
        ..Default::default()
    };
    let task = Regression::default();
    let run = RunDir::create(&dir.path().join("grouped"), "x = 1\n").unwrap();
    fit(
        &task,
        line(),
        data(groups.clone()),
        &settings,
        3,
        &run,
        &device,
        false,
    )
    .unwrap();
    let batches = task.0.lock().unwrap().clone();
    let per_epoch = train.len().div_ceil(4);
    assert_eq!(batches.len(), 2 * per_epoch);
    let positive = groups.iter().sum::<usize>();
    let single_group = positive / 4 + (groups.len() - positive) / 4;
    let mut epochs = Vec::new();
    for epoch in batches.chunks(per_epoch) {
        for batch in &epoch[..single_group] {
            assert!(
                batch.iter().all(|&x| (x > 0.0) == (batch[0] > 0.0)),
                "a batch mixes groups: {batch:?}"
            );
        }
        let mut seen: Vec<f32> = epoch.concat();
        assert_eq!(seen.len(), train.len());
        seen.sort_by(f32::total_cmp);
        seen.dedup();
        assert_eq!(seen.len(), train.len(), "an item is missing or repeated");
        epochs.push(epoch.concat());
    }
    assert_ne!(
        epochs[0], epochs[1],
        "the order does not change between epochs"
    );

    let run = RunDir::create(&dir.path().join("wrong"), "x = 1\n").unwrap();
    let err = fit(
        &Regression::default(),
        line(),
        data(vec![0; 5]),
        &settings,
        3,
        &run,
        &device,
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("5 batch groups for 42 training items"),
        "{err}"
    );
}

#[test]
fn training_loop_scenarios() {
    learns_writes_the_run_and_resumes_exactly();
    a_diverging_run_stops_with_its_checkpoint_named();
    any_task_trains_through_the_same_loop();
    mixed_precision_trains_like_f32();
    batches_are_drawn_one_group_at_a_time();
}
