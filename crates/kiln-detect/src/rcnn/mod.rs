//! **R-CNN** (Girshick et al., "Rich feature hierarchies for accurate object detection and
//! semantic segmentation", CVPR 2014), on a frozen ImageNet backbone:
//!
//! 1. **proposals**: selective search in fast mode ([`crate::proposals`]), cached per image;
//!    the best `train_proposals` (training) or `test_proposals` (test) of each image are used;
//! 2. **features**: each proposal (and, for training, each ground-truth box) is warped with 16
//!    pixels of context to a fixed square ([`warp`]) and run through the frozen pretrained
//!    backbone; the pooled embedding is its feature, cached per image ([`features`]) and scaled
//!    to a fixed L2 norm when used;
//! 3. **SVMs**: one linear SVM per class ([`svm`]), positives the ground-truth boxes,
//!    negatives the proposals with IoU below 0.3 with every box of the class, trained with
//!    hard-negative mining;
//! 4. **box regression**: per class, ridge regression ([`regress`]) from the features of
//!    proposals overlapping a box of the class by more than 0.6 to the deltas taking them to it;
//! 5. **test**: every proposal scored by every SVM, regressed, per-class NMS (IoU 0.3), the
//!    best 100 per image kept ([`detect`]).
//!
//! [`train_and_detect`] runs it all for `kiln-detect train` and reports each stage's time;
//! [`predict_items`] runs a trained run on new photos.

pub mod config;
pub mod detect;
pub mod features;
pub mod regress;
pub mod svm;
pub mod warp;

pub use config::{RcnnConfig, RegressionConfig, SvmConfig, WarpConfig};
pub use detect::{ClassModel, ImageDetection, MODEL_FILE, RcnnModel};
pub use features::{Extractor, FeatureCache, Features};
pub use regress::{BoxRegressor, fit_ridge};
pub use svm::{LinearSvm, MiningRound, train_with_mining};
pub use warp::{context_window, mean_rgb, warp_box};

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::Device;
use kiln_data::Image;
use kiln_data::image_folder::decode_image;
use kiln_nets::download::resolve_weights;
use kiln_train::RunDir;
use serde::Serialize;

use crate::batch::DetectionItem;
use crate::config::DetectConfig;
use crate::data::{AnnotatedImage, BoundingBox, Detection, DetectionSet};
use crate::eval::{VocAp, evaluate_coco, evaluate_voc};
use crate::ops::host::iou;
use crate::ops::{BoxCoder, boxes_to_tensor};
use crate::proposals::{
    ProposalCache, ground_truth_boxes, proposal_recall, propose_for_set_timed, selective_search,
};
use crate::{DetectError, Result};

/// Seconds each stage of a run took (wall clock).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StageTimes {
    /// Selective search on the training and validation images (cache look-ups included).
    pub proposals: f64,
    /// Warping and backbone features of the training images' boxes.
    pub features: f64,
    /// Cross-validating the candidate SVM settings on the training images (SVMs and
    /// regressors trained for each fold and setting).
    pub selection: f64,
    /// Training the final SVMs (hard-negative mining included).
    pub svm: f64,
    /// Fitting the box regressors.
    pub regression: f64,
    /// Features of the validation images (proposals are in `proposals`), detecting on them and
    /// scoring them.
    pub validation: f64,
    /// Selective search on the test images.
    pub test_proposals: f64,
    /// Features, scoring, regression and NMS on the test images.
    pub test: f64,
}

/// Scores on the validation images held out of training.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ValidationScores {
    /// Validation images.
    pub images: usize,
    /// VOC all-point AP at IoU 0.5 (mean over classes).
    pub voc_ap50: f64,
    /// COCO AP50.
    pub coco_ap50: f64,
    /// COCO AP (IoU 0.50:0.95).
    pub coco_ap: f64,
}

/// Cross-validated scores of one SVM setting on the training images.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SelectionScore {
    /// The SVMs' `C`.
    pub c: f64,
    /// The negative IoU threshold.
    pub negative_iou: f32,
    /// VOC all-point AP at IoU 0.5 (mean over classes), all folds pooled.
    pub voc_ap50: f64,
    /// COCO AP50.
    pub coco_ap50: f64,
    /// COCO AP (IoU 0.50:0.95).
    pub coco_ap: f64,
}

/// One class's training, for the report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassTraining {
    /// Class name.
    pub class: String,
    /// Positives (ground-truth boxes).
    pub positives: usize,
    /// Negatives in the pool mining draws from.
    pub negative_pool: usize,
    /// Each mining round.
    pub mining: Vec<MiningRound>,
    /// Proposals the box regressor was fitted on.
    pub regression_examples: usize,
}

/// What an R-CNN run did and measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RcnnReport {
    /// Per-stage seconds.
    pub seconds: StageTimes,
    /// Training images (after the validation hold-out).
    pub train_images: usize,
    /// Warped boxes whose features were computed or read for training.
    pub train_boxes: usize,
    /// Images whose features came from the cache, out of all images (train, val, test).
    pub feature_cache_hits: usize,
    /// Images whose proposals came from the cache.
    pub proposal_cache_hits: usize,
    /// Share of test ground-truth boxes covered (IoU ≥ 0.5 / 0.7) by the test proposals used.
    pub test_proposal_recall: [f64; 2],
    /// Per-class training.
    pub classes: Vec<ClassTraining>,
    /// The SVMs' `C` (picked by cross-validation when there was a choice).
    pub c: f64,
    /// The SVMs' negative IoU threshold (picked alike).
    pub negative_iou: f32,
    /// Cross-validated scores of each candidate SVM setting (empty without a choice).
    pub selection: Vec<SelectionScore>,
    /// Scores of the chosen model on the validation images, when images were held out.
    pub validation: Option<ValidationScores>,
    /// Test images.
    pub test_images: usize,
    /// Test images per second, selective search included.
    pub test_images_per_sec: f64,
}

impl RcnnReport {
    /// The stage times as printed lines.
    pub fn summary(&self) -> String {
        let s = &self.seconds;
        let mut out = format!(
            "R-CNN stages (s): proposals {:.1} | features {:.1} | model selection {:.1} | SVM training {:.1} | regression {:.1} | validation {:.1} | test {:.1} (selective search {:.1} + features and scoring {:.1})\n",
            s.proposals,
            s.features,
            s.selection,
            s.svm,
            s.regression,
            s.validation,
            s.test_proposals + s.test,
            s.test_proposals,
            s.test
        );
        out += &format!(
            "R-CNN: {} training images, {} warped boxes; caches: features {} images, proposals {} images; test proposal recall {:.3} @0.5, {:.3} @0.7; {:.2} test images/s\n",
            self.train_images,
            self.train_boxes,
            self.feature_cache_hits,
            self.proposal_cache_hits,
            self.test_proposal_recall[0],
            self.test_proposal_recall[1],
            self.test_images_per_sec
        );
        for c in &self.classes {
            let rounds: Vec<String> = c
                .mining
                .iter()
                .map(|r| format!("{} neg → {} violators", r.negatives, r.violators))
                .collect();
            out += &format!(
                "R-CNN {}: {} positives, {} negatives in the pool, mining [{}], {} regression examples\n",
                c.class,
                c.positives,
                c.negative_pool,
                rounds.join("; "),
                c.regression_examples
            );
        }
        if !self.selection.is_empty() {
            let tried: Vec<String> = self
                .selection
                .iter()
                .map(|v| format!("C {} neg<{} → {:.3}", v.c, v.negative_iou, v.voc_ap50))
                .collect();
            out += &format!(
                "R-CNN SVM settings by {}-image cross-validation (VOC AP50): {}; chose C = {}, negative IoU < {}\n",
                self.train_images,
                tried.join(", "),
                self.c,
                self.negative_iou
            );
        }
        if let Some(v) = &self.validation {
            out += &format!(
                "R-CNN validation ({} images): AP50 {:.3} (VOC {:.3}), AP {:.3}\n",
                v.images, v.coco_ap50, v.voc_ap50, v.coco_ap
            );
        }
        out
    }
}

/// What [`train_and_detect`] produced.
#[derive(Clone, Debug)]
pub struct RcnnOutcome {
    /// Detections on the test set, in original image pixels.
    pub detections: Vec<Detection>,
    /// Test images per second (selective search, features and scoring).
    pub images_per_sec: f64,
    /// What was done and measured.
    pub report: RcnnReport,
}

/// The identity of a config's backbone weights (the feature cache's key), or `None` for a
/// random initialisation, whose features must not be cached.
fn backbone_identity(config: &DetectConfig) -> Option<String> {
    if config.backbone.weights == "none" {
        return None;
    }
    let (arch, path) = resolve_weights(&config.backbone.weights).ok()?;
    let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Some(format!("{arch}|{name}|{len}"))
}

/// The backbone as a feature extractor, and its feature cache (none for random weights).
fn extractor(config: &DetectConfig, device: &Device) -> Result<(Extractor, Option<FeatureCache>)> {
    let r = &config.rcnn;
    let identity = backbone_identity(config);
    let net = crate::train::backbone(config, device)?;
    let extractor = Extractor::new(
        net,
        r.warp,
        r.grid,
        r.batch,
        device,
        identity.as_deref().unwrap_or("random"),
    );
    let cache = match identity {
        Some(_) => Some(FeatureCache::new(
            &r.cache_root().join("features"),
            extractor.identity(),
        )?),
        None => None,
    };
    Ok((extractor, cache))
}

/// Features of `boxes` from `cache` when it has them, else computed (and stored).
fn features_of(
    extractor: &Extractor,
    cache: Option<&FeatureCache>,
    image_bytes: &[u8],
    boxes: &[BoundingBox],
    decode: impl FnOnce() -> Result<Image>,
) -> Result<(Features, bool)> {
    match cache {
        Some(cache) => cache.get_or_compute(extractor, image_bytes, boxes, decode),
        None => Ok((extractor.extract(&decode()?, boxes)?, false)),
    }
}

/// Features of `boxes(i)` for every image `i` of `set`, with a line of progress now and then;
/// also counts the cache hits.
fn set_features(
    set: &DetectionSet,
    boxes: impl Fn(usize) -> Vec<BoundingBox>,
    extractor: &Extractor,
    cache: Option<&FeatureCache>,
    label: &str,
    mut each: impl FnMut(usize, Vec<BoundingBox>, Features) -> Result<()>,
) -> Result<usize> {
    let started = Instant::now();
    let (mut hits, mut warped) = (0, 0usize);
    for (i, image) in set.images.iter().enumerate() {
        let bytes = std::fs::read(&image.path).map_err(|e| DetectError::io(&image.path, e))?;
        let boxes = boxes(i);
        let (features, hit) = features_of(extractor, cache, &bytes, &boxes, || {
            Ok(decode_image(&image.path, None)?.to_rgb())
        })?;
        hits += usize::from(hit);
        warped += if hit { 0 } else { boxes.len() };
        each(i, boxes, features)?;
        let done = i + 1;
        if done % 10 == 0 || done == set.images.len() {
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "{label}: {done}/{} images ({hits} from the cache), {:.0} s, {:.1} warps/s",
                set.images.len(),
                secs,
                warped as f64 / secs.max(1e-9)
            );
        }
    }
    Ok(hits)
}

/// Selective search over `set` with the config's cache and threads, with its wall time.
fn proposals_for(
    set: &DetectionSet,
    config: &RcnnConfig,
    label: &str,
) -> Result<(Vec<Vec<BoundingBox>>, usize, f64)> {
    if set.images.is_empty() {
        return Ok((Vec::new(), 0, 0.0));
    }
    let total = set.images.len();
    let run = propose_for_set_timed(
        set,
        &config.proposals,
        &config.cache_root().join("proposals"),
        config.threads,
        |done| {
            if done % 20 == 0 || done == total {
                eprintln!("{label} selective search: {done}/{total} images");
            }
        },
    )?;
    let hits = run.cached.iter().filter(|c| **c).count();
    Ok((run.boxes, hits, run.wall_seconds))
}

/// The best `n` proposals.
fn top(proposals: &[BoundingBox], n: usize) -> Vec<BoundingBox> {
    proposals.iter().take(n).copied().collect()
}

/// Detections of `model` on every image of `set` (proposals given), in original pixels.
fn detect_set(
    model: &RcnnModel,
    set: &DetectionSet,
    proposals: &[Vec<BoundingBox>],
    config: &RcnnConfig,
    (extractor, cache): (&Extractor, Option<&FeatureCache>),
    label: &str,
    device: &Device,
) -> Result<(Vec<Detection>, usize)> {
    let mut found = Vec::new();
    let hits = set_features(
        set,
        |i| top(&proposals[i], config.test_proposals),
        extractor,
        cache,
        label,
        |i, boxes, features| {
            let image = &set.images[i];
            let size = [image.width as f32, image.height as f32];
            for d in model.detect(
                &boxes,
                features,
                size,
                config.nms_iou,
                config.max_detections,
                device,
            )? {
                found.push(Detection {
                    image_id: image.id,
                    class: d.class,
                    bbox: d.bbox,
                    score: d.score,
                });
            }
            Ok(())
        },
    )?;
    Ok((found, hits))
}

/// One training image: its annotation, its proposals, and the scaled features of its objects
/// (one row per object) and of its proposals.
struct TrainImage<'s> {
    image: &'s AnnotatedImage,
    gt: Features,
    proposals: Vec<BoundingBox>,
    features: Features,
}

/// One class's training examples, as rows of the scaled training features.
#[derive(Default)]
struct ClassData<'a> {
    positives: Vec<&'a [f32]>,
    negatives: Vec<&'a [f32]>,
    regression_rows: Vec<&'a [f32]>,
    regression_proposals: Vec<BoundingBox>,
    regression_targets: Vec<BoundingBox>,
}

/// Class `c`'s SVM positives (its ground-truth boxes), negatives (proposals with IoU below
/// `negative_iou` with each of its boxes) and regression examples (proposals with IoU above
/// `min_iou` with one of its boxes, paired with the box they overlap most).
fn class_data<'a>(
    images: &[&'a TrainImage],
    c: usize,
    negative_iou: f32,
    min_iou: f32,
) -> ClassData<'a> {
    let mut data = ClassData::default();
    for item in images {
        let objects = &item.image.objects;
        let class_gt: Vec<BoundingBox> = objects
            .iter()
            .filter(|o| o.class == c)
            .map(|o| o.bbox)
            .collect();
        for (k, o) in objects.iter().enumerate() {
            if o.class == c && !o.difficult {
                data.positives.push(item.gt.row(k));
            }
        }
        for (k, proposal) in item.proposals.iter().enumerate() {
            let best = class_gt
                .iter()
                .map(|g| (iou(proposal, g), *g))
                .max_by(|a, b| a.0.total_cmp(&b.0));
            if best.map_or(0.0, |(o, _)| o) < negative_iou {
                data.negatives.push(item.features.row(k));
            }
            if let Some((o, g)) = best
                && o > min_iou
            {
                data.regression_rows.push(item.features.row(k));
                data.regression_proposals.push(*proposal);
                data.regression_targets.push(g);
            }
        }
    }
    data
}

/// The ridge box regressor of each class (`None` for a class without examples), and how many
/// examples each had.
fn fit_regressors(
    images: &[&TrainImage],
    classes: usize,
    r: &RcnnConfig,
    device: &Device,
) -> Result<(Vec<Option<BoxRegressor>>, Vec<usize>)> {
    let mut regressors = Vec::with_capacity(classes);
    let mut counts = Vec::with_capacity(classes);
    for c in 0..classes {
        let data = class_data(images, c, 0.0, r.regression.min_iou);
        counts.push(data.regression_rows.len());
        if data.regression_rows.is_empty() {
            regressors.push(None);
            continue;
        }
        let deltas = BoxCoder::new([1.0; 4]).encode(
            boxes_to_tensor(&data.regression_targets, device),
            boxes_to_tensor(&data.regression_proposals, device),
        );
        let flat = deltas
            .into_data()
            .convert::<f32>()
            .try_into_vec_as::<f32>()
            .map_err(|e| DetectError::invalid("box regression targets", format!("{e:?}")))?;
        let targets: Vec<[f32; 4]> = flat
            .chunks_exact(4)
            .map(|c| [c[0], c[1], c[2], c[3]])
            .collect();
        regressors.push(Some(fit_ridge(
            &data.regression_rows,
            &targets,
            r.regression.lambda,
        )?));
    }
    Ok((regressors, counts))
}

/// What training one class's SVM gave: the SVM, its positives and negative pool sizes, and its
/// mining rounds.
type TrainedSvm = (LinearSvm, [usize; 2], Vec<MiningRound>);

/// The SVM of each class with `svm`'s settings.
fn train_svms(
    images: &[&TrainImage],
    classes: usize,
    svm: &SvmConfig,
    seed: u64,
) -> Vec<TrainedSvm> {
    (0..classes)
        .map(|c| {
            let data = class_data(images, c, svm.negative_iou, 1.0);
            let (model, rounds) = train_with_mining(
                &data.positives,
                &data.negatives,
                svm,
                seed.wrapping_add(c as u64),
            );
            (model, [data.positives.len(), data.negatives.len()], rounds)
        })
        .collect()
}

/// A model of trained SVMs and regressors.
fn assemble(
    dim: usize,
    r: &RcnnConfig,
    svms: Vec<LinearSvm>,
    regressors: &[Option<BoxRegressor>],
) -> RcnnModel {
    RcnnModel {
        dim,
        feature_norm: r.feature_norm,
        classes: svms
            .into_iter()
            .zip(regressors)
            .map(|(svm, regressor)| ClassModel {
                svm,
                regressor: regressor.clone(),
            })
            .collect(),
    }
}

/// Detections of `model` on training images, from their proposals and features in memory.
fn detect_loaded(
    model: &RcnnModel,
    images: &[&TrainImage],
    r: &RcnnConfig,
    device: &Device,
) -> Result<Vec<Detection>> {
    let mut found = Vec::new();
    for item in images {
        let image = item.image;
        let size = [image.width as f32, image.height as f32];
        for d in model.detect_scaled(
            &item.proposals,
            &item.features,
            size,
            r.nms_iou,
            r.max_detections,
            device,
        )? {
            found.push(Detection {
                image_id: image.id,
                class: d.class,
                bbox: d.bbox,
                score: d.score,
            });
        }
    }
    Ok(found)
}

/// The SVM settings to choose from: every `C` of `c_grid` with every threshold of
/// `negative_iou_grid` (each grid defaulting to its single value).
fn candidates(svm: &SvmConfig) -> Vec<SvmConfig> {
    let cs = if svm.c_grid.is_empty() {
        vec![svm.c]
    } else {
        svm.c_grid.clone()
    };
    let ious = if svm.negative_iou_grid.is_empty() {
        vec![svm.negative_iou]
    } else {
        svm.negative_iou_grid.clone()
    };
    let mut out = Vec::new();
    for &negative_iou in &ious {
        for &c in &cs {
            out.push(SvmConfig {
                c,
                negative_iou,
                ..svm.clone()
            });
        }
    }
    out
}

/// Cross-validated scores of each SVM setting on the training images: `folds` folds (image
/// `i` in fold `i mod folds`), each scored by SVMs and regressors trained on the other folds;
/// the detections of all folds are pooled and scored together.
fn cross_validate(
    images: &[TrainImage],
    categories: &[crate::data::Category],
    settings: &[SvmConfig],
    (dim, folds, seed): (usize, usize, u64),
    r: &RcnnConfig,
    device: &Device,
) -> Result<Vec<SelectionScore>> {
    let classes = categories.len();
    let mut found: Vec<Vec<Detection>> = vec![Vec::new(); settings.len()];
    for fold in 0..folds {
        let part = |held: bool| -> Vec<&TrainImage> {
            images
                .iter()
                .enumerate()
                .filter(|(i, _)| (i % folds == fold) == held)
                .map(|(_, t)| t)
                .collect()
        };
        let (fit, held) = (part(false), part(true));
        let (regressors, _) = fit_regressors(&fit, classes, r, device)?;
        for (setting, found) in settings.iter().zip(&mut found) {
            let svms = train_svms(&fit, classes, setting, seed)
                .into_iter()
                .map(|(svm, _, _)| svm)
                .collect();
            let model = assemble(dim, r, svms, &regressors);
            found.extend(detect_loaded(&model, &held, r, device)?);
        }
    }
    let gt = DetectionSet {
        categories: categories.to_vec(),
        images: images.iter().map(|t| t.image.clone()).collect(),
    };
    Ok(settings
        .iter()
        .zip(found)
        .map(|(setting, found)| {
            let coco = evaluate_coco(&gt, &found);
            let voc = evaluate_voc(&gt, &found, 0.5, VocAp::AllPoint);
            let score = SelectionScore {
                c: setting.c,
                negative_iou: setting.negative_iou,
                voc_ap50: voc.map,
                coco_ap50: coco.stats.ap50,
                coco_ap: coco.stats.ap,
            };
            eprintln!(
                "cross-validation: C = {}, negative IoU < {}: AP50 {:.3} (VOC {:.3}), AP {:.3}",
                score.c, score.negative_iou, score.coco_ap50, score.voc_ap50, score.coco_ap
            );
            score
        })
        .collect())
}

/// Trains R-CNN on `train` (picking the SVM settings from `[rcnn.svm]`'s grids by
/// cross-validation on `train`, and checking the result on `val` when it has images) and
/// detects on `test`; writes the model into `run` ([`MODEL_FILE`]).
pub fn train_and_detect(
    config: &DetectConfig,
    train: &DetectionSet,
    val: &DetectionSet,
    test: &DetectionSet,
    run: &RunDir,
    device: &Device,
) -> Result<RcnnOutcome> {
    let r = &config.rcnn;
    r.validate()?;
    let mut times = StageTimes::default();
    let classes = train.categories.len();

    // 1. Proposals for the training and validation images.
    let (train_props, hits_train, secs) = proposals_for(train, r, "train")?;
    times.proposals += secs;
    let (val_props, hits_val, secs) = proposals_for(val, r, "val")?;
    times.proposals += secs;

    // 2. Features of each training image's ground-truth boxes and best proposals, scaled.
    let started = Instant::now();
    let (extractor, cache) = extractor(config, device)?;
    let dim = extractor.dim();
    let mut images: Vec<TrainImage> = Vec::with_capacity(train.images.len());
    let gt_boxes = |i: usize| {
        train.images[i]
            .objects
            .iter()
            .map(|o| o.bbox)
            .collect::<Vec<_>>()
    };
    let mut feature_hits = set_features(
        train,
        |i| [gt_boxes(i), top(&train_props[i], r.train_proposals)].concat(),
        &extractor,
        cache.as_ref(),
        "train features",
        |i, boxes, features| {
            let image = &train.images[i];
            let scaled = features.scaled(r.feature_norm);
            let objects = image.objects.len().min(boxes.len());
            let (gt, rest) = scaled.values.split_at(objects * scaled.dim);
            images.push(TrainImage {
                image,
                gt: Features {
                    dim: scaled.dim,
                    values: gt.to_vec(),
                },
                proposals: boxes[objects..].to_vec(),
                features: Features {
                    dim: scaled.dim,
                    values: rest.to_vec(),
                },
            });
            Ok(())
        },
    )?;
    times.features = started.elapsed().as_secs_f64();

    // Model selection: cross-validation over the training images, when there is a choice.
    let started = Instant::now();
    let settings = candidates(&r.svm);
    let selection = if settings.len() > 1 {
        let folds = r.svm.folds.min(images.len());
        if folds < 2 {
            return Err(DetectError::invalid(
                "[rcnn.svm] folds",
                format!(
                    "{folds} folds of {} training images cannot cross-validate",
                    images.len()
                ),
            ));
        }
        cross_validate(
            &images,
            &train.categories,
            &settings,
            (dim, folds, config.seed),
            r,
            device,
        )?
    } else {
        Vec::new()
    };
    // The best pooled VOC AP50; the earlier setting on ties.
    let mut chosen = &settings[0];
    let mut best = f64::NEG_INFINITY;
    for (score, setting) in selection.iter().zip(&settings) {
        if score.voc_ap50 > best {
            (best, chosen) = (score.voc_ap50, setting);
        }
    }
    let chosen = chosen.clone();
    times.selection = started.elapsed().as_secs_f64();

    // 3. One SVM per class with hard-negative mining; 4. one box regressor per class.
    let all: Vec<&TrainImage> = images.iter().collect();
    let started = Instant::now();
    let trained = train_svms(&all, classes, &chosen, config.seed);
    times.svm = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let (regressors, regression_counts) = fit_regressors(&all, classes, r, device)?;
    times.regression = started.elapsed().as_secs_f64();
    let mut svms = Vec::with_capacity(classes);
    let mut class_reports = Vec::with_capacity(classes);
    for (c, ((svm, [positives, negative_pool], mining), regression_examples)) in
        trained.into_iter().zip(regression_counts).enumerate()
    {
        svms.push(svm);
        class_reports.push(ClassTraining {
            class: train
                .categories
                .get(c)
                .map_or_else(|| c.to_string(), |cat| cat.name.clone()),
            positives,
            negative_pool,
            mining,
            regression_examples,
        });
    }
    let model = assemble(dim, r, svms, &regressors);
    let train_boxes = images.iter().map(|t| t.gt.len() + t.proposals.len()).sum();
    drop(all);
    drop(images);
    model.save(&run.file(MODEL_FILE))?;

    // The held-out validation images, as a check of the chosen model.
    let started = Instant::now();
    let validation = if val.images.is_empty() {
        None
    } else {
        let (found, hits) = detect_set(
            &model,
            val,
            &val_props,
            r,
            (&extractor, cache.as_ref()),
            "val features",
            device,
        )?;
        feature_hits += hits;
        let coco = evaluate_coco(val, &found);
        let voc = evaluate_voc(val, &found, 0.5, VocAp::AllPoint);
        Some(ValidationScores {
            images: val.images.len(),
            voc_ap50: voc.map,
            coco_ap50: coco.stats.ap50,
            coco_ap: coco.stats.ap,
        })
    };
    times.validation = started.elapsed().as_secs_f64();

    // 5. Test: proposals, then features, scores, regression and NMS.
    let (test_props, hits_test, secs) = proposals_for(test, r, "test")?;
    times.test_proposals = secs;
    let started = Instant::now();
    let (detections, hits) = detect_set(
        &model,
        test,
        &test_props,
        r,
        (&extractor, cache.as_ref()),
        "test features",
        device,
    )?;
    feature_hits += hits;
    times.test = started.elapsed().as_secs_f64();
    let used: Vec<Vec<BoundingBox>> = test_props
        .iter()
        .map(|p| top(p, r.test_proposals))
        .collect();
    let recall = proposal_recall(
        &ground_truth_boxes(test),
        &used,
        &[r.test_proposals],
        &[0.5, 0.7],
    );
    let images_per_sec = test.images.len() as f64 / (times.test_proposals + times.test).max(1e-9);
    let report = RcnnReport {
        seconds: times,
        train_images: train.images.len(),
        train_boxes,
        feature_cache_hits: feature_hits,
        proposal_cache_hits: hits_train + hits_val + hits_test,
        test_proposal_recall: [recall.recall[0][0], recall.recall[1][0]],
        classes: class_reports,
        c: chosen.c,
        negative_iou: chosen.negative_iou,
        selection,
        validation,
        test_images: test.images.len(),
        test_images_per_sec: images_per_sec,
    };
    Ok(RcnnOutcome {
        detections,
        images_per_sec,
        report,
    })
}

/// Detections of the R-CNN trained in `run` on `items` (photos in memory, reported in
/// `original_size` pixels): proposals and features are computed (and cached, keyed by the
/// pixels) as in training.
pub fn predict_items(
    run: &RunDir,
    config: &DetectConfig,
    classes: usize,
    items: &[DetectionItem],
    device: &Device,
) -> Result<Vec<Detection>> {
    let r = &config.rcnn;
    r.validate()?;
    let model = RcnnModel::load(&run.file(MODEL_FILE), classes)?;
    let (extractor, cache) = extractor(config, device)?;
    let proposal_dir: PathBuf = r.cache_root().join("proposals");
    let proposal_cache = ProposalCache::new(&proposal_dir, &r.proposals)?;
    let mut found = Vec::new();
    for item in items {
        let image = &item.image;
        let bytes = [
            &(image.width as u64).to_le_bytes()[..],
            &(image.height as u64).to_le_bytes(),
            &image.data,
        ]
        .concat();
        let key = proposal_cache.key(&bytes);
        let proposals = match proposal_cache.load(key) {
            Some(boxes) => boxes,
            None => {
                let boxes = selective_search(image, &r.proposals);
                proposal_cache.store(key, &boxes)?;
                boxes
            }
        };
        let boxes = top(&proposals, r.test_proposals);
        let (features, _) = features_of(&extractor, cache.as_ref(), &bytes, &boxes, || {
            Ok(image.to_rgb())
        })?;
        let size = [image.width as f32, image.height as f32];
        let (sx, sy) = (
            item.original_size[0] as f32 / image.width.max(1) as f32,
            item.original_size[1] as f32 / image.height.max(1) as f32,
        );
        for d in model.detect(&boxes, features, size, r.nms_iou, r.max_detections, device)? {
            let b = d.bbox;
            found.push(Detection {
                image_id: item.image_id,
                class: d.class,
                bbox: BoundingBox {
                    x1: b.x1 * sx,
                    y1: b.y1 * sy,
                    x2: b.x2 * sx,
                    y2: b.y2 * sy,
                },
                score: d.score,
            });
        }
    }
    Ok(found)
}
