//! `kiln-mlp` end to end on a small generated dataset: training, outputs, and resuming.

mod common;

use common::{colours, run, run_on, text};

#[test]
fn mlp_trains_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = colours(tmp.path());
    let config = tmp.path().join("mlp.toml");
    std::fs::write(
        &config,
        "val_images = 9\nhidden = [16]\n[train]\nepochs = 2\nbatch_size = 16\nlearning_rate = 0.05\n\
         workers = 1\n[train.optimizer]\nname = \"sgd\"\nmomentum = 0.9\nnesterov = true\n\
         [[augment]]\ntype = \"horizontal-flip\"\n",
    )
    .unwrap();
    let mlp = env!("CARGO_BIN_EXE_kiln-mlp");
    let dir = tmp.path().join("run");
    let out = run_on(mlp, &[], &data, &config, &dir);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("test"), "{}", text(&out));
    for file in [
        "config.toml",
        "loss.png",
        "accuracy.png",
        "normalization.json",
        "checkpoints/last.bpk",
    ] {
        assert!(dir.join(file).is_file(), "{file}");
    }
    // Resume to four epochs: two more epoch records, then the test record.
    let out = run(
        mlp,
        &[
            "--data",
            data.to_str().unwrap(),
            "--resume",
            dir.to_str().unwrap(),
            "--epochs",
            "4",
        ],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("resuming after epoch 2"),
        "{}",
        text(&out)
    );
    let records = kiln_train::read_metrics(&dir.join("metrics.jsonl")).unwrap();
    let epochs: Vec<u64> = records.iter().filter_map(|r| r["epoch"].as_u64()).collect();
    assert_eq!(epochs, vec![1, 2, 3, 4]);
    let last = records.last().unwrap();
    assert!(last["test_accuracy"].as_f64().unwrap() > 0.9, "{last}");

    let out = run(
        mlp,
        &[
            "--data",
            data.to_str().unwrap(),
            "--resume",
            tmp.path().to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not a kiln run directory"),
        "{}",
        text(&out)
    );
}

#[test]
fn mlp_search_runs_coarse_then_fine() {
    let tmp = tempfile::tempdir().unwrap();
    let data = colours(tmp.path());
    let config = tmp.path().join("mlp.toml");
    std::fs::write(
        &config,
        "val_images = 9\nhidden = [8]\n[train]\nbatch_size = 16\n[search]\n\
         learning_rate = [0.01, 0.1]\ncoarse_trials = 3\ncoarse_epochs = 1\nfine_trials = 2\n\
         fine_epochs = 2\nkeep = 2\n",
    )
    .unwrap();
    let dir = tmp.path().join("search");
    let out = run_on(
        env!("CARGO_BIN_EXE_kiln-mlp"),
        &["search"],
        &data,
        &config,
        &dir,
    );
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains("best: learning_rate"), "{printed}");
    let trials = kiln_train::read_metrics(&dir.join("metrics.jsonl")).unwrap();
    assert_eq!(trials.len(), 5);
    assert_eq!(trials[4]["stage"], "fine");
    assert_eq!(trials[4]["epochs"], 2);
    assert!(dir.join("search.png").is_file());
    assert!(dir.join("fine-04/checkpoints/last.bpk").is_file());
}

#[test]
fn a_run_started_with_relative_paths_resumes_from_another_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let data = colours(tmp.path());
    std::fs::write(
        tmp.path().join("mlp.toml"),
        "val_images = 9\nhidden = [8]\n[train]\nepochs = 2\nbatch_size = 16\nworkers = 1\n",
    )
    .unwrap();
    let mlp = env!("CARGO_BIN_EXE_kiln-mlp");
    let relative_data = data.file_name().unwrap().to_str().unwrap();
    let started = std::process::Command::new(mlp)
        .current_dir(tmp.path())
        .env("KILN_DATA", tmp.path())
        .args(["--data", relative_data, "--config", "mlp.toml"])
        .args(["--out", "run", "--pause-after", "1"])
        .output()
        .unwrap();
    assert!(started.status.success(), "{}", text(&started));
    // The run's config holds where the data is, whatever directory it is resumed from.
    let elsewhere = tempfile::tempdir().unwrap();
    let resumed = std::process::Command::new(mlp)
        .current_dir(elsewhere.path())
        .env("KILN_DATA", tmp.path())
        .args(["--resume", tmp.path().join("run").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert!(
        text(&resumed).contains("resuming after epoch 1"),
        "{}",
        text(&resumed)
    );
}

#[test]
fn configs_that_cannot_train_are_refused_before_a_run_directory_exists() {
    let tmp = tempfile::tempdir().unwrap();
    let data = colours(tmp.path());
    let mlp = env!("CARGO_BIN_EXE_kiln-mlp");
    for (i, (toml, expected)) in [
        // CIFAR's crop on 8×8 images: the network would get 32×32 inputs in training only.
        (
            "val_images = 9\n[[augment]]\ntype = \"random-crop\"\nsize = 32\npadding = 4\n",
            "turn the 8×8 training images into 32×32",
        ),
        (
            "val_images = 9\n[train]\nepochs = 0\n",
            "[train] epochs (0)",
        ),
        (
            "val_images = 9\n[train]\nlearning_rate = -1.0\n",
            "[train] learning_rate -1",
        ),
    ]
    .iter()
    .enumerate()
    {
        let config = tmp.path().join(format!("bad{i}.toml"));
        std::fs::write(&config, toml).unwrap();
        let out_dir = tmp.path().join(format!("run{i}"));
        let out = run_on(mlp, &[], &data, &config, &out_dir);
        let printed = text(&out);
        assert_eq!(out.status.code(), Some(1), "{printed}");
        assert!(printed.contains(expected), "{expected}: {printed}");
        assert!(
            printed.contains(&format!("bad{i}.toml")) || i > 0,
            "{printed}"
        );
        assert!(
            !out_dir.exists(),
            "a refused start left {}",
            out_dir.display()
        );
    }
}
