//! `kiln-cnn bench`: training images per second of the convolution benchmark nets, with the
//! update rule of their PyTorch anchor (`benches/bench_net_torch.py`).

use anyhow::Result;
use burn::tensor::Device;
use clap::ValueEnum;

use crate::backend::{Precision, compiled_backends};
use kiln_nets::{AirbenchConfig, ConvNetConfig};
use kiln_train::bench::{BenchShape, training_images_per_sec};
use kiln_train::mixed::MixedPrecision;
use kiln_train::optim::OptimizerConfig;

/// The networks `kiln-cnn bench` times, on 32×32 RGB images and 10 classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchNet {
    /// conv-BN-ReLU-pool × 3 (64/128/256) + linear: the convolution issue's net.
    Benchmark,
    /// The airbench94 network (64/256/256).
    Airbench,
}

/// How `kiln-cnn bench` times a net.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchRun {
    /// Which network.
    pub net: BenchNet,
    /// Timed steps.
    pub steps: usize,
    /// Untimed steps first (kernel compilation, allocator warm-up).
    pub warmup: usize,
    /// Steps per read of the loss (1: every step waits for the last, as PyTorch's anchor
    /// does by default).
    pub read_every: usize,
    /// Mixed-precision steps (`--precision f16-mixed` / `bf16-mixed`).
    pub mixed_precision: Option<MixedPrecision>,
}

/// Training images per second of `run.net` on `device` at `batch` images a step: the timed
/// steps after the untimed ones, SGD with Nesterov momentum 0.9 and weight decay 5e-4, seed 0.
pub fn training_speed(run: BenchRun, batch: usize, device: &Device) -> Result<f64> {
    let device = device.clone().autodiff();
    device.seed(0);
    let shape = BenchShape {
        batch,
        image: [3, 32, 32],
        classes: 10,
        warmup: run.warmup,
        steps: run.steps,
        read_every: run.read_every,
        mixed_precision: run.mixed_precision,
    };
    let nesterov = OptimizerConfig {
        momentum: 0.9,
        nesterov: true,
        weight_decay: 5e-4,
        ..Default::default()
    };
    let per_sec = match run.net {
        BenchNet::Benchmark => training_images_per_sec(
            ConvNetConfig::benchmark(3, 10, [32, 32]).init(&device),
            &nesterov,
            shape,
            &device,
        ),
        BenchNet::Airbench => training_images_per_sec(
            AirbenchConfig::new().init(&device),
            &nesterov,
            shape,
            &device,
        ),
    }?;
    Ok(per_sec)
}

/// Times `run` at each of `batches` on `device` (asked for as `device_name`, at `precision`),
/// printing one line a batch.
pub fn print_training_speeds(
    run: BenchRun,
    batches: &[usize],
    precision: Precision,
    device_name: &str,
    device: &Device,
) -> Result<()> {
    let backends = compiled_backends();
    for &batch in batches {
        let per_sec = training_speed(run, batch, device)?;
        println!(
            "{:?} net, batch {batch}, device {device_name} ({backends:?}), {precision:?}, loss \
             read every {} steps: {per_sec:.0} training images/s",
            run.net, run.read_every
        );
    }
    Ok(())
}
