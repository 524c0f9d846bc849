//! What every kiln binary shares: the common flags, TOML configs with flag overrides, data
//! discovery, and run-directory creation.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use serde::Serialize;
use serde::de::DeserializeOwned;

use kiln_train::RunDir;

use crate::backend::Precision;

pub use kiln_data::download::{SHARED_ENV, shared_dir};

/// Flags common to every kiln binary.
#[derive(Args, Clone, Debug, Default)]
pub struct CommonArgs {
    /// TOML config file (see `configs/`); flags given on the command line override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Dataset: a CIFAR-10 binary directory, an ImageFolder root, an IDX directory, or a
    /// .tar.gz of one. Default: CIFAR-10 from the cache (downloaded on first use).
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,
    /// Compute device: auto, flex, ndarray, wgpu or wgpu:N, vulkan (only compiled backends
    /// work).
    #[arg(long, value_name = "NAME")]
    pub device: Option<String>,
    /// Float type: f32; f16/bf16 for every tensor (half the memory traffic; on GPUs the
    /// tensor cores; a half run's checkpoints hold half weights); f16-mixed/bf16-mixed for
    /// half forward and backward passes with f32 weights (classifier training).
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub precision: Precision,
    /// Random seed for splits, initialisation and augmentation.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run directory to create (default: `runs/<command>-<UTC time>`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

impl CommonArgs {
    /// The `--device` with the `--precision` set.
    pub fn device(&self) -> Result<burn::tensor::Device> {
        crate::backend::device_with(self.device.as_deref(), self.precision)
    }

    /// An error when `--precision` asks for mixed precision, which only the training loop
    /// does: `what` (e.g. `kiln-knn`) names the command that has none.
    pub fn refuse_mixed(&self, what: &str) -> Result<()> {
        if self.precision.mixed().is_some() {
            anyhow::bail!(
                "--precision {}: {what} does not train through kiln's training loop, so it \
                 cannot mix precisions; use f32, f16 or bf16",
                self.precision
                    .to_possible_value()
                    .map_or_else(String::new, |v| v.get_name().to_string())
            );
        }
        Ok(())
    }
}

/// Ends a binary: prints an error with its chain of causes on one line (no backtrace: the
/// message names the file and the fix) and returns the exit status.
pub fn finish(result: Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Reads a TOML config, or the type's defaults when no file is given. Unknown keys are
/// reported (configs derive `deny_unknown_fields`) together with the file name.
pub fn load_config<T: DeserializeOwned + Default>(path: Option<&Path>) -> Result<T> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))
}

/// The config of a new run (`config`, or defaults) or of the run being resumed (its own
/// `config.toml`; giving `--config` too is an error), with the resumed run's directory.
pub fn config_or_resume<T: DeserializeOwned + Default>(
    config: Option<&Path>,
    resume: Option<&Path>,
) -> Result<(T, Option<RunDir>)> {
    match resume {
        Some(dir) => {
            if config.is_some() {
                anyhow::bail!("--resume uses the run's own config.toml; drop --config");
            }
            let run = RunDir::open(dir)?;
            let loaded = load_config(Some(&run.file("config.toml")))?;
            Ok((loaded, Some(run)))
        }
        None => Ok((load_config(config)?, None)),
    }
}

/// Flags of a training command: the common ones plus epochs, resume and pause.
#[derive(Args, Clone, Debug, Default)]
pub struct TrainArgs {
    /// Config, data, device, seed and output flags.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Epochs (overrides the config).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Continue the run in this directory from its last checkpoint.
    #[arg(long, value_name = "RUN")]
    pub resume: Option<PathBuf>,
    /// Stop after this epoch (checkpointed, as if killed); continue later with --resume.
    #[arg(long, value_name = "EPOCH")]
    pub pause_after: Option<usize>,
}

/// A run config with a seed and training settings that flags can override.
pub trait TrainConfig: DeserializeOwned + Default {
    /// The run's seed.
    fn seed_mut(&mut self) -> &mut u64;
    /// The training settings.
    fn train_mut(&mut self) -> &mut kiln_train::trainer::TrainSettings;
}

/// The config of a new or resumed run (see [`config_or_resume`]) with `--seed`, `--epochs`,
/// `--pause-after` and a mixed `--precision` applied and the training settings validated.
pub fn resolve_training<T: TrainConfig>(args: &TrainArgs) -> Result<(T, Option<RunDir>)> {
    let (mut config, run): (T, _) =
        config_or_resume(args.common.config.as_deref(), args.resume.as_deref())?;
    if let Some(seed) = args.common.seed {
        *config.seed_mut() = seed;
    }
    let train = config.train_mut();
    if let Some(epochs) = args.epochs {
        train.epochs = epochs;
    }
    train.pause_after = args.pause_after;
    if let Some(mixed) = args.common.precision.mixed() {
        train.mixed_precision = Some(mixed);
    }
    train.validate()?;
    Ok((config, run))
}

/// The resolved config as TOML, as written into the run directory.
pub fn to_toml(config: &impl Serialize) -> Result<String> {
    toml::to_string_pretty(config).context("cannot serialise the resolved config")
}

/// Creates the run directory: `--out` when given, else `runs/<command>-<UTC time>`.
pub fn create_run(out: Option<&Path>, command: &str, config: &impl Serialize) -> Result<RunDir> {
    let path = out.map(Path::to_path_buf).unwrap_or_else(|| {
        PathBuf::from("runs").join(format!("{command}-{}", kiln_train::timestamp()))
    });
    Ok(RunDir::create(&path, &to_toml(config)?)?)
}

/// The data set of a training run: `--data`, else the config's path (`hint` says what to give
/// when neither is set), made absolute so that a resumed run finds it from any folder.
pub fn training_data(flag: Option<&Path>, config: Option<&Path>, hint: &str) -> Result<PathBuf> {
    let path = flag
        .or(config)
        .map(Path::to_path_buf)
        .with_context(|| format!("no data set: give {hint}"))?;
    Ok(std::path::absolute(&path).unwrap_or(path))
}

/// The run directory of a training command (the resumed one, or a new one as [`create_run`]
/// makes it, announced on stderr) and whether it resumes.
pub fn training_run(
    resumed: Option<RunDir>,
    out: Option<&Path>,
    command: &str,
    config: &impl Serialize,
) -> Result<(RunDir, bool)> {
    let resume = resumed.is_some();
    let run = match resumed {
        Some(run) => run,
        None => create_run(out, command, config)?,
    };
    eprintln!("run directory: {}", run.path().display());
    Ok((run, resume))
}

/// The dataset path to use: `--data`, else the config's `data`, else the default dataset
/// (CIFAR-10 from the cache, downloaded on first use; Debian's Fashion-MNIST offline).
pub fn resolve_data(flag: Option<&Path>, config: Option<&Path>) -> Result<PathBuf> {
    match flag.or(config) {
        Some(path) => Ok(path.to_path_buf()),
        None => Ok(kiln_data::default_dataset_dir()?),
    }
}

/// Finds (`--data`, config, default) and opens the dataset, saying what it loads and how long
/// it took.
pub fn open_data(
    flag: Option<&Path>,
    config: Option<&Path>,
    resize: Option<[usize; 2]>,
) -> Result<(PathBuf, kiln_data::TrainTest)> {
    let path = resolve_data(flag, config)?;
    // Absolute, so that the run's config.toml finds the data again from any directory (a
    // resumed run reads it from there).
    let path = std::path::absolute(&path).unwrap_or(path);
    let options = kiln_data::ImageFolderOptions {
        resize: resize.map(|[w, h]| (w, h)),
        ..Default::default()
    };
    eprintln!("loading {} …", path.display());
    let started = std::time::Instant::now();
    let data = kiln_data::open_dataset(&path, &options)?;
    eprintln!(
        "loaded {}: {} training and {} test images of {}x{}x{} in {:.1} s",
        data.name,
        data.train.len(),
        data.test.as_ref().map_or(0, |t| t.len()),
        data.train.width,
        data.train.height,
        data.train.channels,
        started.elapsed().as_secs_f64()
    );
    Ok((path, data))
}

/// Reports a run that stopped early (`--pause-after`) and how to continue it.
pub fn paused(epoch: usize, epochs: usize, run: &RunDir) -> Result<()> {
    println!(
        "paused after epoch {epoch} of {epochs}; continue with --resume {}",
        run.path().display()
    );
    Ok(())
}

/// A binary's error as kiln-train's, for closures the library calls (search trials).
pub fn invalid(error: anyhow::Error) -> kiln_train::TrainError {
    kiln_train::TrainError::Invalid(format!("{error:#}"))
}

/// The published test split, or an error saying the dataset has none.
pub fn require_test(data: &kiln_data::TrainTest, path: &Path) -> Result<kiln_data::ImageSet> {
    data.test.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "{} has no test split; give a dataset with one (ImageFolder: add test/<class>/…)",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Example {
        seed: u64,
        name: String,
    }

    #[test]
    fn configs_load_and_report_errors_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.toml");
        std::fs::write(&good, "seed = 3\n").unwrap();
        let loaded: Example = load_config(Some(&good)).unwrap();
        assert_eq!(
            loaded,
            Example {
                seed: 3,
                name: String::new()
            }
        );
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "sede = 3\n").unwrap();
        let err = format!("{:#}", load_config::<Example>(Some(&bad)).unwrap_err());
        assert!(err.contains("bad.toml") && err.contains("sede"), "{err}");
        let missing = dir.path().join("missing.toml");
        let err = format!("{:#}", load_config::<Example>(Some(&missing)).unwrap_err());
        assert!(err.contains("missing.toml"));
        assert_eq!(load_config::<Example>(None).unwrap(), Example::default());
    }

    #[test]
    fn run_directories_hold_the_resolved_config() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        let run = create_run(
            Some(&out),
            "test",
            &Example {
                seed: 9,
                name: "x".into(),
            },
        )
        .unwrap();
        let text = std::fs::read_to_string(run.file("config.toml")).unwrap();
        assert!(text.contains("seed = 9"));
    }
}
