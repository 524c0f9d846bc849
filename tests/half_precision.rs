//! `--precision f16` on the CPU: every tensor of the device is half (weights, activations,
//! gradients, optimizer state), and a short training run of the benchmark net learns what the
//! same run in f32 learns. One file of its own: a device's float type is fixed for the process.

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{DType, Device, Int, Tensor, TensorData};

use kiln::backend::{Precision, device_with};
use kiln_nets::{ConvNetConfig, ImageClassifier};
use kiln_train::optim::OptimizerConfig;

const CLASSES: usize = 4;
const IMAGES: usize = 64;
const SIDE: usize = 8;

/// Images whose class is the brighter quadrant, with a fixed pseudo-random texture.
fn quadrant_images() -> (Vec<f32>, Vec<i64>) {
    let mut pixels = Vec::with_capacity(IMAGES * 3 * SIDE * SIDE);
    let mut labels = Vec::with_capacity(IMAGES);
    let mut state = 12345u32;
    for i in 0..IMAGES {
        let class = i % CLASSES;
        labels.push(class as i64);
        for _channel in 0..3 {
            for y in 0..SIDE {
                for x in 0..SIDE {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    let noise = (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                    let quadrant = (y / (SIDE / 2)) * 2 + x / (SIDE / 2);
                    let bright = if quadrant == class { 1.0 } else { 0.0 };
                    pixels.push(bright + 0.5 * noise);
                }
            }
        }
    }
    (pixels, labels)
}

/// Losses of 30 full-batch SGD steps of the benchmark net on `device`, the final training
/// accuracy, and the float type of the trained weights.
fn train(device: &Device) -> (Vec<f64>, f64, DType) {
    let device = device.clone().autodiff();
    device.seed(7);
    let (pixels, labels) = quadrant_images();
    let images = Tensor::<4>::from_data(TensorData::new(pixels, [IMAGES, 3, SIDE, SIDE]), &device);
    let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [IMAGES]), &device);
    let mut model = ConvNetConfig::benchmark(3, CLASSES, [SIDE, SIDE]).init(&device);
    let mut optim = OptimizerConfig {
        momentum: 0.9,
        ..Default::default()
    }
    .build()
    .unwrap();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut losses = Vec::new();
    for _ in 0..30 {
        let loss = loss_fn.forward(model.scores(images.clone()), targets.clone());
        losses.push(loss.clone().into_scalar::<f64>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(0.02, model, grads);
    }
    let predicted = model
        .valid()
        .scores(images.valid())
        .argmax(1)
        .squeeze_dim::<1>(1);
    let hits: i64 = predicted
        .equal(targets.valid())
        .int()
        .sum()
        .into_scalar::<i64>();
    let mut dtypes = FloatTypes(Vec::new());
    model.visit(&mut dtypes);
    dtypes.0.dedup();
    assert_eq!(
        dtypes.0.len(),
        1,
        "one float type for all weights: {:?}",
        dtypes.0
    );
    (losses, hits as f64 / IMAGES as f64, dtypes.0[0])
}

/// The float types of a model's parameters.
struct FloatTypes(Vec<DType>);

impl ModuleVisitor for FloatTypes {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.val().dtype());
    }
}

#[test]
fn half_precision_trains_like_f32() {
    let half = device_with(Some("flex"), Precision::F16).expect("flex supports f16");
    let x = Tensor::<2>::from_floats([[1.0, 2.0]], &half);
    assert_eq!(
        x.dtype(),
        DType::F16,
        "new tensors take the device's precision"
    );
    let (losses, accuracy, dtype) = train(&half);
    assert_eq!(dtype, DType::F16, "the weights are half");
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    assert!(
        losses[29] < 0.5 * losses[0] && accuracy >= 0.9,
        "f16 did not learn the quadrants: losses {losses:?}, accuracy {accuracy}"
    );
    #[cfg(feature = "ndarray")]
    {
        #[allow(deprecated)]
        let (full_losses, full_accuracy, full_dtype) = train(&Device::ndarray());
        assert_eq!(full_dtype, DType::F32);
        assert!(
            (accuracy - full_accuracy).abs() <= 0.1,
            "f16 {accuracy} vs f32 {full_accuracy}"
        );
        for (step, (h, f)) in losses.iter().zip(&full_losses).enumerate().step_by(5) {
            assert!(
                (h - f).abs() <= 0.05 + 0.1 * f,
                "step {step}: f16 loss {h} vs f32 {f}"
            );
        }
    }
}
