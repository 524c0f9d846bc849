//! End-to-end checks of the `kiln-data` binary on a dataset the test writes itself.

mod common;

use std::path::{Path, PathBuf};

use common::{run, text};

fn kiln_data(args: &[&str], cache: &Path) -> std::process::Output {
    run(env!("CARGO_BIN_EXE_kiln-data"), args, cache)
}

/// `root/{train,test}/{cat,dog}/*.png`, 8×8 images of a flat colour per class.
fn tiny_image_folder(root: &Path) -> PathBuf {
    for (split, n) in [("train", 5), ("test", 2)] {
        for (class, colour) in [("cat", [200u8, 30, 30]), ("dog", [30, 30, 200])] {
            let dir = root.join("tiny").join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                let mut c = colour;
                c[1] = (i * 40) as u8;
                image::RgbImage::from_pixel(8, 8, image::Rgb(c))
                    .save(dir.join(format!("{i}.png")))
                    .unwrap();
            }
        }
    }
    root.join("tiny")
}

#[test]
fn inspect_writes_a_complete_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_image_folder(tmp.path());
    let run = tmp.path().join("run");
    let out = kiln_data(
        &[
            "--data",
            data.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
            "--samples-per-class",
            "3",
        ],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let printed = text(&out);
    assert!(
        printed.contains("cat") && printed.contains("dog"),
        "{printed}"
    );
    assert!(printed.contains("total"), "{printed}");
    for file in [
        "config.toml",
        "metrics.jsonl",
        "normalization.json",
        "samples.png",
        "augmented.png",
    ] {
        assert!(run.join(file).is_file(), "{file} missing");
    }
    // Two classes of three 8×8 images at scale 3 with 2-pixel gaps.
    let grid = image::open(run.join("samples.png")).unwrap();
    assert_eq!((grid.width(), grid.height()), (3 * 26 + 2, 2 * 26 + 2));
    let metrics = kiln_train::read_metrics(&run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.len(), 2);
    assert_eq!(metrics[0]["images"], 10);
    assert_eq!(metrics[1]["class_counts"], serde_json::json!([2, 2]));
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("samples_per_class = 3"), "{config}");

    // The same --out again is refused rather than mixed with the first run.
    let again = kiln_data(
        &[
            "--data",
            data.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(!again.status.success());
    assert!(
        text(&again).contains("already holds a run"),
        "{}",
        text(&again)
    );
}

#[test]
fn bad_input_gives_a_message_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-dataset");
    let out = kiln_data(&["--data", missing.to_str().unwrap()], tmp.path());
    assert!(!out.status.success());
    assert!(text(&out).contains("no-such-dataset"), "{}", text(&out));
    assert!(!text(&out).contains("panicked"));

    let config = tmp.path().join("typo.toml");
    std::fs::write(&config, "samples_per_clas = 3\n").unwrap();
    let data = tiny_image_folder(tmp.path());
    let out = kiln_data(
        &[
            "--data",
            data.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("typo.toml"), "{}", text(&out));

    let bad_step = tmp.path().join("bad-step.toml");
    std::fs::write(
        &bad_step,
        "[[augment]]\ntype = \"horizontal-flip\"\np = 2.0\n",
    )
    .unwrap();
    let out = kiln_data(
        &[
            "--data",
            data.to_str().unwrap(),
            "--config",
            bad_step.to_str().unwrap(),
            "--out",
            tmp.path().join("r").to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("probability"), "{}", text(&out));
    assert!(!text(&out).contains("panicked"));

    // Resize targets are checked before anything is decoded or written.
    for size in ["0x0", "20000x20000"] {
        let out_dir = tmp.path().join(format!("resize-{size}"));
        let out = kiln_data(
            &[
                "--data",
                data.to_str().unwrap(),
                "--resize",
                size,
                "--out",
                out_dir.to_str().unwrap(),
            ],
            tmp.path(),
        );
        assert!(!out.status.success());
        assert!(
            text(&out).contains("each side must be between 1 and"),
            "{}",
            text(&out)
        );
        assert!(!out_dir.exists());
    }
}

#[test]
fn bench_reports_throughput() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_image_folder(tmp.path());
    let run = tmp.path().join("bench");
    let out = kiln_data(
        &[
            "bench",
            "--data",
            data.to_str().unwrap(),
            "--images",
            "500",
            "--out",
            run.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("images/s"));
    let metrics = kiln_train::read_metrics(&run.join("metrics.jsonl")).unwrap();
    assert!(metrics[0]["augment_images_per_sec"].as_f64().unwrap() > 0.0);
}
