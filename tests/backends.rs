//! kiln-data batches train a small CNN on every compiled CPU backend: the loss falls and stays
//! finite, and flex and ndarray agree on the first forward pass.

use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Tensor};

use kiln_data::augment::Pipeline;
use kiln_data::{AugmentedImages, ClassificationBatcher, ImageSet, Normalization};

#[derive(Module, Debug)]
struct TinyNet {
    conv: Conv2d,
    relu: Relu,
    head: Linear,
}

impl TinyNet {
    fn new(device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new([3, 4], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .init(device),
            relu: Relu::new(),
            head: LinearConfig::new(4 * 8 * 8, 2).init(device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.head
            .forward(self.relu.forward(self.conv.forward(x)).flatten(1, 3))
    }
}

/// Bright-left images are class 0, bright-right class 1.
fn two_class_images() -> ImageSet {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for i in 0..16 {
        let label = i % 2;
        for _y in 0..8 {
            for x in 0..8 {
                let bright = (x < 4) == (label == 0);
                let v = if bright { 200 + i as u8 } else { 20 + i as u8 };
                pixels.extend([v, v, v]);
            }
        }
        labels.push(label);
    }
    ImageSet::new(8, 8, 3, pixels, labels, vec!["left".into(), "right".into()]).unwrap()
}

fn batch(device: &Device) -> kiln_data::ClassificationBatch {
    let set = Arc::new(two_class_images());
    let data = AugmentedImages::new(set.clone(), Arc::new(Pipeline::default()));
    let items = (0..set.len()).map(|i| data.get(i).unwrap()).collect();
    ClassificationBatcher::new(Normalization::Symmetric).batch(items, device)
}

fn train_losses(device: Device) -> Vec<f32> {
    let device = device.autodiff();
    device.seed(1);
    let mut model = TinyNet::new(&device);
    let mut optim = SgdConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let b = batch(&device);
    let mut losses = Vec::new();
    for _ in 0..30 {
        let loss = loss_fn.forward(model.forward(b.images.clone()), b.targets.clone());
        losses.push(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(0.1, model, grads);
    }
    losses
}

fn compiled() -> Vec<(&'static str, Device)> {
    kiln::backend::compiled_backends()
        .into_iter()
        .filter(|name| *name != "wgpu") // GPU runs are checked by hand, not in CI.
        .map(|name| (name, kiln::backend::device(Some(name)).unwrap()))
        .collect()
}

#[test]
fn every_cpu_backend_learns_from_kiln_batches() {
    for (name, device) in compiled() {
        let losses = train_losses(device);
        let (first, last) = (losses[0], *losses.last().unwrap());
        assert!(losses.iter().all(|l| l.is_finite()), "{name}: {losses:?}");
        assert!(last < 0.5 * first, "{name}: loss {first} -> {last}");
    }
}

#[test]
fn cpu_backends_agree_on_a_forward_pass() {
    let backends = compiled();
    if backends.len() < 2 {
        eprintln!(
            "SKIPPED: only {} CPU backend compiled; build with --features ndarray",
            backends.len()
        );
        return;
    }
    // Same weights on every backend: initialise once, move the parameters as data.
    let reference = TinyNet::new(&backends[0].1);
    let outputs: Vec<Vec<f32>> = backends
        .iter()
        .map(|(_, device)| {
            let model = reference.clone().to_device(device);
            let b = batch(device);
            model
                .forward(b.images)
                .into_data()
                .try_to_vec_as::<f32>()
                .unwrap()
        })
        .collect();
    for (i, out) in outputs.iter().enumerate().skip(1) {
        for (a, b) in outputs[0].iter().zip(out) {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + a.abs()),
                "{} vs {}: {a} {b}",
                backends[0].0,
                backends[i].0
            );
        }
    }
}
