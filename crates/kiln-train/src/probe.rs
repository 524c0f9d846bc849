//! Linear probes: a linear classifier trained on fixed features (a frozen backbone's pooled
//! outputs, computed once), with the same optimizers, schedules, metrics and plots as [`fit`].
//!
//! [`fit`]: crate::trainer::fit

use burn::module::Module;
use burn::nn::Linear;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::trainer::{EpochRecord, TrainSettings, plot_history};
use crate::{Progress, Result, RunDir, TrainError};

/// Fixed feature vectors with their class labels.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureSet {
    /// Row-major `[len, dim]` features.
    pub features: Vec<f32>,
    /// Class of each row.
    pub labels: Vec<usize>,
    /// Length of one feature vector.
    pub dim: usize,
}

impl FeatureSet {
    /// Wraps features and labels, checking that they agree in size.
    pub fn new(features: Vec<f32>, labels: Vec<usize>, dim: usize) -> Result<Self> {
        if dim == 0 || features.len() != labels.len() * dim {
            return Err(TrainError::Invalid(format!(
                "{} feature values do not make {} rows of {dim}",
                features.len(),
                labels.len()
            )));
        }
        Ok(Self {
            features,
            labels,
            dim,
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The rows `indices` as a `[n, dim]` tensor and their labels.
    pub fn batch(&self, indices: &[usize], device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
        let mut values = Vec::with_capacity(indices.len() * self.dim);
        for &i in indices {
            values.extend_from_slice(&self.features[i * self.dim..(i + 1) * self.dim]);
        }
        let labels: Vec<i64> = indices.iter().map(|&i| self.labels[i] as i64).collect();
        (
            Tensor::from_data(TensorData::new(values, [indices.len(), self.dim]), device),
            Tensor::from_data(TensorData::new(labels, [indices.len()]), device),
        )
    }
}

/// Mean cross-entropy and accuracy of `head` on `set`.
pub fn evaluate_probe(
    head: &Linear,
    set: &FeatureSet,
    batch_size: usize,
    device: &Device,
) -> Result<(f64, f64)> {
    let head = head.valid();
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let (mut loss_sum, mut hits) = (0.0, 0usize);
    let order: Vec<usize> = (0..set.len()).collect();
    for chunk in order.chunks(batch_size.max(1)) {
        let (x, y) = set.batch(chunk, device);
        let scores = head.forward(x);
        loss_sum += loss_fn
            .forward(scores.clone(), y.clone())
            .into_scalar::<f64>()
            * chunk.len() as f64;
        let predicted = scores.argmax(1).flatten::<1>(0, 1);
        hits += predicted.equal(y).int().sum().into_scalar::<i64>() as usize;
    }
    let n = set.len().max(1) as f64;
    Ok((loss_sum / n, hits as f64 / n))
}

/// Trains `head` on `train` for `settings.epochs` epochs of shuffled mini-batches, validating
/// on `val` after each, logging to `run` (`metrics.jsonl`, `training.png`); returns the final
/// head and the history.
pub fn fit_linear_probe(
    head: Linear,
    train: &FeatureSet,
    val: &FeatureSet,
    settings: &TrainSettings,
    seed: u64,
    run: &RunDir,
    device: &Device,
) -> Result<(Linear, Vec<EpochRecord>)> {
    settings.validate()?;
    if train.is_empty() || settings.epochs == 0 || settings.batch_size == 0 {
        return Err(TrainError::Invalid(
            "a linear probe needs features, epochs > 0 and batch_size > 0".into(),
        ));
    }
    let [dim, _] = head.weight.dims();
    if dim != train.dim || dim != val.dim {
        return Err(TrainError::Invalid(format!(
            "the head takes {dim} features, the feature sets have {} and {}",
            train.dim, val.dim
        )));
    }
    let train_device = device.clone().autodiff();
    let per_epoch = train.len().div_ceil(settings.batch_size);
    let mut schedule = settings.lr_schedule(per_epoch)?;
    let mut optim = settings.optimizer.build()?;
    let loss_fn = settings.loss(&train_device);
    let mut head = head.fork(&train_device).train();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut history = Vec::new();
    let mut iteration = 0;
    let progress = Progress::new(settings.epochs as u64, "linear probe", "epoch");
    for epoch in 0..settings.epochs {
        order.shuffle(&mut rng);
        let started = std::time::Instant::now();
        let (mut loss_sum, mut hits, mut lr) = (0.0, 0usize, settings.learning_rate);
        for chunk in order.chunks(settings.batch_size) {
            let (x, y) = train.batch(chunk, &train_device);
            let scores = head.forward(x);
            let predicted = scores.clone().argmax(1).flatten::<1>(0, 1);
            hits += predicted.equal(y.clone()).int().sum().into_scalar::<i64>() as usize;
            let loss = loss_fn.forward(scores, y);
            let value = loss.clone().into_scalar::<f64>();
            if !value.is_finite() {
                return Err(TrainError::Invalid(format!(
                    "linear probe loss became {value} in epoch {}; lower the learning rate",
                    epoch + 1
                )));
            }
            loss_sum += value * chunk.len() as f64;
            lr = schedule.lr(iteration);
            let grads = GradientsParams::from_grads(loss.backward(), &head);
            head = optim.step(lr, head, grads);
            iteration += 1;
        }
        let secs = started.elapsed().as_secs_f64();
        let (val_loss, val_accuracy) = evaluate_probe(&head, val, 1024, device)?;
        schedule.observe_validation(val_loss);
        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss: loss_sum / train.len() as f64,
            val_loss,
            metrics: [
                (
                    "train_accuracy".to_string(),
                    hits as f64 / train.len() as f64,
                ),
                ("val_accuracy".to_string(), val_accuracy),
            ]
            .into(),
            learning_rate: lr,
            images_per_sec: train.len() as f64 / secs.max(1e-9),
            update_ratios: Default::default(),
            loss_scale: None,
            skipped_steps: 0,
        };
        progress.inc(1);
        progress.status(format!(
            "loss {:.3} val {:.2} %",
            record.train_loss,
            100.0 * val_accuracy
        ));
        run.metrics().append(&record)?;
        history.push(record);
    }
    progress.finish();
    if let Some(last) = history.last() {
        eprintln!("linear probe: {}", last.summary());
    }
    plot_history(run, &history, "cross-entropy")?;
    Ok((head.valid().fork(device), history))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::OptimizerConfig;
    use burn::nn::LinearConfig;
    use rand::Rng;

    /// Two Gaussian blobs per class in 4-D, linearly separable.
    fn blobs(n: usize, seed: u64) -> FeatureSet {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let centres = [
            [3.0, 0.0, 0.0, 0.0],
            [0.0, 3.0, 0.0, 0.0],
            [0.0, 0.0, 3.0, 0.0],
        ];
        let (mut features, mut labels) = (Vec::new(), Vec::new());
        for i in 0..n {
            let class = i % 3;
            for c in centres[class] {
                features.push(c + rng.random_range(-1.0f32..1.0));
            }
            labels.push(class);
        }
        FeatureSet::new(features, labels, 4).unwrap()
    }

    #[test]
    fn probe_learns_separable_features_and_logs_each_epoch() {
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(&dir.path().join("run"), "").unwrap();
        let settings = TrainSettings {
            epochs: 8,
            batch_size: 16,
            learning_rate: 0.1,
            optimizer: OptimizerConfig::default(),
            ..TrainSettings::default()
        };
        let head = LinearConfig::new(4, 3).init(&device);
        let (train, val) = (blobs(90, 1), blobs(60, 2));
        let (_, before) = evaluate_probe(&head, &val, 32, &device).unwrap();
        let (head, history) =
            fit_linear_probe(head, &train, &val, &settings, 0, &run, &device).unwrap();
        let (_, after) = evaluate_probe(&head, &val, 32, &device).unwrap();
        assert!(after > 0.95 && after > before, "{before} → {after}");
        assert_eq!(history.len(), 8);
        assert!(history[7].train_loss < history[0].train_loss);
        let lines = std::fs::read_to_string(run.metrics().path()).unwrap();
        assert_eq!(lines.lines().count(), 8);
    }

    #[test]
    fn mismatched_sizes_are_errors() {
        assert!(FeatureSet::new(vec![0.0; 7], vec![0, 1], 4).is_err());
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(&dir.path().join("run"), "").unwrap();
        let head = LinearConfig::new(5, 3).init(&device);
        let set = blobs(9, 0);
        let error = fit_linear_probe(
            head,
            &set,
            &set,
            &TrainSettings::default(),
            0,
            &run,
            &device,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("5 features"), "{error}");
    }
}
