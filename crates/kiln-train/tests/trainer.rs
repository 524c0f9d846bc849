//! The training loop end to end on a tiny model. Its scenarios run one after the other in this
//! separate test binary: trainings in parallel test threads of one process were seen to perturb
//! each other's numbers, which would break the exact-resume comparison.

use std::sync::Arc;

use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use kiln_data::augment::{Pipeline, TransformConfig};
use kiln_data::{AugmentedImages, ClassificationBatcher, ImageSet, Normalization};
use kiln_train::RunDir;
use kiln_train::optim::OptimizerConfig;
use kiln_train::trainer::{FitData, ImageClassifier, TrainSettings, fit};

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
        batcher: ClassificationBatcher::new(Normalization::Symmetric),
    }
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
    let (_, full) = fit(
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
        full[3].val_accuracy == 1.0 && full[3].train_loss < full[0].train_loss,
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
}

fn a_diverging_run_stops_with_its_checkpoint_named() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::create(&dir.path().join("nan"), "x = 1\n").unwrap();
    let mut s = settings(3);
    s.learning_rate = 1e38;
    let err = fit(model(&device), data(true), &s, 7, &run, &device, false).unwrap_err();
    assert!(err.to_string().contains("last good checkpoint"), "{err}");
}

#[test]
fn training_loop_scenarios() {
    learns_writes_the_run_and_resumes_exactly();
    a_diverging_run_stops_with_its_checkpoint_named();
}
