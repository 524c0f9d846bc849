//! Evaluates a COCO results file against a COCO instances file with kiln's COCO evaluator and
//! prints pycocotools' 12 summary numbers (`COCOeval.stats`) as a JSON list, for
//! `benches/coco_eval_check.py` to compare with pycocotools. The IoU type is `bbox` (default)
//! or `segm`.
//!
//! ```text
//! cargo run --release -p kiln-detect --example coco_eval -- instances.json results.json [segm]
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kiln_detect::data::{read_coco_instances, read_coco_mask_results, read_coco_results};
use kiln_detect::eval::{evaluate_coco, evaluate_coco_masks};

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let (instances, results, segm) = match args.as_slice() {
        [i, r] => (i, r, false),
        [i, r, t] if t.as_os_str() == "bbox" || t.as_os_str() == "segm" => {
            (i, r, t.as_os_str() == "segm")
        }
        _ => {
            eprintln!("usage: coco_eval INSTANCES.json RESULTS.json [bbox|segm]");
            return ExitCode::from(2);
        }
    };
    let image_dir = instances.parent().unwrap_or(Path::new("."));
    let run = || -> kiln_detect::Result<String> {
        let gt = read_coco_instances(instances, image_dir)?;
        let evaluation = if segm {
            evaluate_coco_masks(&gt, &read_coco_mask_results(results, &gt)?)?
        } else {
            evaluate_coco(&gt, &read_coco_results(results, &gt)?)
        };
        let stats = evaluation.stats.to_array();
        Ok(serde_json::to_string(&stats).expect("finite numbers serialize"))
    };
    match run() {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("coco_eval: {e}");
            ExitCode::FAILURE
        }
    }
}
