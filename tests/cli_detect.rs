//! `kiln-detect` end to end on a small VOC folder the tests draw themselves: train
//! (localization, OverFeat and Fast R-CNN), the files every run writes, `predict`, `eval`, and clear errors
//! for bad input that leave no run directory behind.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::text;
use rand::{Rng, SeedableRng};

const BIN: &str = env!("CARGO_BIN_EXE_kiln-detect");

/// Writes a flat VOC folder (`images/`, `annotations/`, no split files) of `n` noisy 96×72
/// photos, each with one bright "box" object at a random place, and returns its root.
fn boxes_dataset(root: &Path, n: usize) -> PathBuf {
    let dir = root.join("boxes");
    fs::create_dir_all(dir.join("images")).unwrap();
    fs::create_dir_all(dir.join("annotations")).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    for i in 0..n {
        let (w, h) = (96u32, 72u32);
        let (bw, bh) = (rng.random_range(24..48), rng.random_range(20..40));
        let (x0, y0) = (rng.random_range(0..w - bw), rng.random_range(0..h - bh));
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            let inside = x >= x0 && x < x0 + bw && y >= y0 && y < y0 + bh;
            let noise = rng.random_range(0..40u8);
            if inside {
                image::Rgb([220, 200 - noise, 40])
            } else {
                image::Rgb([noise, noise + 30, noise + 60])
            }
        });
        let name = format!("photo{i:02}.png");
        img.save(dir.join("images").join(&name)).unwrap();
        let xml = format!(
            "<annotation><filename>{name}</filename><size><width>{w}</width><height>{h}</height><depth>3</depth></size>\
             <object><name>box</name><difficult>0</difficult><bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object></annotation>",
            x0 + 1,
            y0 + 1,
            x0 + bw,
            y0 + bh
        );
        fs::write(
            dir.join("annotations").join(format!("photo{i:02}.xml")),
            xml,
        )
        .unwrap();
    }
    dir
}

/// A small, fast config of `method` (random-initialised EfficientNet-Lite0 on 64-pixel inputs).
fn config(root: &Path, method: &str) -> PathBuf {
    let path = root.join(format!("{method}.toml"));
    fs::write(
        &path,
        format!(
            r#"method = "{method}"
seed = 1
[data]
test_fraction = 0.25
val_fraction = 0.2
max_side = 96
[backbone]
weights = "none"
arch = "efficientnet-lite0"
[localize]
input_size = 64
eval_batch = 4
min_object_fraction = 0.2
[overfeat]
window = 64
scales = [64, 96]
[fast_rcnn]
train_proposals = 100
test_proposals = 50
resize = {{ type = "short-side", short_side = 64, max_long_side = 96 }}
[fast_rcnn.sampling]
per_image = 16
[fast_rcnn.head]
neck_channels = 16
hidden = 32
[faster_rcnn]
resize = {{ type = "short-side", short_side = 64, max_long_side = 96 }}
scale_jitter = {{ range = [0.75, 1.5] }}
[faster_rcnn.rpn]
per_image = 32
pre_nms = [200, 100]
post_nms = [100, 50]
[faster_rcnn.rpn.anchors]
sizes = [16.0, 32.0]
aspect_ratios = [1.0]
[faster_rcnn.sampling]
per_image = 16
[faster_rcnn.head]
neck_channels = 16
hidden = 32
[train]
epochs = 2
batch_size = 4
learning_rate = 0.01
monitor_every = 0
[[augment]]
type = "horizontal-flip"
"#
        ),
    )
    .unwrap();
    path
}

fn detect(args: &[&str], cache: &Path) -> std::process::Output {
    common::run(BIN, args, cache)
}

/// The entries of a run's `detections.json` (COCO results).
fn detections_of(run: &Path) -> Vec<serde_json::Value> {
    let text = fs::read_to_string(run.join("detections.json")).unwrap();
    match serde_json::from_str(&text).unwrap() {
        serde_json::Value::Array(entries) => entries,
        other => panic!("detections.json is not an array: {other}"),
    }
}

/// A detection's box `[x, y, width, height]`.
fn xywh(d: &serde_json::Value) -> Vec<f64> {
    d["bbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

/// Asserts that a box lies inside a 96×72 photo of [`boxes_dataset`].
fn assert_inside_photo(b: &[f64]) {
    assert!(
        b[0] >= 0.0 && b[1] >= 0.0 && b[0] + b[2] <= 96.0 + 1e-3 && b[1] + b[3] <= 72.0 + 1e-3,
        "{b:?}"
    );
}

#[test]
fn localize_trains_scores_predicts_and_evaluates() {
    let dir = tempfile::tempdir().unwrap();
    let data = boxes_dataset(dir.path(), 16);
    let run = dir.path().join("run");
    let out = common::run_on(
        BIN,
        &["train"],
        &data,
        &config(dir.path(), "localize"),
        &run,
    );
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("seeded split") && log.contains("12 training images"),
        "{log}"
    );
    assert!(log.contains("AP50"), "{log}");
    for file in [
        "config.toml",
        "metrics.jsonl",
        "categories.json",
        "detections.json",
        "metrics.json",
        "pr_curve.png",
        "predictions.png",
        "train_samples.png",
        "checkpoints/best.bpk",
    ] {
        assert!(run.join(file).is_file(), "{file} missing\n{log}");
    }
    // The augmented training items the network first sees, with their green boxes: a grid
    // of 256-pixel cells, four wide.
    let samples = image::open(run.join("train_samples.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(samples.width(), 4 * 256);
    assert!(samples.pixels().any(|p| p.0 == [40, 220, 60]));
    // One detection per test image, in the images' own pixels.
    let detections = detections_of(&run);
    assert_eq!(detections.len(), 4, "{detections:?}");
    for d in &detections {
        let b = xywh(d);
        assert_inside_photo(&b);
    }
    let metrics: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    let ap50 = metrics["coco"]["stats"]["ap50"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&ap50), "{metrics}");

    // `eval` on the same detections and ground truth gives the same AP.
    let eval_dir = dir.path().join("eval");
    let out = detect(
        &[
            "eval",
            "--gt",
            data.to_str().unwrap(),
            "--detections",
            run.join("detections.json").to_str().unwrap(),
            "--test-fraction",
            "0.25",
            "--seed",
            "1",
            "--out",
            eval_dir.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let again: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(eval_dir.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(again["coco"]["stats"], metrics["coco"]["stats"]);

    // `predict` draws every photo it is given.
    let photo = data.join("images/photo00.png");
    let drawn = dir.path().join("drawn");
    let out = detect(
        &[
            "predict",
            "--run",
            run.to_str().unwrap(),
            "--out",
            drawn.to_str().unwrap(),
            "--min-score",
            "0",
            photo.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let png = image::open(drawn.join("photo00.png")).unwrap();
    assert_eq!((png.width(), png.height()), (96, 72));
}

#[test]
fn a_pretrained_backbone_run_predicts_from_its_checkpoint() {
    let Some(shared) = common::shared_dir("the pretrained-backbone detection run was skipped")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = boxes_dataset(dir.path(), 8);
    let cfg = config(dir.path(), "overfeat");
    let text_cfg = fs::read_to_string(&cfg)
        .unwrap()
        .replace("weights = \"none\"", "weights = \"efficientnet-lite0\"");
    fs::write(&cfg, text_cfg.replace("epochs = 2", "epochs = 1")).unwrap();
    let run = dir.path().join("run");
    let mut args = vec![
        "train",
        "--data",
        data.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ];
    let out = std::process::Command::new(BIN)
        .args(&args)
        .env("KILN_SHARED", &shared)
        .env("KILN_DATA", dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let photo = data.join("images/photo01.png");
    args = vec![
        "predict",
        "--run",
        run.to_str().unwrap(),
        photo.to_str().unwrap(),
    ];
    let out = std::process::Command::new(BIN)
        .args(&args)
        .env("KILN_SHARED", &shared)
        .env("KILN_DATA", dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(run.join("predict/photo01.png").is_file());
}

#[test]
fn overfeat_slides_windows_over_several_scales() {
    let dir = tempfile::tempdir().unwrap();
    let data = boxes_dataset(dir.path(), 12);
    let run = dir.path().join("run");
    let out = common::run_on(
        BIN,
        &["train"],
        &data,
        &config(dir.path(), "overfeat"),
        &run,
    );
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    let detections = detections_of(&run);
    // Windows at two scales, merged by NMS: some test image gets more than one candidate or
    // none, but every detection is a valid box of a known class in a known image.
    for d in &detections {
        assert_eq!(d["category_id"], 1, "{d}");
        let b = xywh(d);
        assert!(b[2] > 0.0 && b[3] > 0.0, "{b:?}");
    }
}

#[test]
fn fast_rcnn_trains_on_proposals_detects_and_predicts() {
    let dir = tempfile::tempdir().unwrap();
    let data = boxes_dataset(dir.path(), 12);
    let run = dir.path().join("run");
    let out = common::run_on(
        BIN,
        &["train"],
        &data,
        &config(dir.path(), "fast-rcnn"),
        &run,
    );
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("train selective search: 7/7 images"), "{log}");
    for file in [
        "detections.json",
        "metrics.json",
        "predictions.png",
        "checkpoints/best.bpk",
    ] {
        assert!(run.join(file).is_file(), "{file} missing\n{log}");
    }
    // Validation scored AP50 every epoch.
    let metrics = fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.matches("\"val_ap50\"").count(), 2, "{metrics}");
    // At most 100 boxes per test image, each inside its 96×72 image.
    let detections = detections_of(&run);
    assert!(detections.len() <= 3 * 100, "{}", detections.len());
    for d in &detections {
        let b = xywh(d);
        assert_inside_photo(&b);
        assert!(d["score"].as_f64().unwrap() > 0.05, "{d}");
    }
    // The run predicts on a new photo from its checkpoint (selective search included).
    let photo = data.join("images/photo02.png");
    let out = detect(
        &[
            "predict",
            "--run",
            run.to_str().unwrap(),
            photo.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(run.join("predict/photo02.png").is_file());
}

#[test]
fn faster_rcnn_trains_its_own_proposals_detects_and_predicts() {
    let dir = tempfile::tempdir().unwrap();
    let data = boxes_dataset(dir.path(), 12);
    let run = dir.path().join("run");
    let out = common::run_on(
        BIN,
        &["train"],
        &data,
        &config(dir.path(), "faster-rcnn"),
        &run,
    );
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(!log.contains("selective search"), "{log}");
    let metrics = fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.matches("\"val_ap50\"").count(), 2, "{metrics}");
    let detections = detections_of(&run);
    for d in &detections {
        let b = xywh(d);
        assert_inside_photo(&b);
    }
    let photo = data.join("images/photo03.png");
    let out = detect(
        &[
            "predict",
            "--run",
            run.to_str().unwrap(),
            photo.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(run.join("predict/photo03.png").is_file());
}

/// A small config of YOLO with `head` (`v1` on a 2×2 grid at 128 pixels, or the anchor head
/// on strides 16 and 32 at 96 pixels with multi-scale training).
fn yolo_config(root: &Path, head: &str) -> PathBuf {
    let path = config(root, "yolo");
    let mut text = fs::read_to_string(&path).unwrap();
    text += &match head {
        "v1" => "[yolo]\nhead = \"v1\"\ninput_size = 128\neval_batch = 4\n[yolo.v1]\ngrid = 2\nchannels = 16\nhidden = 32\n".to_string(),
        _ => "[yolo]\nhead = \"anchor\"\ninput_size = 96\nscale_jitter = { range = [0.75, 1.25] }\neval_batch = 4\n[yolo.anchor]\n# fitted by the test\nsizes = [[8, 8], [16, 16], [24, 24], [32, 32], [48, 48], [64, 64]]\nneck_channels = 16\n".to_string(),
    };
    let path = root.join(format!("yolo-{head}.toml"));
    fs::write(&path, text).unwrap();
    path
}

#[test]
fn yolo_fits_anchors_trains_both_heads_tests_and_compares() {
    let dir = tempfile::tempdir().unwrap();
    let data = boxes_dataset(dir.path(), 12);
    let anchor = yolo_config(dir.path(), "anchor");
    // k-means anchors from the training boxes, written into the config (comments kept).
    let out = detect(
        &[
            "anchors",
            "--config",
            anchor.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--write",
        ],
        dir.path(),
    );
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("6 anchors fitted to 9 training boxes"),
        "{log}"
    );
    let written = fs::read_to_string(&anchor).unwrap();
    assert!(
        written.contains("# fitted by the test\nsizes = [["),
        "{written}"
    );
    assert!(!written.contains("[8, 8]"), "{written}");
    let mut runs = Vec::new();
    for (head, config) in [("anchor", anchor), ("v1", yolo_config(dir.path(), "v1"))] {
        let run = dir.path().join(format!("run-{head}"));
        let out = common::run_on(BIN, &["train"], &data, &config, &run);
        let log = text(&out);
        assert!(out.status.success(), "{head}: {log}");
        let metrics = fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        assert_eq!(metrics.matches("\"val_ap50\"").count(), 2, "{metrics}");
        assert!(
            metrics.contains(&format!("\"detector\":\"yolo-{head}\"")),
            "{metrics}"
        );
        for d in &detections_of(&run) {
            assert_inside_photo(&xywh(d));
        }
        runs.push(run);
    }
    // Tested again one image at a time: the same detections, its own report.
    let out = detect(
        &["test", "--run", runs[0].to_str().unwrap(), "--batch", "1"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let again = runs[0].join("test-b1");
    assert_eq!(detections_of(&again).len(), detections_of(&runs[0]).len());
    assert!(again.join("test_report.json").is_file());
    let png = dir.path().join("speed_accuracy.png");
    let out = detect(
        &[
            "compare",
            "--out",
            png.to_str().unwrap(),
            runs[1].to_str().unwrap(),
            again.to_str().unwrap(),
        ],
        dir.path(),
    );
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("yolo-v1") && log.contains("yolo-anchor"),
        "{log}"
    );
    assert!(image::open(&png).unwrap().width() > 0);
    let photo = data.join("images/photo03.png");
    let out = detect(
        &[
            "predict",
            "--run",
            runs[1].to_str().unwrap(),
            photo.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(runs[1].join("predict/photo03.png").is_file());
}

#[test]
fn the_shipped_yolo_configs_are_valid_and_bad_ones_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = boxes_dataset(dir.path(), 8);
    for name in ["raccoon-yolo.toml", "raccoon-yolo-v1.toml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("configs")
            .join(name);
        let config: kiln_detect::config::DetectConfig =
            toml::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        config.validate().unwrap();
    }
    // YOLOv1 at an input size that is not 64 × grid: refused, naming the setting.
    let bad = yolo_config(dir.path(), "v1");
    let text_of = fs::read_to_string(&bad)
        .unwrap()
        .replace("input_size = 128", "input_size = 96");
    fs::write(&bad, text_of).unwrap();
    let run = dir.path().join("bad-run");
    let out = common::run_on(BIN, &["train"], &data, &bad, &run);
    let log = text(&out);
    assert!(!out.status.success());
    assert!(
        log.contains("[yolo] input_size") && log.contains("128"),
        "{log}"
    );
    assert!(!run.exists());
    // A mosaic after another step: refused, naming it.
    let late = dir.path().join("late-mosaic.toml");
    let steps =
        "[[augment]]\ntype = \"horizontal-flip\"\n[[augment]]\ntype = \"mosaic\"\nsize = 128\n";
    fs::write(
        &late,
        format!(
            "{}{steps}",
            fs::read_to_string(yolo_config(dir.path(), "anchor")).unwrap()
        ),
    )
    .unwrap();
    let out = common::run_on(BIN, &["train"], &data, &late, &run);
    let log = text(&out);
    assert!(!out.status.success());
    assert!(log.contains("mosaic") && log.contains("first"), "{log}");
    assert!(!run.exists());
}

#[test]
fn bad_input_is_a_clear_error_and_leaves_no_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = boxes_dataset(dir.path(), 6);
    let cfg = config(dir.path(), "localize");
    let run = dir.path().join("run");

    // A malformed annotation names its file.
    fs::write(
        data.join("annotations/photo03.xml"),
        "<annotation><filename>photo03.png",
    )
    .unwrap();
    let out = common::run_on(BIN, &["train"], &data, &cfg, &run);
    assert!(!out.status.success());
    assert!(text(&out).contains("photo03.xml"), "{}", text(&out));
    assert!(!run.exists(), "no run directory after a refused start");

    // A missing dataset, and a bad config value, are refused before anything is written.
    let out = common::run_on(BIN, &["train"], &dir.path().join("nowhere"), &cfg, &run);
    assert!(
        !out.status.success() && text(&out).contains("nowhere"),
        "{}",
        text(&out)
    );
    let bad = dir.path().join("bad.toml");
    fs::write(
        &bad,
        fs::read_to_string(&cfg)
            .unwrap()
            .replace("input_size = 64", "input_size = 50"),
    )
    .unwrap();
    let out = common::run_on(BIN, &["train"], &data, &bad, &run);
    assert!(
        !out.status.success() && text(&out).contains("input_size"),
        "{}",
        text(&out)
    );
    assert!(!run.exists());

    // Detections for an image the ground truth does not have.
    let results = dir.path().join("results.json");
    fs::write(
        &results,
        r#"[{"image_id": 999, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.5}]"#,
    )
    .unwrap();
    fs::write(
        data.join("annotations/photo03.xml"),
        fs::read_to_string(data.join("annotations/photo02.xml"))
            .unwrap()
            .replace("photo02", "photo03"),
    )
    .unwrap();
    let out = detect(
        &[
            "eval",
            "--gt",
            data.to_str().unwrap(),
            "--detections",
            results.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("results.json") && text(&out).contains("999"),
        "{}",
        text(&out)
    );
}

#[test]
fn proposals_find_the_boxes_and_are_cached() {
    let dir = tempfile::tempdir().unwrap();
    let data = boxes_dataset(dir.path(), 4);
    let cache = dir.path().join("cache");
    let run_proposals = |out: &str| {
        let out_dir = dir.path().join(out);
        let out = detect(
            &[
                "proposals",
                "--data",
                data.to_str().unwrap(),
                "--split",
                "all",
                "--cache",
                cache.to_str().unwrap(),
                "--out",
                out_dir.to_str().unwrap(),
            ],
            dir.path(),
        );
        assert!(out.status.success(), "{}", text(&out));
        let report: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(out_dir.join("proposals.json")).unwrap())
                .unwrap();
        assert!(out_dir.join("recall.png").is_file());
        (text(&out), report)
    };
    let (log, report) = run_proposals("first");
    // A bright rectangle on noise: selective search finds every one within its top 100.
    assert_eq!(report["recall"]["gt_boxes"], 4, "{report}");
    assert_eq!(report["recall"]["recall"][0][0], 1.0, "{log}");
    assert_eq!(report["computed"], 4);
    let (log, report) = run_proposals("second");
    assert_eq!(report["computed"], 0, "{log}");
    assert!(log.contains("from the cache"), "{log}");
}

/// The small test config of [`config`] as Mask R-CNN: regions pooled at stride 16, a
/// one-convolution mask branch, colour jitter in place of the flip.
fn mask_rcnn_config(root: &Path) -> PathBuf {
    let path = root.join("mask-rcnn.toml");
    let base = fs::read_to_string(config(root, "mask-rcnn")).unwrap();
    let without_flip = base
        .replace("[[augment]]\ntype = \"horizontal-flip\"\n", "")
        .replace(
            "[faster_rcnn.head]\nneck_channels = 16\n",
            "[faster_rcnn.head]\nneck_channels = 16\nfeature_stride = 16\n",
        );
    fs::write(
        &path,
        format!(
            "{without_flip}[mask_rcnn]\nbins = 7\nconvs = 1\nchannels = 8\n[[augment]]\ntype = \"color-jitter\"\nbrightness = 0.2\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn mask_rcnn_trains_on_generated_shapes_and_scores_masks() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shapes");
    let out = detect(
        &[
            "shapes",
            "--out",
            data.to_str().unwrap(),
            "--train",
            "10",
            "--test",
            "4",
            "--size",
            "64",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(data.join("annotations/instances_train.json").is_file());
    assert!(data.join("test/000011.png").is_file());

    let cfg = mask_rcnn_config(dir.path());
    let run = dir.path().join("run");
    let out = common::run_on(BIN, &["train"], &data, &cfg, &run);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("masks: AP"), "{log}");
    // Every detection has a 64×64 mask in COCO's compressed RLE, and pycocotools-style mask
    // scores are written beside the box scores.
    let text_of = |name: &str| fs::read_to_string(run.join(name)).unwrap();
    let masks: Vec<serde_json::Value> =
        serde_json::from_str(&text_of("mask_detections.json")).unwrap();
    assert!(!masks.is_empty());
    assert_eq!(masks.len(), detections_of(&run).len());
    for m in &masks {
        assert_eq!(m["segmentation"]["size"], serde_json::json!([64, 64]));
        assert!(m["segmentation"]["counts"].is_string());
    }
    let metrics: serde_json::Value = serde_json::from_str(&text_of("mask_metrics.json")).unwrap();
    assert!(metrics["segm"]["stats"]["ap"].as_f64().unwrap() >= 0.0);
    assert!(text_of("metrics.jsonl").contains("\"mean_mask_iou\""));

    // `predict` draws masks on photos; `test` re-scores the run's masks.
    let photo = data.join("test/000011.png");
    let out = detect(
        &[
            "predict",
            "--run",
            run.to_str().unwrap(),
            photo.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(run.join("predict/000011.png").is_file());
    let out = detect(&["test", "--run", run.to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("test/test_report.json")).unwrap())
            .unwrap();
    assert_eq!(report["masks"]["coco"], metrics["segm"]["stats"]);

    // `eval --iou-type segm` scores the same file to the same numbers.
    let again = dir.path().join("again");
    let out = detect(
        &[
            "eval",
            "--gt",
            data.join("annotations/instances_test.json")
                .to_str()
                .unwrap(),
            "--detections",
            run.join("mask_detections.json").to_str().unwrap(),
            "--iou-type",
            "segm",
            "--out",
            again.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let rescored: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(again.join("mask_metrics.json")).unwrap())
            .unwrap();
    assert_eq!(rescored["segm"]["stats"], metrics["segm"]["stats"]);

    // Mosaics, flips and crops move masks with their boxes: a config with them trains too.
    let flipped = dir.path().join("flipped.toml");
    fs::write(
        &flipped,
        format!(
            "{}[[augment]]\ntype = \"horizontal-flip\"\n[[augment]]\ntype = \"random-resized-crop\"\nsize = 64\nscale = [0.5, 1.0]\n",
            // The mosaic goes first, before the config's colour jitter.
            fs::read_to_string(&cfg).unwrap().replace(
                "[[augment]]\ntype = \"color-jitter\"",
                "[[augment]]\ntype = \"mosaic\"\nsize = 64\np = 0.5\n[[augment]]\ntype = \"color-jitter\""
            )
        ),
    )
    .unwrap();
    assert!(fs::read_to_string(&flipped).unwrap().contains("mosaic"));
    let other = dir.path().join("run2");
    let out = common::run_on(BIN, &["train"], &data, &flipped, &other);
    assert!(out.status.success(), "{}", text(&out));
    assert!(other.join("mask_metrics.json").is_file());
    assert!(other.join("train_samples.png").is_file());
}

#[test]
fn camvid_labels_become_instances_and_the_mask_configs_are_valid() {
    for name in ["shapes-mask-rcnn.toml", "camvid-mask-rcnn.toml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("configs")
            .join(name);
        let config: kiln_detect::config::DetectConfig =
            toml::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        config.validate().unwrap();
    }
    // A CamVid-layout folder: one 12×8 photo whose label has two separate cars (id 8), a
    // pedestrian (id 9) too small to keep, and road (id 3) everywhere else.
    let dir = tempfile::tempdir().unwrap();
    let camvid = dir.path().join("camvid");
    fs::create_dir_all(camvid.join("train")).unwrap();
    fs::create_dir_all(camvid.join("trainannot")).unwrap();
    image::RgbImage::from_pixel(12, 8, image::Rgb([90, 90, 90]))
        .save(camvid.join("train/f001.png"))
        .unwrap();
    let label = image::GrayImage::from_fn(12, 8, |x, y| {
        image::Luma([match (x, y) {
            (0..=2, 0..=2) => 8,
            (7..=10, 4..=6) => 8,
            (5, 0) => 9,
            _ => 3,
        }])
    });
    label.save(camvid.join("trainannot/f001.png")).unwrap();
    let out_dir = dir.path().join("instances");
    let out = detect(
        &[
            "camvid-instances",
            "--data",
            camvid.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
            "--splits",
            "train",
            "--min-area",
            "4",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Car 2, Pedestrian 0"), "{}", text(&out));
    let set = kiln_detect::data::read_coco_instances(
        &out_dir.join("annotations/instances_train.json"),
        &out_dir.join("train"),
    )
    .unwrap();
    let areas: Vec<f32> = set.images[0].objects.iter().map(|o| o.area).collect();
    assert_eq!(areas, vec![9.0, 12.0]);
    let b = set.images[0].objects[1].bbox;
    assert_eq!((b.x1, b.y1, b.x2, b.y2), (7.0, 4.0, 11.0, 7.0));
    // A second conversion into the same folder is refused.
    let again = detect(
        &[
            "camvid-instances",
            "--data",
            camvid.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
            "--splits",
            "train",
        ],
        dir.path(),
    );
    assert!(!again.status.success() && text(&again).contains("already holds"));
}
