//! `kiln-segment` end to end on a small road-scene folder the tests draw themselves (CamVid's
//! layout and classes): train FCN-32s, grow it to 16s, `eval`, `predict`, and clear errors for
//! bad labels and bad starting points that leave no run directory behind.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::text;
use rand::{Rng, SeedableRng};

const BIN: &str = env!("CARGO_BIN_EXE_kiln-segment");
const WIDTH: u32 = 96;
const HEIGHT: u32 = 64;

/// Writes `train/`, `trainannot/`, `val/` and `valannot/` of drawn 96×64 street scenes: sky
/// (class 0) above, road (3) below, a red car (8) at a random place, a void (11) border.
fn roads_dataset(root: &Path) -> PathBuf {
    let dir = root.join("roads");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for (split, n) in [("train", 8), ("val", 4)] {
        fs::create_dir_all(dir.join(split)).unwrap();
        fs::create_dir_all(dir.join(format!("{split}annot"))).unwrap();
        for i in 0..n {
            let horizon = rng.random_range(20..36);
            let (cw, ch) = (rng.random_range(16..32), rng.random_range(10..18));
            let (cx, cy) = (rng.random_range(2..WIDTH - cw - 2), horizon + 2);
            let class_at = |x: u32, y: u32| -> u8 {
                if x < 2 || y < 2 || x >= WIDTH - 2 || y >= HEIGHT - 2 {
                    11
                } else if x >= cx && x < cx + cw && y >= cy && y < cy + ch {
                    8
                } else if y < horizon {
                    0
                } else {
                    3
                }
            };
            let labels =
                image::GrayImage::from_fn(WIDTH, HEIGHT, |x, y| image::Luma([class_at(x, y)]));
            let photo = image::RgbImage::from_fn(WIDTH, HEIGHT, |x, y| {
                let noise = rng.random_range(0..30u8);
                match class_at(x, y) {
                    0 => image::Rgb([90 + noise, 140 + noise, 220]),
                    3 => image::Rgb([100 + noise, 100 + noise, 100 + noise]),
                    8 => image::Rgb([210, 30 + noise, 30]),
                    _ => image::Rgb([noise, noise, noise]),
                }
            });
            photo
                .save(dir.join(split).join(format!("f{i:02}.png")))
                .unwrap();
            labels
                .save(
                    dir.join(format!("{split}annot"))
                        .join(format!("f{i:02}.png")),
                )
                .unwrap();
        }
    }
    dir
}

/// A small, fast config of `variant` (random-initialised EfficientNet-Lite0).
fn config(root: &Path, variant: &str) -> PathBuf {
    let path = root.join(format!("fcn{variant}.toml"));
    fs::write(
        &path,
        format!(
            r#"seed = 1
# The training batch, so that the final scoring repeats the last validation exactly.
eval_batch = 4
pictured = 2
[fcn]
variant = "{variant}"
[backbone]
weights = "none"
arch = "efficientnet-lite0"
[train]
epochs = 2
batch_size = 4
learning_rate = 0.01
monitor_every = 0
[[augment]]
type = "random-resized-crop"
size = 64
scale = [0.5, 1.0]
[[augment]]
type = "horizontal-flip"
"#
        ),
    )
    .unwrap();
    path
}

fn segment(args: &[&str], cache: &Path) -> std::process::Output {
    common::run(BIN, args, cache)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

/// The validation mIoU of a run's last epoch in its `metrics.jsonl`.
fn last_val_miou(run: &Path) -> f64 {
    let log = fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    log.lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find_map(|record| record["val_miou"].as_f64())
        .unwrap_or_else(|| panic!("no val_miou in {log}"))
}

/// `kiln-segment train` with `extra` flags, then the data, config and output flags.
fn train(data: &Path, config: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut leading = vec!["train"];
    leading.extend(extra);
    common::run_on(BIN, &leading, data, config, out)
}

#[test]
fn fcn_32s_trains_grows_to_16s_scores_and_predicts() {
    let tmp = tempfile::tempdir().unwrap();
    let data = roads_dataset(tmp.path());
    let cache = tmp.path().join("cache");
    let run32 = tmp.path().join("run32");
    let out = train(&data, &config(tmp.path(), "32s"), &run32, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let log = text(&out);
    assert!(log.contains("median-frequency class weights: Sky"), "{log}");
    assert!(log.contains("FCN-32s on 4 images: mIoU"), "{log}");
    for file in [
        "config.toml",
        "metrics.jsonl",
        "confusion.png",
        "predictions.png",
        "checkpoints/best.bpk",
    ] {
        assert!(run32.join(file).is_file(), "{file} missing");
    }
    // Weights for the 11 CamVid classes; classes absent from the labels weigh 0.
    let weights = json(&run32.join("class_weights.json"));
    let weights: Vec<f64> = weights
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_f64().unwrap())
        .collect();
    assert_eq!(weights.len(), 11);
    assert!(weights[0] > 0.0 && weights[3] > 0.0 && weights[8] > weights[3]);
    assert_eq!(weights[1], 0.0);
    let metrics = json(&run32.join("metrics.json"));
    let miou = metrics["metrics"]["mean_iou"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&miou), "{metrics}");
    assert_eq!(metrics["images"], 4);
    assert_eq!(metrics["class_iou"].as_array().unwrap().len(), 11);
    let epochs = fs::read_to_string(run32.join("metrics.jsonl")).unwrap();
    assert_eq!(epochs.matches("\"val_miou\"").count(), 2, "{epochs}");
    // The run reports its final weights (`checkpoint = "last"` by default): the score is the
    // last epoch's validation, whichever epoch scored best.
    assert_eq!(miou, last_val_miou(&run32), "{epochs}");
    // The grid: photo | truth | prediction for the 2 pictured images, 4-pixel gaps.
    let grid = image::open(run32.join("predictions.png")).unwrap();
    assert_eq!(
        (grid.width(), grid.height()),
        (3 * WIDTH + 16, 2 * HEIGHT + 12)
    );

    // FCN-16s from the trained 32s, evaluated with the mirror images too.
    let run16 = tmp.path().join("run16");
    let config16 = config(tmp.path(), "16s");
    let text16 = fs::read_to_string(&config16).unwrap();
    fs::write(
        &config16,
        text16.replace("[train]\n", "[train]\ntta = \"mirror\"\n"),
    )
    .unwrap();
    let out = train(
        &data,
        &config16,
        &run16,
        &["--init", run32.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("FCN-16s from the trained FCN-32s"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("FCN-16s on 4 images"));
    let miou16 = json(&run16.join("metrics.json"))["metrics"]["mean_iou"]
        .as_f64()
        .unwrap();
    assert_eq!(miou16, last_val_miou(&run16));

    // eval on the training split writes its own metrics.
    let eval_dir = tmp.path().join("eval");
    let out = segment(
        &[
            "eval",
            "--run",
            run16.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--split",
            "train",
            "--out",
            eval_dir.to_str().unwrap(),
        ],
        &cache,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(json(&eval_dir.join("metrics.json"))["images"], 8);
    assert!(eval_dir.join("confusion.png").is_file());

    // predict: colour labels, overlay and class ids at the photo's size.
    let photo = data.join("val").join("f00.png");
    let pred_dir = tmp.path().join("pred");
    let out = segment(
        &[
            "predict",
            "--run",
            run16.to_str().unwrap(),
            "--out",
            pred_dir.to_str().unwrap(),
            photo.to_str().unwrap(),
        ],
        &cache,
    );
    assert!(out.status.success(), "{}", text(&out));
    for name in ["f00-labels.png", "f00-overlay.png", "f00-ids.png"] {
        let png = image::open(pred_dir.join(name)).unwrap();
        assert_eq!((png.width(), png.height()), (WIDTH, HEIGHT), "{name}");
    }
    let ids = image::open(pred_dir.join("f00-ids.png"))
        .unwrap()
        .to_luma8();
    assert!(
        ids.pixels().all(|p| p.0[0] < 11),
        "predictions are class ids"
    );

    // A run cannot start from a finer one.
    let back = tmp.path().join("back");
    let out = train(
        &data,
        &config(tmp.path(), "32s"),
        &back,
        &["--init", run16.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("cannot start FCN-32s from a trained FCN-16s"),
        "{}",
        text(&out)
    );
}

#[test]
fn bad_labels_are_named_and_leave_no_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = roads_dataset(tmp.path());
    // A label with a class id beyond CamVid's 11 classes and void.
    let bad = data.join("valannot").join("f01.png");
    image::GrayImage::from_pixel(WIDTH, HEIGHT, image::Luma([20]))
        .save(&bad)
        .unwrap();
    let run = tmp.path().join("run");
    let out = train(&data, &config(tmp.path(), "32s"), &run, &[]);
    assert!(!out.status.success());
    let log = text(&out);
    assert!(
        log.contains("valannot/f01.png") && log.contains("class id 20"),
        "{log}"
    );
    assert!(!run.exists(), "a failed start leaves no run directory");
    // A photo without its label.
    fs::remove_file(&bad).unwrap();
    let out = train(&data, &config(tmp.path(), "32s"), &run, &[]);
    assert!(text(&out).contains("has no label"), "{}", text(&out));
    assert!(!run.exists());
}
