//! End-to-end runs of `kiln-knn` and `kiln-linear` on a small dataset the test writes: three
//! colour classes with noise, as an ImageFolder with train/ and test/.

mod common;

use common::{colours, run, text};

fn accuracy_in(out: &str, label: &str) -> f64 {
    let at = out
        .find(label)
        .unwrap_or_else(|| panic!("no `{label}` in {out}"));
    out[at + label.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn knn_classifies_and_cross_validates() {
    let tmp = tempfile::tempdir().unwrap();
    let data = colours(tmp.path());
    let knn = env!("CARGO_BIN_EXE_kiln-knn");
    for metric in ["l1", "l2"] {
        let out = run(
            knn,
            &[
                "--data",
                data.to_str().unwrap(),
                "--metric",
                metric,
                "--k",
                "3",
                "--out",
                tmp.path().join(format!("knn-{metric}")).to_str().unwrap(),
            ],
            tmp.path(),
        );
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            accuracy_in(&text(&out), "test accuracy") > 95.0,
            "{}",
            text(&out)
        );
        assert!(text(&out).contains("kept in memory"));
    }
    let config = tmp.path().join("cv.toml");
    std::fs::write(&config, "[cv]\nfolds = 3\nks = [1, 3, 5]\n").unwrap();
    let cv_dir = tmp.path().join("cv");
    let out = run(
        knn,
        &[
            "cv",
            "--data",
            data.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--out",
            cv_dir.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("best:"), "{}", text(&out));
    assert!(cv_dir.join("cv_accuracy.png").is_file());
    let records = kiln_train::read_metrics(&cv_dir.join("metrics.jsonl")).unwrap();
    assert_eq!(records.len(), 3 * 2 * 3 + 1);

    // k larger than the training set is a message, not a panic.
    let out = run(
        knn,
        &[
            "--data",
            data.to_str().unwrap(),
            "--k",
            "1000",
            "--out",
            tmp.path().join("bad").to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("k = 1000"), "{}", text(&out));
    assert!(!text(&out).contains("panicked"));
    assert!(
        !tmp.path().join("bad").exists(),
        "a refused start left its run directory"
    );
}

#[test]
fn linear_trains_searches_and_stops_on_divergence() {
    let tmp = tempfile::tempdir().unwrap();
    let data = colours(tmp.path());
    let linear = env!("CARGO_BIN_EXE_kiln-linear");
    let config = tmp.path().join("linear.toml");
    std::fs::write(
        &config,
        "val_images = 9\n[svm]\nlearning_rate = 1e-5\nreg = 1.0\niterations = 200\nbatch_size = 20\n\
         [softmax]\nlearning_rate = 1e-5\nreg = 1.0\niterations = 200\nbatch_size = 20\n\
         [search]\ncoarse_trials = 3\ncoarse_iterations = 50\nfine_trials = 2\nfine_iterations = 100\n\
         learning_rate = [1e-6, 1e-4]\nreg = [0.1, 10.0]\n",
    )
    .unwrap();
    for (loss, grad) in [
        ("svm", "analytic"),
        ("softmax", "analytic"),
        ("softmax", "autodiff"),
    ] {
        let dir = tmp.path().join(format!("{loss}-{grad}"));
        let out = run(
            linear,
            &[
                "--data",
                data.to_str().unwrap(),
                "--loss",
                loss,
                "--grad",
                grad,
                "--config",
                config.to_str().unwrap(),
                "--out",
                dir.to_str().unwrap(),
            ],
            tmp.path(),
        );
        assert!(out.status.success(), "{}", text(&out));
        assert!(accuracy_in(&text(&out), "test") > 90.0, "{}", text(&out));
        assert!(text(&out).contains("sanity: initial loss"));
        for file in [
            "loss.png",
            "templates.png",
            "checkpoints/linear.bpk",
            "normalization.json",
        ] {
            assert!(dir.join(file).is_file(), "{file}");
        }
    }
    let dir = tmp.path().join("search");
    let out = run(
        linear,
        &[
            "search",
            "--data",
            data.to_str().unwrap(),
            "--loss",
            "softmax",
            "--config",
            config.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(dir.join("search.png").is_file() && dir.join("trials.json").is_file());
    // The one coarse-to-fine search, with the linear classifier's names.
    let trials: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("trials.json")).unwrap()).unwrap();
    let trials = trials.as_array().unwrap();
    assert!(
        trials.iter().any(|t| t["stage"] == "coarse")
            && trials.iter().any(|t| t["stage"] == "fine")
    );
    for key in [
        "learning_rate",
        "reg",
        "iterations",
        "val_accuracy",
        "train_accuracy",
    ] {
        assert!(trials[0].get(key).is_some(), "{key}: {}", trials[0]);
    }

    let out = run(
        linear,
        &[
            "--data",
            data.to_str().unwrap(),
            "--loss",
            "softmax",
            "--learning-rate",
            "1e30",
            "--config",
            config.to_str().unwrap(),
            "--out",
            tmp.path().join("diverge").to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("diverged"), "{}", text(&out));
    assert!(!text(&out).contains("panicked"));
}
