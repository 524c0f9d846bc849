//! Training throughput of a classifier on random data: the number `kiln-cnn bench` and
//! `kiln-finetune bench` report.

use std::time::Instant;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use kiln_nets::ImageClassifier;

use crate::optim::OptimizerConfig;
use crate::{Progress, Result, TrainError};

/// The shape of a throughput measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchShape {
    /// Images per step.
    pub batch: usize,
    /// Channels, height and width of the random images.
    pub image: [usize; 3],
    /// Classes of the random labels.
    pub classes: usize,
    /// Untimed steps first (kernel compilation, allocator warm-up).
    pub warmup: usize,
    /// Timed steps.
    pub steps: usize,
}

impl BenchShape {
    fn check(&self) -> Result<()> {
        if self.batch == 0 || self.steps == 0 || self.classes == 0 {
            return Err(TrainError::Invalid(
                "a benchmark needs a positive batch, step count and class count".into(),
            ));
        }
        Ok(())
    }

    fn images(&self, device: &Device) -> Tensor<4> {
        let [c, h, w] = self.image;
        Tensor::random(
            [self.batch, c, h, w],
            Distribution::Normal(0.0, 1.0),
            device,
        )
    }

    /// Seconds of the timed steps of `step`, after the warm-up steps, with a progress bar.
    fn time(&self, mut step: impl FnMut()) -> f64 {
        let progress = Progress::new((self.warmup + self.steps) as u64, "bench", "step");
        let mut started = Instant::now();
        for i in 0..self.warmup + self.steps {
            if i == self.warmup {
                started = Instant::now();
            }
            step();
            progress.inc(1);
        }
        let secs = started.elapsed().as_secs_f64();
        progress.finish();
        secs
    }

    fn per_sec(&self, secs: f64) -> f64 {
        (self.steps * self.batch) as f64 / secs.max(1e-9)
    }
}

/// Training images per second of `model` (on the autodiff `device`): steps of `optimizer`
/// (learning rate 0.01) on random images, each step finished (its loss read) before the next.
pub fn training_images_per_sec<M: ImageClassifier>(
    model: M,
    optimizer: &OptimizerConfig,
    shape: BenchShape,
    device: &Device,
) -> Result<f64> {
    shape.check()?;
    let images = shape.images(device);
    let labels: Vec<i64> = (0..shape.batch)
        .map(|i| (i % shape.classes) as i64)
        .collect();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [shape.batch]), device);
    let mut optim = optimizer.build()?;
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let mut model = Some(model);
    let secs = shape.time(|| {
        let net = model
            .take()
            .expect("the model is put back after every step");
        let loss = loss_fn.forward(net.scores(images.clone()), targets.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        model = Some(optim.step(0.01, net, grads));
        // Reading the loss waits for the step to finish on asynchronous backends.
        let _: f32 = loss.into_scalar();
    });
    Ok(shape.per_sec(secs))
}

/// Inference images per second of `model` (switched to evaluation mode) on random images,
/// each batch's scores read back.
pub fn inference_images_per_sec<M: ImageClassifier>(
    model: &M,
    shape: BenchShape,
    device: &Device,
) -> Result<f64> {
    shape.check()?;
    let model = model.valid();
    let images = shape.images(device);
    let secs = shape.time(|| {
        let _ = model.scores(images.clone()).into_data();
    });
    Ok(shape.per_sec(secs))
}
