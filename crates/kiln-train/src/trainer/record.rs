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
    /// The f16 mixed-precision loss scale at the end of the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f64>,
    /// Steps the optimizer skipped because their scaled gradients overflowed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped_steps: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
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
        if let Some(scale) = self.loss_scale {
            line += &format!("  loss scale {scale}");
        }
        if self.skipped_steps > 0 {
            line += &format!(" ({} steps skipped)", self.skipped_steps);
        }
        line + &format!(
            "  lr {:.2e}  {} img/s",
            self.learning_rate,
            three_figures(self.images_per_sec)
        )
    }
}

/// `value` with about three significant figures: `12345`, `123`, `12.3`, `0.853` (a slow
/// detector's epoch rate would read 0 rounded to whole images).
fn three_figures(value: f64) -> String {
    let decimals = if value.abs() >= 100.0 || value == 0.0 {
        0
    } else {
        (2 - value.abs().log10().floor() as i64).clamp(0, 6) as usize
    };
    format!("{value:.decimals$}")
}

/// Makes `metrics.jsonl` agree with `history` (the epochs the resumed checkpoint holds): a run
/// killed after logging an epoch but before its checkpoint was named would otherwise log that
/// epoch twice, once before the kill and once when it is trained again. Epoch records are
/// replaced by `history`'s (those past it dropped, missing ones added); other records stay.
pub(crate) fn restore_log(run: &RunDir, history: &[EpochRecord]) -> Result<()> {
    let path = run.metrics().path().to_path_buf();
    let old = if path.is_file() {
        crate::read_metrics(&path)?
    } else {
        Vec::new()
    };
    let mut lines = Vec::with_capacity(old.len().max(history.len()));
    let mut written = 0;
    for value in old {
        match value.get("epoch").and_then(|e| e.as_u64()) {
            Some(epoch) if value.get("train_loss").is_some() => {
                let epoch = epoch as usize;
                if epoch == written + 1 && epoch <= history.len() {
                    lines.push(
                        serde_json::to_string(&history[epoch - 1]).expect("records serialise"),
                    );
                    written = epoch;
                }
            }
            _ => lines.push(value.to_string()),
        }
    }
    for record in &history[written..] {
        lines.push(serde_json::to_string(record).expect("records serialise"));
    }
    let mut text = lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    crate::write_atomic(&path, text.as_bytes())
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
            loss_scale: None,
            skipped_steps: 0,
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
        let rates = [12_345.4, 123.4, 12.34, 0.8534, 0.0].map(three_figures);
        assert_eq!(rates, ["12345", "123", "12.3", "0.853", "0"]);
    }

    fn record(epoch: usize) -> EpochRecord {
        EpochRecord {
            epoch,
            train_loss: epoch as f64,
            val_loss: 0.5,
            metrics: BTreeMap::new(),
            learning_rate: 0.1,
            images_per_sec: 1.0,
            update_ratios: BTreeMap::new(),
            loss_scale: None,
            skipped_steps: 0,
        }
    }

    #[test]
    fn a_resumed_log_holds_each_checkpointed_epoch_once() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(&dir.path().join("run"), "x = 1\n").unwrap();
        // Killed after logging epoch 3 whose checkpoint was never named; an earlier note stays.
        for value in [
            serde_json::to_value(record(1)).unwrap(),
            serde_json::json!({"note": "kept"}),
            serde_json::to_value(record(2)).unwrap(),
            serde_json::to_value(record(3)).unwrap(),
        ] {
            run.metrics().append(&value).unwrap();
        }
        restore_log(&run, &[record(1), record(2)]).unwrap();
        let lines = crate::read_metrics(&run.file("metrics.jsonl")).unwrap();
        let epochs: Vec<Option<u64>> = lines.iter().map(|l| l["epoch"].as_u64()).collect();
        assert_eq!(epochs, [Some(1), None, Some(2)]);
        assert_eq!(lines[1]["note"], "kept");
        // An epoch the log lost is written back from the checkpoint's history.
        restore_log(&run, &[record(1), record(2), record(3)]).unwrap();
        let lines = crate::read_metrics(&run.file("metrics.jsonl")).unwrap();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[3]["epoch"], 3);
    }
}
