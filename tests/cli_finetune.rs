//! `kiln-finetune` end to end on small generated datasets: every strategy from random
//! initialisation, a linear probe on the shared pretrained weights (when `KILN_SHARED` is set),
//! the same training subset as `kiln-cnn`, the speed benchmark, and bad input.

mod common;

use std::path::{Path, PathBuf};

use common::{colours_sized, run, run_on, text};

const FINETUNE: &str = env!("CARGO_BIN_EXE_kiln-finetune");

/// A small ResNet-18 run at 32×32: strategy and weights come from the flags.
const CONFIG: &str = r#"
arch = "resnet18"
weights = "none"
image_size = 32
train_per_class = 20
val_images = 9
backbone_lr_scale = 0.5
[probe]
epochs = 5
batch_size = 20
learning_rate = 0.05
[train]
epochs = 2
batch_size = 20
learning_rate = 0.02
monitor_every = 0
tta = "mirror"
[train.optimizer]
name = "sgd"
momentum = 0.9
[[augment]]
type = "horizontal-flip"
"#;

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = colours_sized(dir.path(), 16);
    let config = dir.path().join("finetune.toml");
    std::fs::write(&config, CONFIG).unwrap();
    (dir, data, config)
}

fn finetune(data: &Path, config: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    run_on(FINETUNE, extra, data, config, out)
}

fn result(run_dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run_dir.join("result.json")).unwrap()).unwrap()
}

#[test]
fn every_strategy_runs_and_writes_its_run_directory() {
    let (dir, data, config) = setup();
    for strategy in ["linear-probe", "head-then-full", "full"] {
        let out = dir.path().join(strategy);
        let done = finetune(&data, &config, &out, &["--strategy", strategy]);
        let log = text(&done);
        assert!(done.status.success(), "{log}");
        let summary = result(&out);
        assert_eq!(summary["strategy"], strategy);
        assert_eq!(summary["pretrained"], false);
        assert_eq!(summary["train_images"], 60, "20 a class of 3 classes");
        let accuracy = summary["test_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&accuracy), "{summary}");
        assert!(out.join("config.toml").is_file());
        let probe = out.join("probe/metrics.jsonl");
        assert_eq!(probe.is_file(), strategy != "full", "{strategy}");
        if strategy == "linear-probe" {
            assert!(out.join("checkpoints/final.bpk").is_file());
            assert_eq!(std::fs::read_to_string(probe).unwrap().lines().count(), 5);
        } else {
            // Whole-network training: two epochs, checkpoints, TTA on the test set.
            let lines = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
            assert_eq!(lines.lines().filter(|l| l.contains("\"epoch\"")).count(), 2);
            assert!(out.join("checkpoints/best.bpk").is_file());
            assert!(summary["test_accuracy_tta"].as_f64().is_some());
            assert!(out.join("loss.png").is_file() && out.join("accuracy.png").is_file());
        }
    }
}

#[test]
fn colours_are_learned_from_a_pretrained_probe() {
    let Some(shared) = common::shared_dir("the pretrained probe was not run") else {
        return;
    };
    let (dir, data, config) = setup();
    let out = dir.path().join("probe");
    let weights = Path::new(&shared).join("pretrained/efficientnet-lite0-57934424.pth");
    let done = finetune(
        &data,
        &config,
        &out,
        &[
            "--strategy",
            "linear-probe",
            "--weights",
            weights.to_str().unwrap(),
        ],
    );
    // The config's arch is resnet18: weights of another architecture are refused by name.
    assert!(!done.status.success());
    let log = text(&done);
    assert!(
        log.contains("efficientnet-lite0") && log.contains("resnet18"),
        "{log}"
    );

    let lite = dir.path().join("lite.toml");
    std::fs::write(
        &lite,
        CONFIG.replace("arch = \"resnet18\"", "arch = \"efficientnet-lite0\""),
    )
    .unwrap();
    let out = dir.path().join("lite-probe");
    let done = finetune(
        &data,
        &lite,
        &out,
        &[
            "--strategy",
            "linear-probe",
            "--weights",
            weights.to_str().unwrap(),
        ],
    );
    assert!(done.status.success(), "{}", text(&done));
    let summary = result(&out);
    assert_eq!(summary["pretrained"], true);
    // Three noisy colours: ImageNet features separate them after five probe epochs.
    let accuracy = summary["test_accuracy"].as_f64().unwrap();
    eprintln!("pretrained probe on three colours: {summary}");
    assert!(accuracy >= 0.9, "{summary}");
}

#[test]
fn bench_prints_both_speeds() {
    let dir = tempfile::tempdir().unwrap();
    let done = run(
        FINETUNE,
        &[
            "bench",
            "--arch",
            "resnet18",
            "--size",
            "32",
            "--infer-batch",
            "2",
            "--train-batch",
            "2",
            "--steps",
            "1",
        ],
        dir.path(),
    );
    let log = text(&done);
    assert!(done.status.success(), "{log}");
    assert!(
        log.contains("inference") && log.contains("training"),
        "{log}"
    );
}

#[test]
fn bad_configs_and_flags_are_clear_errors() {
    let (dir, data, config) = setup();
    let out = dir.path().join("bad");
    let done = finetune(&data, &config, &out, &["--strategy", "halfway"]);
    assert!(!done.status.success());
    assert!(text(&done).contains("halfway"), "{}", text(&done));

    let missing = dir.path().join("missing.pth");
    let done = finetune(
        &data,
        &config,
        &out,
        &["--weights", missing.to_str().unwrap()],
    );
    assert!(!done.status.success());
    assert!(text(&done).contains("missing.pth"), "{}", text(&done));
    assert!(
        !out.exists(),
        "no run directory for weights that cannot be found"
    );

    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "arch = \"resnet18\"\nimage_sise = 32\n").unwrap();
    let done = finetune(&data, &typo, &out, &[]);
    assert!(!done.status.success());
    let log = text(&done);
    assert!(
        log.contains("typo.toml") && log.contains("image_sise"),
        "{log}"
    );
    assert!(!out.exists(), "no run directory for a refused config");
}
