//! Fast R-CNN from a config: selective-search proposals attached to the decoded images,
//! training through [`crate::train::fit_detector`], and detection in original-image pixels.

use std::time::Instant;

use burn::data::dataloader::batcher::Batcher;
use burn::module::Module;
use burn::tensor::Device;
use kiln_train::{Progress, RunDir};

use super::model::FastRcnn;
use super::task::FastRcnnTask;
use crate::Result;
use crate::batch::{DetectionBatch, DetectionBatcher, DetectionItem};
use crate::config::DetectConfig;
use crate::data::{BoundingBox, Detection, DetectionSet};
use crate::dataset::decode_items;
use crate::detector::DetectorTask;
use crate::proposals::propose_for_set_timed;
use crate::train::{Trained, backbone, backbone_shape, fit_detector};

/// Fast R-CNN on the config's pretrained backbone, for `classes` object classes.
pub fn fast_rcnn(config: &DetectConfig, classes: usize, device: &Device) -> Result<FastRcnn> {
    Ok(FastRcnn::new(
        &config.fast_rcnn.head,
        backbone(config, device)?,
        classes,
        device,
    ))
}

/// The same network with untrained weights (to load a checkpoint into).
pub fn fast_rcnn_shape(config: &DetectConfig, classes: usize, device: &Device) -> Result<FastRcnn> {
    Ok(FastRcnn::new(
        &config.fast_rcnn.head,
        backbone_shape(config, device)?,
        classes,
        device,
    ))
}

/// `boxes` in pixels of an image of `from` `[width, height]` rescaled to one of `to`.
fn rescale(boxes: &[BoundingBox], from: [u32; 2], to: [usize; 2], keep: usize) -> Vec<BoundingBox> {
    let sx = to[0] as f32 / from[0].max(1) as f32;
    let sy = to[1] as f32 / from[1].max(1) as f32;
    boxes
        .iter()
        .take(keep)
        .map(|b| BoundingBox {
            x1: b.x1 * sx,
            y1: b.y1 * sy,
            x2: b.x2 * sx,
            y2: b.y2 * sy,
        })
        .collect()
}

/// The images of `set` decoded (long side at most `[data] max_side`) with their best `keep`
/// selective-search proposals (cached; see [`crate::proposals`]) in the decoded pixels, and the
/// seconds selective search took on the images it computed.
pub fn items_with_proposals(
    config: &DetectConfig,
    set: &DetectionSet,
    keep: usize,
    label: &str,
) -> Result<(Vec<DetectionItem>, f64)> {
    let mut items = decode_items(set, Some(config.data.max_side))?;
    if set.images.is_empty() {
        return Ok((items, 0.0));
    }
    let f = &config.fast_rcnn;
    let total = set.images.len();
    let run = propose_for_set_timed(set, &f.proposals, &f.proposal_cache(), f.threads, |done| {
        if done % 20 == 0 || done == total {
            eprintln!("{label} selective search: {done}/{total} images");
        }
    })?;
    let computed: f64 = run.seconds.iter().sum();
    for ((item, annotated), proposals) in items.iter_mut().zip(&set.images).zip(&run.boxes) {
        item.proposals = rescale(
            proposals,
            [annotated.width, annotated.height],
            [item.image.width, item.image.height],
            keep,
        );
    }
    Ok((items, computed))
}

/// Trains Fast R-CNN on `train` (validating on `val`), writing the run into `run`.
pub fn train_fast_rcnn(
    config: &DetectConfig,
    train: &DetectionSet,
    val: &DetectionSet,
    run: &RunDir,
    device: &Device,
    resume: bool,
) -> Result<Trained<FastRcnn>> {
    let classes = train.categories.len();
    let f = &config.fast_rcnn;
    let (train_items, _) = items_with_proposals(config, train, f.train_proposals, "train")?;
    let (val_items, _) = items_with_proposals(config, val, f.test_proposals, "val")?;
    let task = FastRcnnTask::new(f, classes, config.seed);
    let model = fast_rcnn(config, classes, device)?;
    fit_detector(
        &DetectorTask(&task),
        model,
        train_items,
        val_items,
        config,
        run,
        device,
        resume,
    )
}

/// Detections of `model` on `items` (which carry their proposals) in original-image pixels,
/// with the images per second the network ran at (selective search excluded, as Fast R-CNN
/// reports it).
pub fn detect_fast_rcnn(
    config: &DetectConfig,
    model: &FastRcnn,
    classes: usize,
    items: &[DetectionItem],
    device: &Device,
) -> Result<(Vec<Detection>, f64)> {
    let model = model.valid();
    let task = FastRcnnTask::new(&config.fast_rcnn, classes, config.seed);
    detect_in_batches(
        items,
        &task.batcher,
        config.fast_rcnn.eval_batch,
        device,
        |batch| task.detect(&model, batch),
    )
}

/// `detect` (detections per image of a batch, in input pixels) run over `items` in batches of
/// `batch_size` with a progress bar; the detections mapped to original-image pixels, and the
/// images per second.
pub fn detect_in_batches(
    items: &[DetectionItem],
    batcher: &DetectionBatcher,
    batch_size: usize,
    device: &Device,
    mut detect: impl FnMut(DetectionBatch) -> Result<Vec<Vec<Detection>>>,
) -> Result<(Vec<Detection>, f64)> {
    run_in_batches(items, batcher, batch_size, device, |batch| {
        let infos = batch.infos.clone();
        Ok(infos
            .iter()
            .zip(detect(batch)?)
            .flat_map(|(info, detections)| {
                detections.into_iter().map(|d| Detection {
                    bbox: info.to_original(&d.bbox),
                    ..d
                })
            })
            .collect())
    })
}

/// `run` (the outputs of a batch) over `items` in batches of `batch_size` with a progress bar;
/// the outputs batch after batch, and the images per second.
///
/// The batches are rectangular, as YOLOv5 tests: the items are taken in order of aspect ratio,
/// so the photos of a batch have like shapes and their padding to the batch's largest width and
/// height stays small (random batches of landscape and portrait photos would pad every image to
/// nearly square, which both costs time and makes the results depend on the batch size).
pub fn run_in_batches<T>(
    items: &[DetectionItem],
    batcher: &DetectionBatcher,
    batch_size: usize,
    device: &Device,
    mut run: impl FnMut(DetectionBatch) -> Result<Vec<T>>,
) -> Result<(Vec<T>, f64)> {
    let progress = Progress::new(items.len() as u64, "detect", "img");
    let start = Instant::now();
    let mut found = Vec::new();
    for chunk in by_aspect_ratio(items).chunks(batch_size.max(1)) {
        let batch = chunk.iter().map(|&i| items[i].clone()).collect();
        found.extend(run(batcher.batch(batch, device))?);
        progress.inc(chunk.len() as u64);
    }
    let seconds = start.elapsed().as_secs_f64();
    progress.finish();
    Ok((found, items.len() as f64 / seconds.max(1e-9)))
}

/// The indices of `items` from the tallest image to the widest (ties in item order).
fn by_aspect_ratio(items: &[DetectionItem]) -> Vec<usize> {
    let ratio = |i: usize| items[i].image.width as f64 / items[i].image.height.max(1) as f64;
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| ratio(a).total_cmp(&ratio(b)));
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::ResizeRule;

    #[test]
    fn proposals_are_rescaled_into_the_decoded_pixels_and_cut_to_the_best() {
        let b = BoundingBox {
            x1: 10.0,
            y1: 20.0,
            x2: 110.0,
            y2: 220.0,
        };
        let out = rescale(&[b, b, b], [1000, 800], [500, 400], 2);
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0],
            BoundingBox {
                x1: 5.0,
                y1: 10.0,
                x2: 55.0,
                y2: 110.0
            }
        );
    }

    #[test]
    fn test_batches_hold_photos_of_like_shape() {
        // Landscape and portrait photos alternate; batches of two pair like with like, so no
        // batch pads a photo to a square, and every photo is run once.
        let photo = |id: u64, [w, h]: [usize; 2]| DetectionItem {
            image: kiln_data::Image::filled(w, h, 3, 90),
            boxes: vec![],
            labels: vec![],
            image_id: id,
            original_size: [w as u32, h as u32],
            proposals: vec![],
            masks: vec![],
        };
        let items: Vec<DetectionItem> = (0..8)
            .map(|id| photo(id, if id % 2 == 0 { [96, 64] } else { [64, 96] }))
            .collect();
        let batcher = DetectionBatcher::new(ResizeRule::ShortSide {
            short_side: 64,
            max_long_side: 96,
        });
        let device = Device::flex();
        let (batches, _) = run_in_batches(&items, &batcher, 2, &device, |batch| {
            let [_, _, h, w] = batch.images.dims();
            let ids: Vec<u64> = batch.infos.iter().map(|info| info.image_id).collect();
            Ok(vec![([w, h], ids)])
        })
        .unwrap();
        let (portrait, landscape) = ([64, 96], [96, 64]);
        assert_eq!(
            batches,
            [
                (portrait, vec![1, 3]),
                (portrait, vec![5, 7]),
                (landscape, vec![0, 2]),
                (landscape, vec![4, 6]),
            ]
        );
    }
}
