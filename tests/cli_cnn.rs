//! `kiln-cnn` end to end on small generated datasets: the airbench recipe with every training
//! feature, exact resume, ensembles, sanity checks, the design-rule table and bad configs.

mod common;

use std::path::Path;

use common::{colours, colours_sized, run, run_on, text};

const CNN: &str = env!("CARGO_BIN_EXE_kiln-cnn");

const AIRBENCH: &str = r#"
val_images = 9
[model]
type = "airbench"
widths = [8, 16, 16]
whiten_images = 30
[train]
epochs = 3
batch_size = 16
learning_rate = 0.2
label_smoothing = 0.2
norm_bias_lr_scale = 8.0
tta = "mirror-translate"
monitor_every = 2
[train.optimizer]
name = "sgd"
momentum = 0.85
nesterov = true
weight_decay = 1e-3
[train.schedule]
name = "piecewise"
points = [[0.0, 0.2], [0.25, 1.0], [1.0, 0.1]]
[train.lookahead]
every = 2
[[train.freeze]]
param = "whiten.bias"
after_epochs = 1
[[augment]]
type = "alternating-flip"
[[augment]]
type = "random-crop"
size = 16
padding = 2
padding_mode = "reflect"
"#;

/// A small plain conv net, completed by a `val_images` line.
const CONVNET: &str = "[model]\ntype = \"conv-net\"\nstages = [[8], [16]]\n[train]\nepochs = 2\n\
    batch_size = 16\nlearning_rate = 0.05\n[train.optimizer]\nmomentum = 0.9\n";

fn train(data: &Path, config: &Path, out: &Path, extra: &[&str]) -> String {
    let result = run_on(CNN, extra, data, config, out);
    assert!(result.status.success(), "{}", text(&result));
    text(&result)
}

/// 16×16 colour images and the small airbench recipe in `root`: (data, config).
fn airbench_setup(root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = colours_sized(root, 16);
    let config = root.join("airbench.toml");
    std::fs::write(&config, AIRBENCH).unwrap();
    (data, config)
}

fn epoch_records(run: &Path) -> Vec<serde_json::Value> {
    kiln_train::read_metrics(&run.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .filter(|r| r.get("epoch").is_some())
        .collect()
}

#[test]
fn airbench_recipe_trains_resumes_exactly_and_ensembles() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, config) = airbench_setup(tmp.path());

    let straight = tmp.path().join("straight");
    let printed = train(&data, &config, &straight, &[]);
    assert!(printed.contains("MirrorTranslate TTA"), "{printed}");
    for file in [
        "loss.png",
        "accuracy.png",
        "update_ratios.png",
        "filters.png",
        "normalization.json",
        "checkpoints/best.bpk",
        "checkpoints/epoch-0003/lookahead.bpk",
        "checkpoints/epoch-0003/optimizer.bin",
    ] {
        assert!(straight.join(file).is_file(), "{file}");
    }
    let records = kiln_train::read_metrics(&straight.join("metrics.jsonl")).unwrap();
    let last = records.last().unwrap();
    assert!(last["test_accuracy"].as_f64().unwrap() > 0.9, "{last}");
    assert!(last["test_accuracy_tta"].as_f64().is_some(), "{last}");
    let epochs = epoch_records(&straight);
    assert_eq!(epochs.len(), 3);
    assert!(
        epochs[0]["update_ratios"]["groups.1.conv1.weight"]
            .as_f64()
            .is_some_and(|r| r > 0.0),
        "{}",
        epochs[0]
    );

    // Stopped after two epochs, then resumed: the same numbers as the uninterrupted run.
    let split = tmp.path().join("split");
    let printed = train(&data, &config, &split, &["--pause-after", "2"]);
    assert!(printed.contains("paused after epoch 2 of 3"), "{printed}");
    let resumed = run(
        CNN,
        &[
            "--data",
            data.to_str().unwrap(),
            "--resume",
            split.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(resumed.status.success(), "{}", text(&resumed));
    let (a, b) = (epoch_records(&straight), epoch_records(&split));
    assert_eq!(b.len(), 3);
    for key in ["train_loss", "val_loss", "val_accuracy"] {
        let (x, y) = (a[2][key].as_f64().unwrap(), b[2][key].as_f64().unwrap());
        assert!((x - y).abs() < 1e-5, "{key}: {x} vs {y}");
    }

    // A plain conv net on the same data, then an ensemble of both runs.
    let convnet = tmp.path().join("convnet.toml");
    std::fs::write(&convnet, format!("val_images = 9\n{CONVNET}")).unwrap();
    let plain = tmp.path().join("plain");
    train(&data, &convnet, &plain, &[]);
    let out = run(
        CNN,
        &[
            "ensemble",
            straight.to_str().unwrap(),
            plain.to_str().unwrap(),
            "--out",
            tmp.path().join("ensemble").to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("ensemble of 2"), "{}", text(&out));
}

#[test]
fn sanity_checks_pass_on_a_learnable_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let data = colours(tmp.path());
    let config = tmp.path().join("c.toml");
    std::fs::write(
        &config,
        "val_images = 9\n[model]\ntype = \"conv-net\"\nstages = [[8], [16]]\n",
    )
    .unwrap();
    let out = run_on(
        CNN,
        &["sanity", "--images", "12"],
        &data,
        &config,
        &tmp.path().join("sanity"),
    );
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains("ln(C) = 1.099: PASS"), "{printed}");
    assert!(printed.contains("overfit 12 images: PASS"), "{printed}");
    assert!(tmp.path().join("sanity/overfit.png").is_file());
}

#[test]
fn cnn_search_trains_every_trial() {
    let tmp = tempfile::tempdir().unwrap();
    let data = colours(tmp.path());
    let config = tmp.path().join("c.toml");
    std::fs::write(
        &config,
        "val_images = 9\n[model]\ntype = \"conv-net\"\nstages = [[4]]\n[train]\nbatch_size = 16\n\
         [search]\ncoarse_trials = 2\nfine_trials = 1\nfine_epochs = 2\ntrain_images = 30\n",
    )
    .unwrap();
    let dir = tmp.path().join("search");
    let out = run_on(CNN, &["search"], &data, &config, &dir);
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains("best: learning_rate"), "{printed}");
    assert!(dir.join("search.png").is_file() && dir.join("trials.json").is_file());
    assert!(dir.join("fine-02/update_ratios.png").is_file());
}

#[test]
fn params_table_shows_the_design_rules() {
    let out = run(CNN, &["params", "--channels", "64"], Path::new("."));
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    // 7×7: one conv 49·64² parameters, three 3×3 convs 27·64².
    assert!(printed.contains("200704"), "{printed}");
    assert!(printed.contains("110592"), "{printed}");
    let out = run(
        CNN,
        &["bench", "--steps", "1", "--warmup", "0", "--batch", "4"],
        Path::new("."),
    );
    assert!(text(&out).contains("training images/s"), "{}", text(&out));
}

#[test]
fn val_images_zero_trains_on_everything_and_monitors_the_test_set() {
    let tmp = tempfile::tempdir().unwrap();
    let data = colours(tmp.path());
    let config = tmp.path().join("all.toml");
    std::fs::write(&config, format!("val_images = 0\n{CONVNET}")).unwrap();
    let out = tmp.path().join("all");
    let printed = train(&data, &config, &out, &[]);
    assert!(
        printed.contains("training on all 90 training images"),
        "{printed}"
    );
    assert!(printed.contains("no held-out validation"), "{printed}");
    // The last epoch's validation pass and the final test pass see the same images and model.
    let records = kiln_train::read_metrics(&out.join("metrics.jsonl")).unwrap();
    let test = records.last().unwrap()["test_accuracy"].as_f64().unwrap();
    let epochs = epoch_records(&out);
    let val = epochs.last().unwrap()["val_accuracy"].as_f64().unwrap();
    assert!((val - test).abs() < 1e-9, "validation {val} vs test {test}");

    // Search ranks trials on validation accuracy, so it refuses to rank them on test data.
    let search = run_on(CNN, &["search"], &data, &config, &tmp.path().join("search"));
    assert_eq!(search.status.code(), Some(1), "{}", text(&search));
    assert!(
        text(&search).contains("rank them on the test set"),
        "{}",
        text(&search)
    );
}

#[test]
fn bad_configs_name_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let data = colours(tmp.path());
    let cases = [
        ("[model]\ntype = \"vgg\"\n", "invalid config"),
        (
            "val_images = 9\n[model]\ntype = \"conv-net\"\nstages = [[4]]\n[[train.freeze]]\nparam = \"whiten\"\nafter_epochs = 1\n",
            "names no trainable parameter",
        ),
        (
            "val_images = 9\n[model]\ntype = \"conv-net\"\nstages = [[4], [4], [4], [4]]\n",
            "shrink a 8×8 image to nothing",
        ),
        (
            "[train]\nnorm_bias_lr_scale = 0.0\n",
            "norm_bias_lr_scale must be positive",
        ),
        (
            "val_images = 9\n[model]\ntype = \"conv-net\"\nstages = [[4]]\n[[train.lr_groups]]\nparam = \"neck\"\nlr_scale = 2.0\n",
            "[[train.lr_groups]] param 'neck'",
        ),
        (
            "val_images = 0\n[model]\ntype = \"conv-net\"\nstages = [[4]]\n[train.schedule]\nname = \"plateau\"\n",
            "must not steer the plateau schedule",
        ),
    ];
    for (i, (toml, expected)) in cases.iter().enumerate() {
        let config = tmp.path().join(format!("bad{i}.toml"));
        std::fs::write(&config, toml).unwrap();
        let out_dir = tmp.path().join(format!("run{i}"));
        let out = run_on(CNN, &[], &data, &config, &out_dir);
        let printed = text(&out);
        assert_eq!(out.status.code(), Some(1), "{printed}");
        assert!(printed.contains(expected), "{expected}: {printed}");
        assert!(!printed.contains("panicked"), "{printed}");
        // Parameter rules are checked against the built network once training starts; every
        // other bad config is refused before the run directory exists.
        let checked_in_training =
            expected.contains("trainable parameter") || expected.contains("lr_groups");
        assert_eq!(
            out_dir.exists(),
            checked_in_training,
            "{expected}: {}",
            out_dir.display()
        );
    }
    // A config without [model] does not train a network the user never chose.
    let no_model = tmp.path().join("no-model.toml");
    std::fs::write(&no_model, "val_images = 9\n[train]\nepochs = 1\n").unwrap();
    let out = run_on(CNN, &[], &data, &no_model, &tmp.path().join("run-no-model"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no-model.toml has no [model] table"),
        "{}",
        text(&out)
    );
}

#[test]
fn mixed_precision_trains_through_the_binary_and_other_commands_refuse_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, config) = airbench_setup(tmp.path());
    let mixed = tmp.path().join("mixed");
    train(
        &data,
        &config,
        &mixed,
        &["--precision", "f16-mixed", "--epochs", "2"],
    );
    // The flag becomes the run's setting, so a resumed run keeps it.
    let saved = std::fs::read_to_string(mixed.join("config.toml")).unwrap();
    assert!(saved.contains("mixed_precision = \"f16\""), "{saved}");
    let epochs = epoch_records(&mixed);
    assert_eq!(epochs.len(), 2);
    for record in &epochs {
        let scale = record["loss_scale"]
            .as_f64()
            .expect("f16 runs record their scale");
        assert!(scale > 0.0 && scale <= 65_536.0, "{record}");
    }
    let records = kiln_train::read_metrics(&mixed.join("metrics.jsonl")).unwrap();
    let last = records.last().unwrap();
    assert!(last["test_accuracy"].as_f64().unwrap() > 0.9, "{last}");

    // Commands without kiln's training loop say so instead of training in f32 unasked.
    let knn = env!("CARGO_BIN_EXE_kiln-knn");
    let out = run(
        knn,
        &[
            "--data",
            data.to_str().unwrap(),
            "--precision",
            "bf16-mixed",
        ],
        tmp.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("--precision bf16-mixed: kiln-knn does not train"),
        "{}",
        text(&out)
    );
}
