//! Compares the compiled CPU backends on a 1024×1024 matmul and on training steps of the
//! benchmark CNN (`ConvNetConfig::benchmark`: three conv3×3-BN-ReLU-maxpool blocks, 64/128/256
//! channels, linear 4096→10; SGD with Nesterov momentum, CIFAR-sized inputs).
//!
//! `cargo run --release --features ndarray --example backend_bench -- [--batch 64] [--steps 3]`

use std::time::Instant;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{GradientsParams, SgdConfig, momentum::MomentumConfig};
use burn::tensor::{Device, Distribution, Int, Tensor};
use kiln_nets::{ConvNet, ConvNetConfig};

mod common;
use common::flag;

fn matmul_gflops(device: &Device) -> f64 {
    let a = Tensor::<2>::random([1024, 1024], Distribution::Default, device);
    let b = Tensor::<2>::random([1024, 1024], Distribution::Default, device);
    let _ = a.clone().matmul(b.clone()).into_data();
    let reps = 10;
    let started = Instant::now();
    for _ in 0..reps {
        let _ = a.clone().matmul(b.clone()).into_data();
    }
    let secs = started.elapsed().as_secs_f64() / reps as f64;
    2.0 * 1024f64.powi(3) / secs / 1e9
}

fn cnn_images_per_sec(device: &Device, batch: usize, steps: usize) -> f64 {
    let device = device.clone().autodiff();
    device.seed(0);
    let mut model = ConvNetConfig::benchmark(3, 10, [32, 32]).init(&device);
    let mut optim = SgdConfig::new()
        .with_momentum(Some(
            MomentumConfig::new()
                .with_nesterov(true)
                .with_dampening(0.0),
        ))
        .init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let images = Tensor::<4>::random([batch, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let targets = Tensor::<1, Int>::random([batch], Distribution::Uniform(0.0, 10.0), &device);
    let mut step = |model: ConvNet| {
        let loss = loss_fn.forward(model.forward(images.clone()), targets.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let model = optim.step(0.01, model, grads);
        let _ = loss.into_data();
        model
    };
    model = step(model); // warm-up
    let started = Instant::now();
    for _ in 0..steps {
        model = step(model);
    }
    (batch * steps) as f64 / started.elapsed().as_secs_f64()
}

fn main() -> anyhow::Result<()> {
    kiln::alloc::tune_allocator();
    let batch = flag("--batch", 64);
    let steps = flag("--steps", 3);
    println!("backend   matmul 1024² (GFLOP/s)   CNN train (images/s, batch {batch})");
    for name in ["flex", "ndarray"] {
        let Ok(device) = kiln::backend::device(Some(name)) else {
            println!("{name:<9} not compiled (add --features {name})");
            continue;
        };
        let gflops = matmul_gflops(&device);
        let rate = cnn_images_per_sec(&device, batch, steps);
        println!("{name:<9} {gflops:>22.1}   {rate:>22.1}");
    }
    Ok(())
}
