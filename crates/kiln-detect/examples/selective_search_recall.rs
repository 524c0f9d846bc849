//! Selective search recall and speed on a VOC data set, optionally beside OpenCV's.
//!
//! ```text
//! python3 benches/selective_search_opencv.py \
//!     $KILN_SHARED/datasets/raccoon-voc.tar.gz --out /tmp/opencv-ss.json
//! cargo run --release -p kiln-detect --example selective_search_recall -- \
//!     $KILN_SHARED/datasets/raccoon-voc.tar.gz --opencv /tmp/opencv-ss.json \
//!     --threads 1,2 --plot /tmp/ss-recall.png
//! ```
//!
//! Options: `--split train|test` (default train), `--threads 1,2` (one timed run per count, each
//! with an empty cache), `--config FILE.toml` (a `SelectiveSearchConfig`; default fast mode),
//! `--limit N` (first N images), `--opencv FILE` (the JSON the Python benchmark wrote: its boxes
//! are scored with the same code), `--plot FILE.png` (recall against proposals at IoU 0.5 and
//! 0.7), `--cache DIR` (keep the proposals there; default a temporary folder per run).
//! Prints one JSON object: per implementation, the recall table, the median number of
//! proposals and seconds per image.

use std::collections::HashMap;
use std::path::PathBuf;

use kiln_detect::data::{BoundingBox, LoadOptions, load_detection_data};
use kiln_detect::proposals::{
    RecallCurve, RecallTable, SelectiveSearchConfig, ground_truth_boxes, proposal_recall,
    propose_for_set_timed, recall_curve, save_recall_plot,
};
use serde_json::{Value, json};

const TOP_NS: [usize; 4] = [100, 300, 1000, 2000];
const IOUS: [f32; 2] = [0.5, 0.7];

struct Args {
    dataset: PathBuf,
    split: String,
    threads: Vec<usize>,
    config: SelectiveSearchConfig,
    limit: Option<usize>,
    opencv: Option<PathBuf>,
    plot: Option<PathBuf>,
    cache: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        dataset: PathBuf::new(),
        split: "train".into(),
        threads: vec![1],
        config: SelectiveSearchConfig::default(),
        limit: None,
        opencv: None,
        plot: None,
        cache: None,
    };
    let mut dataset = None;
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--split" => parsed.split = value()?,
            "--threads" => {
                parsed.threads = value()?
                    .split(',')
                    .map(|t| t.trim().parse().map_err(|e| format!("--threads: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--config" => {
                let path = value()?;
                let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
                parsed.config = toml::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
            }
            "--limit" => {
                parsed.limit = Some(value()?.parse().map_err(|e| format!("--limit: {e}"))?)
            }
            "--opencv" => parsed.opencv = Some(value()?.into()),
            "--plot" => parsed.plot = Some(value()?.into()),
            "--cache" => parsed.cache = Some(value()?.into()),
            other if other.starts_with("--") => return Err(format!("unknown option {other}")),
            other => dataset = Some(PathBuf::from(other)),
        }
    }
    parsed.dataset = dataset.ok_or("give the data set (a VOC folder or .tar.gz)")?;
    Ok(parsed)
}

fn table_json(table: &RecallTable) -> Value {
    let rows: serde_json::Map<String, Value> = table
        .iou_thresholds
        .iter()
        .zip(&table.recall)
        .map(|(t, row)| {
            let rounded: Vec<f64> = row.iter().map(|r| (r * 1000.0).round() / 1000.0).collect();
            (format!("{t}"), json!(rounded))
        })
        .collect();
    json!({
        "top_ns": table.top_ns,
        "recall": rows,
        "gt_boxes": table.gt_boxes,
        "images": table.images,
        "median_proposals": table.median_proposals,
    })
}

/// Boxes per image file name.
type BoxesByName = HashMap<String, Vec<BoundingBox>>;

/// OpenCV's boxes per image (by file name) and seconds per image from the benchmark's JSON.
fn read_opencv(path: &PathBuf) -> Result<(BoxesByName, Vec<f64>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let value: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut boxes = HashMap::new();
    let mut seconds = Vec::new();
    for image in value["per_image"].as_array().ok_or("no per_image list")? {
        let name = image["file"]
            .as_str()
            .ok_or("image without file")?
            .to_string();
        seconds.push(image["seconds"].as_f64().unwrap_or(f64::NAN));
        let list = image["boxes"]
            .as_array()
            .ok_or("image without boxes")?
            .iter()
            .filter_map(|b| {
                let v: Vec<f32> = b
                    .as_array()?
                    .iter()
                    .filter_map(|x| x.as_f64())
                    .map(|x| x as f32)
                    .collect();
                (v.len() == 4).then(|| BoundingBox {
                    x1: v[0],
                    y1: v[1],
                    x2: v[2],
                    y2: v[3],
                })
            })
            .collect();
        boxes.insert(name, list);
    }
    Ok((boxes, seconds))
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), String> {
    let splits =
        load_detection_data(&args.dataset, &LoadOptions::default()).map_err(|e| e.to_string())?;
    let mut set = match args.split.as_str() {
        "train" => splits.train,
        "test" => splits.test,
        other => return Err(format!("--split {other}: use train or test")),
    };
    if let Some(limit) = args.limit {
        set.images.truncate(limit);
    }
    let gt = ground_truth_boxes(&set);
    let mut out = serde_json::Map::new();
    let mut curves: Vec<RecallCurve> = Vec::new();
    let curve_ns: Vec<usize> = (1..=200).map(|i| i * 10).collect();
    let mut kiln = serde_json::Map::new();
    let mut boxes = None;
    for &threads in &args.threads {
        let temp = tempfile::tempdir().map_err(|e| e.to_string())?;
        let cache = args
            .cache
            .clone()
            .unwrap_or_else(|| temp.path().to_path_buf());
        let run = propose_for_set_timed(&set, &args.config, &cache, threads, |done| {
            if done % 20 == 0 {
                eprintln!(
                    "kiln, {threads} thread(s): {done}/{} images",
                    set.images.len()
                );
            }
        })
        .map_err(|e| e.to_string())?;
        let n = set.images.len().max(1) as f64;
        kiln.insert(
            format!("threads_{threads}"),
            json!({
                "seconds_per_image": run.mean_seconds(),
                "wall_seconds_per_image": run.wall_seconds / n,
                "cached_images": run.cached.iter().filter(|c| **c).count(),
            }),
        );
        boxes.get_or_insert(run.boxes);
    }
    if let Some(boxes) = &boxes {
        let table = proposal_recall(&gt, boxes, &TOP_NS, &IOUS);
        kiln.insert("table".into(), table_json(&table));
        for iou in IOUS {
            curves.push(recall_curve(
                format!("kiln, IoU {iou}"),
                &gt,
                boxes,
                iou,
                &curve_ns,
            ));
        }
    }
    kiln.insert(
        "config".into(),
        serde_json::to_value(&args.config).map_err(|e| e.to_string())?,
    );
    out.insert("kiln".into(), Value::Object(kiln));
    if let Some(path) = &args.opencv {
        let (by_name, seconds) = read_opencv(path)?;
        let boxes: Vec<Vec<BoundingBox>> = set
            .images
            .iter()
            .map(|im| {
                let name = im
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                by_name.get(&name).cloned().unwrap_or_default()
            })
            .collect();
        let missing = set
            .images
            .iter()
            .zip(&boxes)
            .filter(|(_, b)| b.is_empty())
            .count();
        let table = proposal_recall(&gt, &boxes, &TOP_NS, &IOUS);
        let mean = seconds.iter().sum::<f64>() / seconds.len().max(1) as f64;
        out.insert(
            "opencv".into(),
            json!({
                "table": table_json(&table),
                "seconds_per_image": mean,
                "images_without_boxes": missing,
            }),
        );
        for iou in IOUS {
            curves.push(recall_curve(
                format!("OpenCV, IoU {iou}"),
                &gt,
                &boxes,
                iou,
                &curve_ns,
            ));
        }
    }
    if let Some(path) = &args.plot {
        save_recall_plot(path, "Selective search recall (raccoon)", &curves)
            .map_err(|e| e.to_string())?;
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&Value::Object(out)).map_err(|e| e.to_string())?
    );
    Ok(())
}
