//! Training throughput of a classifier on random data: the number `kiln-cnn bench` and
//! `kiln-finetune bench` report.

use std::time::Instant;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use kiln_nets::ImageClassifier;
use kiln_nets::autocast::to_device_float;

use crate::mixed::{self, MixedPrecision};
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
    /// Steps per host read of the loss: 1 waits for every step to finish, as a loop that
    /// prints each step's loss does; more lets an asynchronous device (a GPU) queue steps
    /// ahead. The last warm-up step and the last timed step always read, so the timing holds
    /// exactly the timed steps' work.
    pub read_every: usize,
    /// Train in mixed precision ([`crate::mixed`]): f16's loss scaler reads whether the
    /// gradients are finite every step, so then every step waits whatever `read_every` says.
    pub mixed_precision: Option<MixedPrecision>,
}

impl BenchShape {
    fn check(&self) -> Result<()> {
        if self.batch == 0 || self.steps == 0 || self.classes == 0 || self.read_every == 0 {
            return Err(TrainError::Invalid(
                "a benchmark needs a positive batch, step count, class count and read interval"
                    .into(),
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

    /// Whether step `i` (0-based, warm-up included) reads its result back.
    fn reads(&self, i: usize) -> bool {
        let last = self.warmup + self.steps - 1;
        i + 1 == self.warmup
            || i == last
            || (i >= self.warmup && (i + 1 - self.warmup).is_multiple_of(self.read_every))
    }

    /// Seconds of the timed steps of `step`, after the warm-up steps, with a progress bar;
    /// `step` is told whether to read its result (see [`BenchShape::read_every`]).
    fn time(&self, mut step: impl FnMut(bool)) -> f64 {
        let progress = Progress::new((self.warmup + self.steps) as u64, "bench", "step");
        let mut started = Instant::now();
        for i in 0..self.warmup + self.steps {
            if i == self.warmup {
                started = Instant::now();
            }
            step(self.reads(i));
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
/// (learning rate 0.01) on random images, the loss read every [`BenchShape::read_every`] steps.
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
    let mut scaler = shape.mixed_precision.and_then(MixedPrecision::scaler);
    let mut model = Some(model);
    let secs = shape.time(|read| {
        let net = model
            .take()
            .expect("the model is put back after every step");
        let half = shape.mixed_precision.map(MixedPrecision::dtype);
        let scores = mixed::autocast(half, || net.scores(images.clone()));
        let loss = loss_fn.forward(to_device_float(scores), targets.clone());
        model = Some(
            match mixed::gradients(loss.clone(), &net, scaler.as_mut()) {
                Some(grads) => optim.step(0.01, net, grads),
                None => net,
            },
        );
        // Reading the loss waits for the step to finish on asynchronous backends.
        if read {
            let _: f32 = loss.into_scalar();
        }
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
    let secs = shape.time(|_| {
        let _ = model.scores(images.clone()).into_data();
    });
    Ok(shape.per_sec(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(warmup: usize, steps: usize, read_every: usize) -> BenchShape {
        BenchShape {
            batch: 1,
            image: [1, 1, 1],
            classes: 1,
            warmup,
            steps,
            read_every,
            mixed_precision: None,
        }
    }

    /// A mixed-precision bench step runs (half passes, f32 weights, the loss scaler) and is
    /// timed.
    #[test]
    fn mixed_precision_steps_are_timed() {
        let device = Device::flex().autodiff();
        let net = kiln_nets::ConvNetConfig::benchmark(3, 2, [8, 8]).init(&device);
        let shape = BenchShape {
            batch: 2,
            image: [3, 8, 8],
            classes: 2,
            mixed_precision: Some(MixedPrecision::F16),
            ..shape(1, 2, 1)
        };
        let rate = training_images_per_sec(net, &OptimizerConfig::default(), shape, &device)
            .expect("a mixed bench runs");
        assert!(rate.is_finite() && rate > 0.0, "{rate}");
    }

    /// Reads end the warm-up, every `read_every` timed steps, and the last step.
    #[test]
    fn reads_fall_on_the_interval_and_both_ends() {
        let reads = |s: BenchShape| {
            (0..s.warmup + s.steps)
                .filter(|&i| s.reads(i))
                .collect::<Vec<_>>()
        };
        assert_eq!(reads(shape(2, 5, 2)), vec![1, 3, 5, 6]);
        assert_eq!(reads(shape(2, 3, 1)), vec![1, 2, 3, 4]);
        assert_eq!(reads(shape(0, 4, 10)), vec![3]);
        assert!(shape(1, 1, 0).check().is_err());
    }
}
