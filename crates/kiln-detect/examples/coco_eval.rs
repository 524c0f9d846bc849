//! Evaluates a COCO results file against a COCO instances file with kiln's COCO evaluator and
//! prints pycocotools' 12 summary numbers (`COCOeval.stats`) as a JSON list, for
//! `benches/coco_eval_check.py` to compare with pycocotools.
//!
//! ```text
//! cargo run --release -p kiln-detect --example coco_eval -- instances.json results.json
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kiln_detect::data::{read_coco_instances, read_coco_results};
use kiln_detect::eval::evaluate_coco;

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [instances, results] = args.as_slice() else {
        eprintln!("usage: coco_eval INSTANCES.json RESULTS.json");
        return ExitCode::from(2);
    };
    let image_dir = instances.parent().unwrap_or(Path::new("."));
    let run = || -> kiln_detect::Result<String> {
        let gt = read_coco_instances(instances, image_dir)?;
        let dets = read_coco_results(results, &gt)?;
        let stats = evaluate_coco(&gt, &dets).stats.to_array();
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
