//! Readers on the real data sets: the project's shared CIFAR-10 JPEGs (when `KILN_SHARED` is
//! set, as `.ci/run` does) and Debian's Fashion-MNIST (when installed). Each test says plainly
//! when it was skipped.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use kiln_data::{ImageFolderOptions, NormalizationKind, Splits, open_dataset};

#[test]
fn shared_cifar10_jpegs_load_fast_and_complete() {
    let Some(shared) = common::shared_dir("the shared CIFAR-10 was not read") else {
        return;
    };
    let archive = shared.join("datasets/cifar10-jpg.tar.gz");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cifar10-jpg");
    kiln_data::download::extract_archive(&archive, &dir).unwrap();
    let started = Instant::now();
    let data = open_dataset(&dir, &ImageFolderOptions::default()).unwrap();
    let secs = started.elapsed().as_secs_f64();
    eprintln!("decoded 60,000 CIFAR-10 JPEGs in {secs:.1} s");
    assert!(secs < 30.0, "loading took {secs:.1} s");
    assert_eq!(data.train.len(), 50_000);
    assert_eq!(data.train.classes[0], "airplane");
    assert_eq!(data.train.classes[9], "truck");
    assert!(data.train.class_counts().iter().all(|&c| c == 5_000));
    let test = data.test.clone().unwrap();
    assert!(test.class_counts().iter().all(|&c| c == 1_000));

    // The course split: 49,000 / 1,000 from train, stratified; statistics from train only.
    let splits = Splits::new(data, 1_000, 0).unwrap();
    assert_eq!(splits.train.len(), 49_000);
    assert!(
        splits
            .val
            .as_ref()
            .unwrap()
            .class_counts()
            .iter()
            .all(|&c| c == 100)
    );
    let norm = splits
        .fit_normalization(NormalizationKind::PerChannel)
        .unwrap();
    let kiln_data::Normalization::PerChannel { mean, std } = norm else {
        panic!()
    };
    // CIFAR-10's well-known channel statistics, within the JPEG re-encoding's shift.
    for (m, expected) in mean.iter().zip([0.4914, 0.4822, 0.4465]) {
        assert!((m - expected).abs() < 0.01, "{mean:?}");
    }
    for (s, expected) in std.iter().zip([0.2470, 0.2435, 0.2616]) {
        assert!((s - expected).abs() < 0.01, "{std:?}");
    }
}

#[test]
fn debian_fashion_mnist_loads() {
    let dir = PathBuf::from(kiln_data::idx::DEBIAN_FASHION_MNIST);
    if !dir.is_dir() {
        eprintln!(
            "SKIPPED: {} is absent (apt-get install dataset-fashion-mnist)",
            dir.display()
        );
        return;
    }
    let data = open_dataset(&dir, &ImageFolderOptions::default()).unwrap();
    assert_eq!(data.name, "fashion-mnist");
    assert_eq!(
        (data.train.len(), data.test.as_ref().unwrap().len()),
        (60_000, 10_000)
    );
    assert_eq!(
        (data.train.width, data.train.height, data.train.channels),
        (28, 28, 1)
    );
    assert!(data.train.class_counts().iter().all(|&c| c == 6_000));
    let (mean, std) = kiln_data::channel_mean_std(&data.train);
    assert!((mean[0] - 0.2860).abs() < 1e-3 && (std[0] - 0.3530).abs() < 1e-3);
}
