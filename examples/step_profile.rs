//! Where a training step of the benchmark CNN spends its time: each layer's forward and
//! backward timed in isolation on the default CPU backend, the optimizer step, and the whole
//! step for comparison.
//!
//! `cargo run --release --example step_profile [-- --batch 128 --repeats 5]`

use std::time::Instant;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Int, Tensor};
use kiln_nets::{ConvNet, ConvNetConfig};
use kiln_train::optim::OptimizerConfig;

mod common;
use common::flag;

/// Median milliseconds of `f` over `repeats` runs after one warm-up.
fn millis(repeats: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..repeats)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Forward and forward+backward times of `layer` on an input of `shape`.
fn profile(
    repeats: usize,
    shape: [usize; 4],
    device: &Device,
    layer: impl Fn(Tensor<4>) -> Tensor<4>,
) -> (f64, f64) {
    let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), device).require_grad();
    let forward = millis(repeats, || {
        let _: f32 = layer(x.clone()).sum().into_scalar();
    });
    let both = millis(repeats, || {
        let y = layer(x.clone());
        let grads = y.sum().backward();
        let _ = x.grad(&grads).map(|g| g.into_data());
    });
    (forward, both)
}

fn main() {
    kiln::alloc::tune_allocator();
    let batch = flag("--batch", 128);
    let repeats = flag("--repeats", 5).max(1);
    let device = Device::flex().autodiff();
    device.seed(0);
    let net: ConvNet = ConvNetConfig::benchmark(3, 10, [32, 32]).init(&device);
    println!("benchmark CNN, batch {batch}, flex, median of {repeats} (ms)");
    println!(
        "{:<28} {:>9} {:>9} {:>9}",
        "layer", "forward", "backward", "total"
    );
    let mut total = 0.0;
    let mut row = |name: String, (f, both): (f64, f64)| {
        total += both;
        println!("{name:<28} {f:>9.2} {:>9.2} {both:>9.2}", both - f);
    };
    let mut side = 32;
    let mut channels = 3;
    for (i, conv) in net.convs.iter().enumerate() {
        let out = conv.weight.dims()[0];
        let shape = [batch, channels, side, side];
        row(
            format!("conv {channels}→{out} @{side}²"),
            profile(repeats, shape, &device, |x| conv.forward(x)),
        );
        let shape = [batch, out, side, side];
        let norm = &net.norms[i];
        row(
            format!("batch norm {out} @{side}²"),
            profile(repeats, shape, &device, |x| norm.forward(x)),
        );
        row(
            format!("relu {out} @{side}²"),
            profile(repeats, shape, &device, |x| net.activation.forward(x)),
        );
        row(
            format!("max pool {out} @{side}²"),
            profile(repeats, shape, &device, |x| net.pool.forward(x)),
        );
        side /= 2;
        channels = out;
    }
    let features =
        Tensor::<2>::random([batch, 4096], Distribution::Default, &device).require_grad();
    let head = millis(repeats, || {
        let grads = net.head.forward(features.clone()).sum().backward();
        let _ = features.grad(&grads).map(|g| g.into_data());
    });
    total += head;
    println!("{:<28} {:>29.2}", "linear 4096→10 (fwd+bwd)", head);

    let images = Tensor::<4>::random([batch, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let labels = Tensor::<1, Int>::random([batch], Distribution::Uniform(0.0, 10.0), &device);
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut optim = OptimizerConfig {
        momentum: 0.9,
        nesterov: true,
        ..Default::default()
    }
    .build()
    .expect("valid optimizer");
    let model = net.clone();
    let forward_backward = millis(repeats, || {
        let loss = loss_fn.forward(model.forward(images.clone()), labels.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let _: f32 = loss.into_scalar();
        drop(grads);
    });
    let mut model = net.clone();
    let step = millis(repeats, || {
        let loss = loss_fn.forward(model.forward(images.clone()), labels.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(0.01, model.clone(), grads);
        let _: f32 = loss.into_scalar();
    });
    println!("{:<28} {:>29.2}", "sum of the layers above", total);
    println!(
        "{:<28} {:>29.2}  ({:.0} images/s)",
        "whole step",
        step,
        batch as f64 / step * 1e3
    );
    println!(
        "{:<28} {:>29.2}",
        "optimizer (step − fwd/bwd)",
        step - forward_backward
    );
}
