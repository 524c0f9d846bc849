//! One epoch's numbers as `metrics.jsonl` holds them, and the curves drawn from them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::plot::{LinePlot, Series};
use crate::{Result, RunDir};

/// One epoch's numbers, as written to `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Validation loss.
    pub val_loss: f64,
    /// The task's metrics: `train_<name>` (on augmented batches, in training mode) and
    /// `val_<name>` (e.g. `train_accuracy`, `val_accuracy`), stored beside the other fields.
    #[serde(flatten)]
    pub metrics: BTreeMap<String, f64>,
    /// Learning rate at the end of the epoch.
    pub learning_rate: f64,
    /// Training images per second.
    pub images_per_sec: f64,
    /// Geometric-mean update-to-weight ratio of each weight tensor over the epoch.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub update_ratios: BTreeMap<String, f64>,
}

impl EpochRecord {
    /// The task metric `name` (e.g. `val_accuracy`), if recorded.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics.get(name).copied()
    }

    /// One line for the terminal: losses, every metric in percent, rate and speed.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "epoch {:>3}: train loss {:.4}  val loss {:.4}",
            self.epoch, self.train_loss, self.val_loss
        );
        for (name, value) in &self.metrics {
            line += &format!("  {name} {:.2} %", 100.0 * value);
        }
        line + &format!(
            "  lr {:.2e}  {:.0} img/s",
            self.learning_rate, self.images_per_sec
        )
    }
}

/// Draws `loss.png`, one PNG per task metric (train and validation curves) and, when measured,
/// `update_ratios.png`.
pub(crate) fn plot_history(run: &RunDir, history: &[EpochRecord], loss_name: &str) -> Result<()> {
    let curve = |name: &str, value: &dyn Fn(&EpochRecord) -> Option<f64>| {
        Series::new(
            name,
            history
                .iter()
                .filter_map(|r| value(r).map(|v| (r.epoch as f64, v)))
                .collect(),
        )
    };
    LinePlot {
        title: "loss".into(),
        x_label: "epoch".into(),
        y_label: loss_name.into(),
        series: vec![
            curve("train", &|r| Some(r.train_loss)),
            curve("validation", &|r| Some(r.val_loss)),
        ],
    }
    .save_png(&run.file("loss.png"))?;
    let mut metrics: Vec<&str> = history
        .iter()
        .flat_map(|r| r.metrics.keys())
        .filter_map(|k| k.strip_prefix("val_"))
        .collect();
    metrics.sort();
    metrics.dedup();
    for metric in metrics {
        let (train, val) = (format!("train_{metric}"), format!("val_{metric}"));
        let mut series = Vec::new();
        if history.iter().any(|r| r.metrics.contains_key(&train)) {
            series.push(curve("train", &|r| r.metric(&train)));
        }
        series.push(curve("validation", &|r| r.metric(&val)));
        LinePlot {
            title: metric.into(),
            x_label: "epoch".into(),
            y_label: metric.into(),
            series,
        }
        .save_png(&run.file(&format!("{metric}.png")))?;
    }
    plot_update_ratios(run, history)
}

fn plot_update_ratios(run: &RunDir, history: &[EpochRecord]) -> Result<()> {
    let mut names: Vec<&String> = history
        .iter()
        .flat_map(|r| r.update_ratios.keys())
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Ok(());
    }
    let mut series: Vec<Series> = names
        .iter()
        .map(|&name| {
            Series::new(
                name.as_str(),
                history
                    .iter()
                    .filter_map(|r| {
                        r.update_ratios
                            .get(name)
                            .map(|v| (r.epoch as f64, v.log10()))
                    })
                    .collect(),
            )
        })
        .collect();
    series.push(Series::new(
        "healthy (1e-3)",
        history.iter().map(|r| (r.epoch as f64, -3.0)).collect(),
    ));
    LinePlot {
        title: "update / weight ratio".into(),
        x_label: "epoch".into(),
        y_label: "log10 ‖Δw‖ / ‖w‖".into(),
        series,
    }
    .save_png(&run.file("update_ratios.png"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_metrics_sit_beside_the_fixed_fields_in_json() {
        let record = EpochRecord {
            epoch: 2,
            train_loss: 0.5,
            val_loss: 0.75,
            metrics: [
                ("train_accuracy".to_string(), 0.8),
                ("val_accuracy".into(), 0.7),
            ]
            .into(),
            learning_rate: 0.1,
            images_per_sec: 100.0,
            update_ratios: BTreeMap::new(),
        };
        let json: serde_json::Value = serde_json::to_value(&record).unwrap();
        assert_eq!(json["val_accuracy"], 0.7);
        assert_eq!(json["train_accuracy"], 0.8);
        assert_eq!(json["val_loss"], 0.75);
        assert!(json.get("update_ratios").is_none());
        let back: EpochRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, record);
        assert_eq!(back.metric("val_accuracy"), Some(0.7));
        assert!(record.summary().contains("val_accuracy 70.00 %"));
    }
}
