//! What `kiln-detect` shares between its subcommands: loading a detection dataset with the
//! config's split rules (saying what was clipped or skipped), the train config's flag
//! overrides, and printing results.

use std::path::Path;

use anyhow::Result;
use kiln_detect::config::DetectConfig;
use kiln_detect::data::load::{LoadOptions, LoadedSplits, SplitSource, load_detection_data};
use kiln_detect::run::TestReport;

use crate::cli::TrainConfig;

impl TrainConfig for DetectConfig {
    fn seed_mut(&mut self) -> &mut u64 {
        &mut self.seed
    }

    fn train_mut(&mut self) -> &mut kiln_train::trainer::TrainSettings {
        &mut self.train
    }
}

/// Loads a detection dataset (VOC folder, flat layout or `.tar.gz`) split by its split files
/// or by a seeded shuffle, printing what it found and warning about what it dropped.
pub fn load(path: &Path, config: &DetectConfig, skip_bad_images: bool) -> Result<LoadedSplits> {
    let options = LoadOptions {
        test_fraction: config.data.test_fraction,
        seed: config.seed,
        skip_bad_images,
        classes: (!config.data.classes.is_empty()).then(|| config.data.classes.clone()),
    };
    eprintln!("loading {} …", path.display());
    let data = load_detection_data(path, &options)?;
    let boxes = |s: &kiln_detect::data::DetectionSet| s.images.iter().map(|i| i.objects.len()).sum::<usize>();
    let split = match &data.report.split {
        SplitSource::Files(dir) => format!("split files in {}", dir.display()),
        SplitSource::Seeded { seed, test_fraction } => {
            format!("no split files: seeded split (seed {seed}, test fraction {test_fraction})")
        }
    };
    eprintln!(
        "loaded {} training images ({} boxes) and {} test images ({} boxes), classes {:?}; {split}",
        data.train.images.len(),
        boxes(&data.train),
        data.test.images.len(),
        boxes(&data.test),
        data.train.categories.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
    );
    if data.report.clipped_boxes > 0 {
        eprintln!("note: {} boxes crossed the image border and were clipped to it", data.report.clipped_boxes);
    }
    if data.report.resized_annotations > 0 {
        eprintln!(
            "note: {} annotations gave an image size that differs from the file; the file's size was used",
            data.report.resized_annotations
        );
    }
    if !data.report.skipped_images.is_empty() {
        let list: Vec<String> = data
            .report
            .skipped_images
            .iter()
            .map(|(p, why)| format!("{} ({why})", p.display()))
            .collect();
        eprintln!("warning: skipped {} bad images: {}", list.len(), list.join("; "));
    }
    Ok(data)
}

/// Prints a finished run's test numbers.
pub fn print_report(report: &TestReport, table: &str) {
    println!("{table}");
    println!(
        "test: AP50 {:.3} (VOC all-point {:.3}), AP {:.3}, mean IoU of the top box {:.3}, localised (IoU ≥ 0.5) {:.1} %, {:.1} images/s, trained in {:.0} s",
        report.coco.ap50,
        report.voc_ap50,
        report.coco.ap,
        report.localization.mean_iou,
        100.0 * report.localization.localized,
        report.images_per_sec,
        report.train_seconds,
    );
}
