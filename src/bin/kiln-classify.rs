//! `kiln-classify`: what an ImageNet-pretrained network sees in photos.
//!
//! `kiln-classify --weights FILE|NAME IMAGE…` prints the top-5 ImageNet classes of each image
//! (short side resized, centre crop, ImageNet normalisation, as the weights expect).
//! `kiln-classify --weights FILE --reference REF.safetensors` runs the reference file's `input`
//! and prints the largest relative error against its `logits` (and `features`), exiting non-zero
//! above the tolerance: the check that a port computes what PyTorch computes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use clap::Parser;

use kiln::backend;
use kiln::cli::{SHARED_ENV, finish};
use kiln_data::presets::{ClassificationPreset, read_class_names};
use kiln_nets::Network;
use kiln_nets::download::resolve_weights;
use kiln_nets::parity::compare_with_reference;

#[derive(Parser, Debug)]
#[command(version, about = "Top-5 ImageNet predictions of a pretrained network")]
struct Cli {
    /// Weights: a PyTorch `.pth` state dict (architecture detected), or a published name
    /// (resnet18, resnet34, resnet50: downloaded once into the cache; efficientnet-lite0:
    /// from $KILN_SHARED/pretrained).
    #[arg(long, value_name = "FILE|NAME")]
    weights: String,
    /// Images to classify (JPEG or PNG).
    #[arg(value_name = "IMAGE")]
    images: Vec<PathBuf>,
    /// Class names, one a line (default: $KILN_SHARED/pretrained/imagenet-classes.txt).
    #[arg(long, value_name = "FILE")]
    classes: Option<PathBuf>,
    /// How many classes to print per image.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// Images per forward pass.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Compare with a PyTorch reference (safetensors with `input`, `logits`, optionally
    /// `features`) instead of classifying images.
    #[arg(long, value_name = "FILE")]
    reference: Option<PathBuf>,
    /// Largest relative error `--reference` accepts.
    #[arg(long, default_value_t = 1e-4)]
    tolerance: f32,
    /// Compute device: auto, flex, ndarray, wgpu or wgpu:N.
    #[arg(long, value_name = "NAME")]
    device: Option<String>,
}

fn main() -> std::process::ExitCode {
    kiln::alloc::tune_allocator();
    finish(run(Cli::parse()))
}

fn run(cli: Cli) -> Result<()> {
    if cli.reference.is_none() && cli.images.is_empty() {
        bail!("give images to classify, or --reference FILE to check against PyTorch");
    }
    if cli.top == 0 || cli.batch == 0 {
        bail!("--top and --batch must be positive");
    }
    if !(cli.tolerance >= 0.0 && cli.tolerance.is_finite()) {
        bail!(
            "--tolerance {} must be a non-negative number",
            cli.tolerance
        );
    }
    let device = backend::device(cli.device.as_deref())?;
    let (arch, weights) = resolve_weights(&cli.weights)?;
    let net = arch.load(&weights, &device)?.valid();
    eprintln!("{arch} from {}", weights.display());
    match &cli.reference {
        Some(reference) => compare(&net, reference, cli.tolerance, &device),
        None => {
            let (resize_size, crop_size) = arch.eval_sizes();
            let preset = ClassificationPreset {
                resize_size,
                crop_size,
                ..ClassificationPreset::imagenet()
            };
            classify(&cli, &net, preset, &device)
        }
    }
}

fn compare(net: &Network, reference: &Path, tolerance: f32, device: &Device) -> Result<()> {
    let errors = compare_with_reference(net, reference, device)?;
    println!("logits   max relative error {:.3e}", errors.logits);
    if let Some(features) = errors.features {
        println!("features max relative error {features:.3e}");
    }
    let worst = errors.worst();
    // A NaN error (NaN weights or outputs) fails too.
    if worst.is_nan() || worst > tolerance {
        bail!("largest relative error {worst:.3e} is above the tolerance {tolerance:.1e}");
    }
    println!("ok: within {tolerance:.1e}");
    Ok(())
}

fn classify(cli: &Cli, net: &Network, preset: ClassificationPreset, device: &Device) -> Result<()> {
    let names = class_names(cli.classes.as_deref(), net.head().weight.dims()[1])?;
    let side = preset.crop_size;
    for chunk in cli.images.chunks(cli.batch) {
        let mut pixels = Vec::with_capacity(chunk.len() * 3 * side * side);
        for path in chunk {
            pixels.extend(
                preset
                    .load(path)
                    .with_context(|| format!("cannot classify {}", path.display()))?,
            );
        }
        let images = Tensor::<4>::from_data(
            burn::tensor::TensorData::new(pixels, [chunk.len(), 3, side, side]),
            device,
        );
        let probabilities = net
            .probabilities(images)
            .with_context(|| format!("weights {}", cli.weights))?;
        let classes = probabilities.len() / chunk.len();
        for (path, row) in chunk.iter().zip(probabilities.chunks(classes)) {
            println!("{}", path.display());
            let mut order: Vec<usize> = (0..classes).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            for &class in order.iter().take(cli.top) {
                let name = names
                    .as_ref()
                    .and_then(|n| n.get(class))
                    .map_or_else(|| format!("class {class}"), Clone::clone);
                println!("  {:6.2}%  {name}", 100.0 * row[class]);
            }
        }
    }
    Ok(())
}

/// Class names from `--classes`, else the shared ImageNet list when it is there.
/// The names of the network's `classes` classes: `explicit`, else the shared ImageNet list;
/// a file with another number of names is an error.
fn class_names(explicit: Option<&Path>, classes: usize) -> Result<Option<Vec<String>>> {
    let read = |path: &Path| -> Result<Option<Vec<String>>> {
        let names = read_class_names(path)?;
        if names.len() != classes {
            bail!(
                "{} has {} class names but the network has {classes} classes; give the names \
                 of these weights' classes, one a line",
                path.display(),
                names.len()
            );
        }
        Ok(Some(names))
    };
    if let Some(path) = explicit {
        return read(path);
    }
    let shared = kiln::cli::shared_dir();
    let default = shared.join("pretrained/imagenet-classes.txt");
    if default.is_file() {
        read(&default)
    } else {
        eprintln!(
            "note: no class names (pass --classes FILE or set {SHARED_ENV}); printing indices"
        );
        Ok(None)
    }
}
