//! What `kiln-detect` shares between its subcommands: loading a detection dataset with the
//! config's split rules (saying what was clipped or skipped), the train config's flag
//! overrides, and printing results.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
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
    let boxes = |s: &kiln_detect::data::DetectionSet| {
        s.images.iter().map(|i| i.objects.len()).sum::<usize>()
    };
    let split = match &data.report.split {
        SplitSource::Files(dir) => format!("split files in {}", dir.display()),
        SplitSource::Seeded {
            seed,
            test_fraction,
        } => {
            format!("no split files: seeded split (seed {seed}, test fraction {test_fraction})")
        }
    };
    eprintln!(
        "loaded {} training images ({} boxes) and {} test images ({} boxes), classes {:?}; {split}",
        data.train.images.len(),
        boxes(&data.train),
        data.test.images.len(),
        boxes(&data.test),
        data.train
            .categories
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
    );
    if data.report.clipped_boxes > 0 {
        eprintln!(
            "note: {} boxes crossed the image border and were clipped to it",
            data.report.clipped_boxes
        );
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
        eprintln!(
            "warning: skipped {} bad images: {}",
            list.len(),
            list.join("; ")
        );
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
    if let Some(masks) = &report.masks {
        println!("{}", mask_summary(masks));
    }
}

/// One line of mask scores.
pub fn mask_summary(masks: &kiln_detect::run::MaskReport) -> String {
    format!(
        "masks: AP {:.3}, AP50 {:.3}, AP75 {:.3}, AP small/medium/large {:.3}/{:.3}/{:.3}; mean mask IoU of the {} matched instances {:.3}",
        masks.coco.ap,
        masks.coco.ap50,
        masks.coco.ap75,
        masks.coco.ap_small,
        masks.coco.ap_medium,
        masks.coco.ap_large,
        masks.matched,
        masks.mean_mask_iou
    )
}

/// Anchor sizes for `config`'s YOLO fitted to the boxes of `train` as its resize rule scales
/// them (`count` anchors; [`kiln_detect::yolo::fit_anchors`], 10 seeded restarts).
pub fn fit_anchors(
    train: &kiln_detect::data::DetectionSet,
    config: &DetectConfig,
    count: usize,
) -> Result<kiln_detect::yolo::AnchorFit> {
    let sizes = kiln_detect::yolo::box_sizes(train, &config.yolo.resize());
    Ok(kiln_detect::yolo::fit_anchors(
        &sizes,
        count,
        config.yolo.anchor.match_ratio,
        config.seed,
        10,
    )?)
}

/// The fitted anchors as a table, with how they split over the config's strides.
pub fn anchor_report(fit: &kiln_detect::yolo::AnchorFit, config: &DetectConfig) -> String {
    let strides = &config.yolo.anchor.strides;
    let per = fit.sizes.len() / strides.len().max(1);
    let mut out = format!(
        "{} anchors fitted to {} training boxes: mean best IoU {:.3}, {:.1} % of boxes within a size ratio of {}\n",
        fit.sizes.len(),
        fit.boxes,
        fit.mean_iou,
        100.0 * fit.matched,
        config.yolo.anchor.match_ratio
    );
    for (k, [w, h]) in fit.sizes.iter().enumerate() {
        let level = strides
            .get(k / per.max(1))
            .map_or_else(|| "unused".to_string(), |s| format!("stride {s}"));
        out += &format!("  {w:>6.1} × {h:<6.1} {level}\n");
    }
    if !fit.sizes.len().is_multiple_of(strides.len().max(1)) {
        out +=
            "note: the count does not split evenly over the strides; the config would reject it\n";
    }
    out += &format!(
        "sizes = [{}]",
        fit.sizes
            .iter()
            .map(|[w, h]| format!("[{w}, {h}]"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    out
}

/// Writes `sizes` into the `[yolo.anchor]` table of the config file at `path`, keeping its other
/// lines; the rewritten config must parse and validate, and replaces the file atomically.
pub fn write_anchors(path: &Path, sizes: &[[f32; 2]]) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let written = kiln_detect::yolo::write_anchor_sizes(&text, sizes);
    let check: DetectConfig = toml::from_str(&written)
        .with_context(|| format!("the rewritten {} would not parse", path.display()))?;
    check.validate()?;
    kiln_train::write_atomic(path, written.as_bytes())?;
    Ok(())
}

/// A detector's test AP50 and images/s measured elsewhere (a run no longer on this machine, as
/// BENCHMARKS.md reports it), for [`compare`]'s plot: written `LABEL=AP50@IMAGES_PER_SEC`.
#[derive(Clone, Debug, PartialEq)]
pub struct MeasuredPoint {
    /// Legend entry.
    pub label: String,
    /// Test AP50 in [0, 1].
    pub ap50: f64,
    /// Test images per second (positive).
    pub images_per_sec: f64,
}

impl std::str::FromStr for MeasuredPoint {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let usage = "write a point as LABEL=AP50@IMAGES_PER_SEC, e.g. rcnn=0.848@0.05";
        let (label, numbers) = text
            .split_once('=')
            .ok_or_else(|| format!("`{text}` has no `=`: {usage}"))?;
        let (ap50, speed) = numbers
            .split_once('@')
            .ok_or_else(|| format!("`{text}` has no `@`: {usage}"))?;
        let number = |what: &str, value: &str| {
            value
                .trim()
                .parse::<f64>()
                .map_err(|_| format!("the {what} `{value}` in `{text}` is not a number: {usage}"))
        };
        let point = Self {
            label: label.trim().to_string(),
            ap50: number("AP50", ap50)?,
            images_per_sec: number("speed", speed)?,
        };
        if point.label.is_empty() {
            return Err(format!("`{text}` has an empty label: {usage}"));
        }
        if !(0.0..=1.0).contains(&point.ap50) {
            return Err(format!("AP50 {} in `{text}` is outside [0, 1]", point.ap50));
        }
        if !(point.images_per_sec.is_finite() && point.images_per_sec > 0.0) {
            return Err(format!(
                "images/s {} in `{text}` must be positive (the plot's axis is logarithmic)",
                point.images_per_sec
            ));
        }
        Ok(point)
    }
}

/// One line per run or test output in `dirs` (its detector, test AP50 and images/s) and per
/// point in `measured`, and the speed/accuracy plot of all of them written to `out`. An error
/// when both are empty.
pub fn compare(
    dirs: &[std::path::PathBuf],
    measured: &[MeasuredPoint],
    out: &Path,
) -> Result<String> {
    if dirs.is_empty() && measured.is_empty() {
        anyhow::bail!(
            "nothing to plot: give finished runs or `kiln-detect test` outputs (DIR…), or \
             detectors measured elsewhere with --point LABEL=AP50@IMAGES_PER_SEC"
        );
    }
    let mut points = Vec::new();
    let mut lines = Vec::new();
    for dir in dirs {
        let report = kiln_detect::run::find_test_report(dir)?;
        // Runs from before the detector name was recorded: the config's method name.
        let label = if report.detector.is_empty() {
            serde_json::to_value(report.method)?
                .as_str()
                .unwrap_or_default()
                .to_string()
        } else {
            report.detector.clone()
        };
        lines.push(format!(
            "{label:<14} AP50 {:.3}  {:>7.2} test images/s  ({})",
            report.coco.ap50,
            report.images_per_sec,
            dir.display()
        ));
        points.push(kiln_detect::eval::plot::SpeedAccuracy {
            label,
            ap50: report.coco.ap50,
            images_per_sec: report.images_per_sec,
        });
    }
    for point in measured {
        lines.push(format!(
            "{:<14} AP50 {:.3}  {:>7.2} test images/s  (given with --point)",
            point.label, point.ap50, point.images_per_sec
        ));
        points.push(kiln_detect::eval::plot::SpeedAccuracy {
            label: point.label.clone(),
            ap50: point.ap50,
            images_per_sec: point.images_per_sec,
        });
    }
    kiln_detect::eval::plot::save_speed_accuracy(
        out,
        "detectors: accuracy against speed",
        &points,
    )?;
    Ok(lines.join("\n"))
}

/// Numbers of proposals per image the recall table reports.
pub const PROPOSAL_COUNTS: [usize; 4] = [100, 300, 1000, 2000];

/// Runs selective search over `set` (cached in `cache`), writes `proposals.json` (recall
/// table, seconds per image) and `recall.png` (recall against proposals per image at IoU 0.5
/// and 0.7) into `run`, and returns the printed table.
pub fn proposals(
    set: &kiln_detect::data::DetectionSet,
    config: &kiln_detect::proposals::SelectiveSearchConfig,
    cache: &Path,
    threads: usize,
    run: &kiln_train::RunDir,
) -> Result<String> {
    use kiln_detect::proposals::{
        ground_truth_boxes, proposal_recall, propose_for_set_timed, recall_curve, save_recall_plot,
    };
    let progress = kiln_train::Progress::new(set.images.len() as u64, "selective search", "img");
    let proposals = propose_for_set_timed(set, config, cache, threads, |_| progress.inc(1))?;
    progress.finish();
    let truth = ground_truth_boxes(set);
    let table = proposal_recall(&truth, &proposals.boxes, &PROPOSAL_COUNTS, &[0.5, 0.7]);
    let ns: Vec<usize> = (0..=40)
        .map(|k| (50.0 * 1.1f64.powi(k)).round() as usize)
        .filter(|&n| n <= 3000)
        .collect();
    let curves = [0.5, 0.7]
        .map(|iou| recall_curve(format!("IoU {iou}"), &truth, &proposals.boxes, iou, &ns));
    save_recall_plot(&run.file("recall.png"), "selective search recall", &curves)?;
    let computed = proposals.cached.iter().filter(|c| !**c).count();
    let report = serde_json::json!({
        "recall": &table,
        "images": set.images.len(),
        "computed": computed,
        "seconds_per_image": proposals.mean_seconds(),
        "wall_seconds": proposals.wall_seconds,
        "threads": proposals.threads,
    });
    run.write(
        "proposals.json",
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    let mut out = format!(
        "{} images, {} boxes; median {:.0} proposals per image\nrecall      {}\n",
        table.images,
        table.gt_boxes,
        table.median_proposals,
        table
            .top_ns
            .iter()
            .map(|n| format!("{:>7}", format!("top {n}")))
            .collect::<String>()
    );
    for (t, row) in table.iou_thresholds.iter().zip(&table.recall) {
        out += &format!(
            "IoU ≥ {t:.1}   {}\n",
            row.iter().map(|r| format!("{r:>7.3}")).collect::<String>()
        );
    }
    out += &match proposals.mean_seconds() {
        Some(s) => format!(
            "{s:.2} s per image on one thread ({} computed, {} from the cache; {:.1} s wall on {} threads)",
            computed,
            set.images.len() - computed,
            proposals.wall_seconds,
            proposals.threads
        ),
        None => format!(
            "all {} images came from the cache {}",
            set.images.len(),
            cache.display()
        ),
    };
    Ok(out)
}

/// Generates the Shapes data set into `out` and describes what was written.
pub fn write_shapes(
    config: &kiln_detect::data::shapes::ShapesConfig,
    train: usize,
    test: usize,
    out: &Path,
) -> Result<String> {
    if out.join("annotations").exists() {
        anyhow::bail!(
            "{} already holds a data set (annotations/); choose an empty folder",
            out.display()
        );
    }
    let (train_set, test_set) =
        kiln_detect::data::shapes::write_shapes_dataset(config, train, test, out)?;
    let objects = |s: &kiln_detect::data::DetectionSet| -> usize {
        s.images.iter().map(|im| im.objects.len()).sum()
    };
    Ok(format!(
        "wrote {} training images ({} objects) and {} test images ({} objects) of {}×{} \
         into {}\n(train with --data {})",
        train_set.images.len(),
        objects(&train_set),
        test_set.images.len(),
        objects(&test_set),
        config.size,
        config.size,
        out.display(),
        out.display()
    ))
}

/// The CamVid classes made into instances by `kiln-detect camvid-instances`.
pub const CAMVID_INSTANCE_CLASSES: [&str; 4] = ["Car", "Pedestrian", "Bicyclist", "SignSymbol"];

/// Turns a CamVid-layout segmentation set (`<split>/` photos beside `<split>annot/` label
/// PNGs, a folder or its `.tar.gz`) into a COCO-layout instance set in `out`: per split, the
/// photos copied into `out/<split>/` and `out/annotations/instances_<split>.json` holding the
/// 8-connected components of the [`CAMVID_INSTANCE_CLASSES`] labels of at least `min_area`
/// pixels. Touching objects of one class merge into one instance.
pub fn camvid_instances(
    data: &Path,
    out: &Path,
    splits: &[&str],
    min_area: u64,
    device: &burn::tensor::Device,
) -> Result<String> {
    use kiln_detect::data::{AnnotatedImage, Category, DetectionSet, Object};
    use kiln_segment::data::{ClassList, find_root, load_sample, read_split};
    if out.join("annotations").exists() {
        anyhow::bail!(
            "{} already holds a data set (annotations/); choose an empty folder",
            out.display()
        );
    }
    let classes = ClassList::camvid();
    let wanted: Vec<(u8, usize)> = CAMVID_INSTANCE_CLASSES
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let id = classes
                .classes
                .iter()
                .position(|c| c.name == *name)
                .expect("a CamVid class");
            (id as u8, k)
        })
        .collect();
    let categories: Vec<Category> = CAMVID_INSTANCE_CLASSES
        .iter()
        .enumerate()
        .map(|(k, name)| Category {
            id: k as u64 + 1,
            name: (*name).into(),
        })
        .collect();
    let cache = kiln_data::download::cache_dir();
    let annotations = out.join("annotations");
    std::fs::create_dir_all(&annotations)
        .with_context(|| format!("cannot create {}", annotations.display()))?;
    let mut lines = Vec::new();
    let mut next_id = 1u64;
    for split in splits {
        let root = find_root(data, split, &cache)?;
        let samples = read_split(&root, split)?;
        let folder = out.join(split);
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
        let mut images = Vec::with_capacity(samples.samples.len());
        let mut counts = [0usize; 4];
        for sample in &samples.samples {
            let (image, label) = load_sample(sample, &classes)?;
            let name = sample.image.file_name().expect("a photo file");
            let path = folder.join(name);
            std::fs::copy(&sample.image, &path).with_context(|| {
                format!(
                    "cannot copy {} into {}",
                    sample.image.display(),
                    folder.display()
                )
            })?;
            let found = kiln_detect::ops::components::instances_from_labels(
                &label.data,
                [label.width, label.height],
                &wanted,
                min_area,
                device,
            );
            let objects = found
                .into_iter()
                .map(|(class, mask)| {
                    counts[class] += 1;
                    Object::from_mask(class, mask)
                })
                .collect();
            images.push(AnnotatedImage {
                id: next_id,
                path,
                width: image.width as u32,
                height: image.height as u32,
                objects,
            });
            next_id += 1;
        }
        let set = DetectionSet {
            categories: categories.clone(),
            images,
        };
        kiln_detect::data::write_coco_instances(
            &set,
            &annotations.join(format!("instances_{split}.json")),
        )?;
        lines.push(format!(
            "{split}: {} images; instances {}",
            set.images.len(),
            CAMVID_INSTANCE_CLASSES
                .iter()
                .zip(counts)
                .map(|(n, c)| format!("{n} {c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    lines.push(format!(
        "wrote {} (components of at least {min_area} pixels; touching objects of one class are one instance)",
        out.display()
    ));
    Ok(lines.join("\n"))
}

/// `kiln-detect shapes`'s flags.
#[derive(clap::Args, Debug)]
pub struct ShapesArgs {
    /// The folder to write (train/, test/, annotations/instances_{train,test}.json).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Training images.
    #[arg(long, default_value_t = 2000)]
    pub train: usize,
    /// Test images.
    #[arg(long, default_value_t = 300)]
    pub test: usize,
    /// Image side in pixels.
    #[arg(long, default_value_t = 128)]
    pub size: u32,
    /// Most shapes per image.
    #[arg(long, default_value_t = 6)]
    pub max_objects: usize,
    /// Seed of the images.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `kiln-detect camvid-instances`'s flags.
#[derive(clap::Args, Debug)]
pub struct CamvidInstancesArgs {
    /// The CamVid folder (train/, trainannot/, val/, valannot/) or its .tar.gz.
    #[arg(long, value_name = "PATH")]
    pub data: PathBuf,
    /// The folder to write (train/, val/, annotations/instances_{train,val}.json).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Components smaller than this many pixels are dropped.
    #[arg(long, default_value_t = 64)]
    pub min_area: u64,
    /// Splits to convert.
    #[arg(long, value_delimiter = ',', default_value = "train,val")]
    pub splits: Vec<String>,
    /// Compute device for the connected components: auto, flex, ndarray, wgpu or wgpu:N.
    #[arg(long, value_name = "NAME")]
    pub device: Option<String>,
}

/// `kiln-detect shapes`: generates the Shapes data set and says what was written.
pub fn run_shapes(args: &ShapesArgs) -> Result<()> {
    let config = kiln_detect::data::shapes::ShapesConfig {
        size: args.size,
        max_objects: args.max_objects,
        seed: args.seed,
        ..Default::default()
    };
    println!(
        "{}",
        write_shapes(&config, args.train, args.test, &args.out)?
    );
    Ok(())
}

/// `kiln-detect camvid-instances`: converts CamVid's labels and says what was written.
pub fn run_camvid_instances(args: &CamvidInstancesArgs) -> Result<()> {
    let device = crate::backend::device(args.device.as_deref())?;
    let splits: Vec<&str> = args.splits.iter().map(String::as_str).collect();
    println!(
        "{}",
        camvid_instances(&args.data, &args.out, &splits, args.min_area, &device)?
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{MeasuredPoint, compare};

    #[test]
    fn compare_plots_measured_points_alone_and_refuses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("speed_accuracy.png");
        let points: Vec<MeasuredPoint> = ["rcnn=0.848@0.05", "yolo=0.925@19.8"]
            .iter()
            .map(|p| p.parse().unwrap())
            .collect();
        let lines = compare(&[], &points, &png).unwrap();
        assert_eq!(lines.lines().count(), 2, "{lines}");
        assert!(lines.contains("yolo") && lines.contains("19.80"), "{lines}");
        assert!(image::open(&png).unwrap().width() > 0);

        let empty = dir.path().join("empty.png");
        let error = compare(&[], &[], &empty).unwrap_err().to_string();
        assert!(
            error.contains("nothing to plot") && error.contains("--point"),
            "{error}"
        );
        assert!(!empty.exists());
    }

    #[test]
    fn measured_points_parse_and_bad_ones_say_how_to_write_them() {
        let point: MeasuredPoint = "fast-rcnn = 0.896@2.78".parse().unwrap();
        assert_eq!(
            point,
            MeasuredPoint {
                label: "fast-rcnn".into(),
                ap50: 0.896,
                images_per_sec: 2.78
            }
        );
        for (bad, says) in [
            ("rcnn0.848@0.05", "no `=`"),
            ("rcnn=0.848", "no `@`"),
            ("rcnn=high@0.05", "AP50 `high`"),
            ("=0.8@1", "empty label"),
            ("rcnn=84.8@0.05", "outside [0, 1]"),
            ("rcnn=0.848@0", "must be positive"),
        ] {
            let error = bad.parse::<MeasuredPoint>().unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
