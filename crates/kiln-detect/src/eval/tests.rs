//! Hand-derived cases for the evaluators: every expected number is worked out in the comments.

use super::*;
use crate::data::{AnnotatedImage, BoundingBox, Category, Detection, DetectionSet, Object};

fn bb(x1: f32, y1: f32, x2: f32, y2: f32) -> BoundingBox {
    BoundingBox { x1, y1, x2, y2 }
}

fn obj(class: usize, b: BoundingBox) -> Object {
    Object {
        bbox: b,
        class,
        area: b.width() * b.height(),
        difficult: false,
        crowd: false,
        mask: None,
    }
}

fn det(image_id: u64, class: usize, bbox: BoundingBox, score: f32) -> Detection {
    Detection {
        image_id,
        class,
        bbox,
        score,
    }
}

fn set(classes: &[&str], images: Vec<(u64, Vec<Object>)>) -> DetectionSet {
    DetectionSet {
        categories: classes
            .iter()
            .enumerate()
            .map(|(i, n)| Category {
                id: i as u64 + 1,
                name: (*n).into(),
            })
            .collect(),
        images: images
            .into_iter()
            .map(|(id, objects)| AnnotatedImage {
                id,
                path: format!("{id}.jpg").into(),
                width: 1000,
                height: 1000,
                objects,
            })
            .collect(),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// 101-point AP of the ranking T, F, T against 2 positives: recall 0.5, 0.5, 1 and envelope
/// precision 1, 2/3, 2/3, so thresholds 0..=0.50 (51) give 1 and 0.51..=1 (50) give 2/3.
const TFT_101: f64 = (51.0 + 50.0 * 2.0 / 3.0) / 101.0;
/// 101-point AP of T, F, F against 2 positives: recall stops at 0.5, so 51 thresholds give 1.
const TFF_101: f64 = 51.0 / 101.0;

/// Two large ground truths A and B; detections: d1 (0.9) = A (IoU 1), d2 (0.8) far from both,
/// d3 (0.7) covering 62 % of B (IoU 0.62).
fn two_gts_three_dets() -> (DetectionSet, Vec<Detection>) {
    let gt = set(
        &["thing"],
        vec![(
            1,
            vec![
                obj(0, bb(0.0, 0.0, 100.0, 100.0)),
                obj(0, bb(200.0, 0.0, 300.0, 100.0)),
            ],
        )],
    );
    let dets = vec![
        det(1, 0, bb(0.0, 0.0, 100.0, 100.0), 0.9),
        det(1, 0, bb(500.0, 500.0, 600.0, 600.0), 0.8),
        det(1, 0, bb(200.0, 0.0, 300.0, 62.0), 0.7),
    ];
    (gt, dets)
}

#[test]
fn coco_two_gts_three_dets() {
    let (gt, dets) = two_gts_three_dets();
    let e = evaluate_coco(&gt, &dets);
    // IoU thresholds 0.50, 0.55, 0.60 accept d3: ranking T, F, T. The other seven reject it:
    // T, F, F.
    let ap = (3.0 * TFT_101 + 7.0 * TFF_101) / 10.0;
    let s = e.stats;
    assert!(close(s.ap, ap), "{} vs {ap}", s.ap);
    assert!(close(s.ap50, TFT_101));
    assert!(close(s.ap75, TFF_101));
    // Both objects are large (area 10 000 > 96²): no small or medium ground truth → -1. For
    // "large", d3 (area 6 200, medium) is ignored where unmatched: T, F, (ignored) — the same AP.
    assert_eq!((s.ap_small, s.ap_medium), (-1.0, -1.0));
    assert!(close(s.ap_large, ap));
    // Recall 1 at three thresholds, 0.5 at seven → AR@100 = (3 + 3.5) / 10 = 0.65. AR@1 keeps
    // d1 alone → 0.5 everywhere.
    assert!(close(s.ar100, 0.65) && close(s.ar10, 0.65) && close(s.ar1, 0.5));
    assert!(close(s.ar_large, 0.65));
    assert_eq!((s.ar_small, s.ar_medium), (-1.0, -1.0));
    let c = &e.classes[0];
    assert!(close(c.ap, ap) && close(c.ap50, TFT_101) && close(c.ap75, TFF_101));
    assert_eq!((c.num_gt, c.num_detections), (2, 3));
    assert!(close(c.precision_50[0], 1.0) && close(c.precision_50[100], 2.0 / 3.0));
    assert!(close(c.precision_75[50], 1.0) && close(c.precision_75[51], 0.0));
    let p = e.precision(0, AreaRange::All, 100, 0).unwrap();
    assert_eq!(p, &c.precision_50[..]);
    assert!(e.precision(0, AreaRange::Small, 100, 0).is_none());
    assert!(close(e.recall(0, AreaRange::All, 1, 0).unwrap(), 0.5));
}

#[test]
fn voc_eleven_point_and_all_point_on_the_same_case() {
    let (gt, dets) = two_gts_three_dets();
    // At IoU > 0.5: T, F, T against 2 positives (recall 0.5, 0.5, 1; precision 1, 1/2, 2/3).
    // All-point: 0.5 · 1 + 0.5 · 2/3 = 5/6.
    let all = evaluate_voc(&gt, &dets, 0.5, VocAp::AllPoint);
    assert!(close(all.classes[0].ap, 5.0 / 6.0) && close(all.map, 5.0 / 6.0));
    // 11-point: t = 0, 0.1, …, 0.5 (6 points) → 1; t = 0.6, …, 1 (5 points) → 2/3;
    // (6 + 10/3) / 11 = 28/33.
    let eleven = evaluate_voc(&gt, &dets, 0.5, VocAp::ElevenPoint);
    assert!(close(eleven.classes[0].ap, 28.0 / 33.0));
    // At IoU > 0.7, d3 (0.62) misses: T, F, F → all-point 0.5, 11-point 6/11.
    let strict = evaluate_voc(&gt, &dets, 0.7, VocAp::AllPoint);
    assert!(close(strict.map, 0.5));
    let strict11 = evaluate_voc(&gt, &dets, 0.7, VocAp::ElevenPoint);
    assert!(close(strict11.map, 6.0 / 11.0));
    assert_eq!(all.classes[0].curve.recall, vec![0.5, 0.5, 1.0]);
}

#[test]
fn crowd_and_difficult_are_neither_true_nor_false_positives() {
    let mut crowd = obj(0, bb(200.0, 0.0, 400.0, 200.0));
    crowd.crowd = true;
    let mut difficult = obj(0, bb(500.0, 0.0, 600.0, 100.0));
    difficult.difficult = true;
    let gt = set(
        &["thing"],
        vec![(
            1,
            vec![obj(0, bb(0.0, 0.0, 100.0, 100.0)), crowd, difficult],
        )],
    );
    let dets = vec![
        // On the difficult object (IoU 1): ignored.
        det(1, 0, bb(500.0, 0.0, 600.0, 100.0), 0.97),
        // Inside the crowd region: COCO IoU = inter / det area = 1 → ignored.
        det(1, 0, bb(210.0, 10.0, 250.0, 50.0), 0.95),
        // Far from everything: false positive.
        det(1, 0, bb(700.0, 700.0, 800.0, 800.0), 0.9),
        // On the one regular object: true positive.
        det(1, 0, bb(0.0, 0.0, 100.0, 100.0), 0.85),
    ];
    // COCO, every threshold: I, I, F, T against 1 positive → precision 1/2 at recall 1, the
    // envelope is 1/2 everywhere → AP 0.5 (it would be 1/4 if both were counted as FPs).
    let e = evaluate_coco(&gt, &dets);
    assert!(close(e.stats.ap, 0.5) && close(e.stats.ap50, 0.5));
    assert!(close(e.stats.ar100, 1.0));
    assert_eq!(e.classes[0].num_gt, 1);
    // VOC: the difficult hit is ignored, but the crowd region is just a difficult box there,
    // with ordinary IoU 1600 / 40 000 = 0.04 → the crowd detection is a false positive:
    // F, F, T → precision 1/3 at recall 1 → AP 1/3 by either rule.
    let v = evaluate_voc(&gt, &dets, 0.5, VocAp::AllPoint);
    assert!(close(v.map, 1.0 / 3.0), "{}", v.map);
    let v11 = evaluate_voc(&gt, &dets, 0.5, VocAp::ElevenPoint);
    assert!(close(v11.map, 1.0 / 3.0));
    // Two detections on a crowd region are both ignored (crowds are never used up), but a
    // second detection on a difficult object is a false positive under COCO (it was used up)
    // and ignored under VOC (difficult objects are never marked as detected).
    let twice = vec![
        det(1, 0, bb(500.0, 0.0, 600.0, 100.0), 0.97),
        det(1, 0, bb(500.0, 0.0, 600.0, 100.0), 0.96),
        det(1, 0, bb(0.0, 0.0, 100.0, 100.0), 0.85),
    ];
    // COCO: I, F, T → AP 0.5. VOC: I, I, T → AP 1.
    assert!(close(evaluate_coco(&gt, &twice).stats.ap, 0.5));
    assert!(close(
        evaluate_voc(&gt, &twice, 0.5, VocAp::AllPoint).map,
        1.0
    ));
}

#[test]
fn area_ranges_and_max_dets() {
    let gt = set(
        &["thing"],
        vec![(
            1,
            vec![
                obj(0, bb(0.0, 0.0, 20.0, 20.0)),       // small (400)
                obj(0, bb(100.0, 100.0, 150.0, 150.0)), // medium (2 500)
                obj(0, bb(300.0, 300.0, 500.0, 500.0)), // large (40 000)
            ],
        )],
    );
    let dets = vec![
        det(1, 0, bb(600.0, 600.0, 610.0, 610.0), 0.95), // small false positive (area 100)
        det(1, 0, bb(0.0, 0.0, 20.0, 20.0), 0.9),
        det(1, 0, bb(100.0, 100.0, 150.0, 150.0), 0.8),
        det(1, 0, bb(300.0, 300.0, 500.0, 500.0), 0.7),
    ];
    let e = evaluate_coco(&gt, &dets);
    let s = e.stats;
    // All areas: F, T, T, T against 3 → precision 0, 1/2, 2/3, 3/4; envelope 3/4 → AP 0.75.
    assert!(close(s.ap, 0.75));
    // Small: only the small object counts; the medium/large hits match ignored objects and
    // are ignored; the small false positive counts: F, T, I, I → AP 0.5.
    assert!(close(s.ap_small, 0.5));
    // Medium: the small false positive is unmatched and outside the range → ignored; the
    // small hit matches an ignored object → ignored: I, I, T, I → AP 1. Large likewise.
    assert!(close(s.ap_medium, 1.0) && close(s.ap_large, 1.0));
    // Every object is found with 100 (and 10) detections per image...
    assert!(close(s.ar100, 1.0) && close(s.ar10, 1.0));
    assert!(close(s.ar_small, 1.0) && close(s.ar_medium, 1.0) && close(s.ar_large, 1.0));
    // ...but with one, only the top-scored false positive is kept → AR@1 = 0.
    assert!(close(s.ar1, 0.0));
    // Area bounds are inclusive at both ends, as in COCOeval.
    assert!(AreaRange::Small.contains(1024.0) && AreaRange::Medium.contains(1024.0));
    assert!(!AreaRange::Small.contains(1024.5));
}

#[test]
fn ar_at_one_keeps_the_best_detection_per_image() {
    // Two images, one object each plus one more in image 2; every detection a hit.
    let gt = set(
        &["thing"],
        vec![
            (1, vec![obj(0, bb(0.0, 0.0, 50.0, 50.0))]),
            (
                2,
                vec![
                    obj(0, bb(0.0, 0.0, 50.0, 50.0)),
                    obj(0, bb(100.0, 0.0, 150.0, 50.0)),
                ],
            ),
        ],
    );
    let dets = vec![
        det(1, 0, bb(0.0, 0.0, 50.0, 50.0), 0.5),
        det(2, 0, bb(0.0, 0.0, 50.0, 50.0), 0.9),
        det(2, 0, bb(100.0, 0.0, 150.0, 50.0), 0.8),
    ];
    let e = evaluate_coco(&gt, &dets);
    // maxDets 1: one hit per image → 2 of 3 objects → AR@1 = 2/3; AR@10 = 1; AP = 1.
    assert!(close(e.stats.ar1, 2.0 / 3.0) && close(e.stats.ar10, 1.0));
    assert!(close(e.stats.ap, 1.0));
}

#[test]
fn images_without_objects_count_and_unknown_images_do_not() {
    let gt = set(
        &["thing"],
        vec![
            (1, vec![obj(0, bb(0.0, 0.0, 50.0, 50.0))]),
            (2, vec![]),
            (3, vec![]),
        ],
    );
    let dets = vec![
        // Not in the ground truth: not evaluated (the results reader rejects such files).
        det(99, 0, bb(0.0, 0.0, 50.0, 50.0), 0.99),
        // Image 2 has no object: a false positive.
        det(2, 0, bb(0.0, 0.0, 50.0, 50.0), 0.9),
        det(1, 0, bb(0.0, 0.0, 50.0, 50.0), 0.8),
    ];
    // F, T against 1 → AP 0.5 (image 3, without objects or detections, changes nothing).
    let e = evaluate_coco(&gt, &dets);
    assert!(close(e.stats.ap, 0.5));
    assert_eq!(e.classes[0].num_detections, 2);
    assert!(close(
        evaluate_voc(&gt, &dets, 0.5, VocAp::AllPoint).map,
        0.5
    ));
}

#[test]
fn classes_without_detections_score_zero_and_without_objects_are_left_out() {
    let gt = set(
        &["found", "missed", "absent"],
        vec![(
            1,
            vec![
                obj(0, bb(0.0, 0.0, 50.0, 50.0)),
                obj(1, bb(100.0, 0.0, 150.0, 50.0)),
            ],
        )],
    );
    let dets = vec![
        det(1, 0, bb(0.0, 0.0, 50.0, 50.0), 0.9),
        // "absent" has no object: its detections are false positives of a class that is
        // not scored at all.
        det(1, 2, bb(0.0, 0.0, 50.0, 50.0), 0.9),
    ];
    let e = evaluate_coco(&gt, &dets);
    // Per class: 1, 0, -1; mean over the first two → 0.5. (Precision is tp / (tp + fp + ε)
    // as in pycocotools, so "1" is 1 - 1e-16.)
    let aps: Vec<f64> = e.classes.iter().map(|c| c.ap).collect();
    assert!(
        close(aps[0], 1.0) && aps[1] == 0.0 && aps[2] == -1.0,
        "{aps:?}"
    );
    assert!(close(e.stats.ap, 0.5) && close(e.stats.ar100, 0.5));
    assert_eq!(e.classes[2].ar100, -1.0);
    assert!(e.classes[2].precision_50.iter().all(|&p| p == -1.0));
    let v = evaluate_voc(&gt, &dets, 0.5, VocAp::AllPoint);
    let vaps: Vec<f64> = v.classes.iter().map(|c| c.ap).collect();
    assert!(
        close(vaps[0], 1.0) && vaps[1] == 0.0 && vaps[2] == -1.0,
        "{vaps:?}"
    );
    assert!(close(v.map, 0.5));
    // No ground truth at all: every number is -1.
    let empty = evaluate_coco(&set(&["x"], vec![(1, vec![])]), &dets[..1]);
    assert!(empty.stats.to_array().iter().all(|&v| v == -1.0));
}

#[test]
fn score_ties_keep_input_order_within_and_image_order_across_images() {
    let gt = set(
        &["thing"],
        vec![
            (1, vec![obj(0, bb(0.0, 0.0, 50.0, 50.0))]),
            (2, vec![obj(0, bb(0.0, 0.0, 50.0, 50.0))]),
        ],
    );
    let hit = bb(0.0, 0.0, 50.0, 50.0);
    let miss = bb(500.0, 500.0, 550.0, 550.0);
    // Same image, same score: the miss comes first in the input → F, T, then image 2's T.
    // Against 2: recall 0, .5, 1; precision 0, 1/2, 2/3 → envelope 2/3 → AP 2/3.
    let first_miss = vec![
        det(1, 0, miss, 0.5),
        det(1, 0, hit, 0.5),
        det(2, 0, hit, 0.4),
    ];
    assert!(close(evaluate_coco(&gt, &first_miss).stats.ap, 2.0 / 3.0));
    // The hit first: T, F, T → TFT_101.
    let first_hit = vec![
        det(1, 0, hit, 0.5),
        det(1, 0, miss, 0.5),
        det(2, 0, hit, 0.4),
    ];
    assert!(close(evaluate_coco(&gt, &first_hit).stats.ap, TFT_101));
    // Across images, ties go by ascending image id whatever the input order: image 1's miss
    // (0.5) ranks before image 2's hit (0.5) → F, T, T (image 1's hit at 0.4) → AP 2/3.
    let across = vec![
        det(2, 0, hit, 0.5),
        det(1, 0, miss, 0.5),
        det(1, 0, hit, 0.4),
    ];
    assert!(close(evaluate_coco(&gt, &across).stats.ap, 2.0 / 3.0));
}

#[test]
fn reports_metrics_and_pr_curves_are_written() {
    let (gt, dets) = two_gts_three_dets();
    let coco = evaluate_coco(&gt, &dets);
    let voc = evaluate_voc(&gt, &dets, 0.5, VocAp::AllPoint);
    let text = format_report(&coco, &voc);
    assert!(
        text.contains(
            " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.604"
        ),
        "{text}"
    );
    assert!(text.contains(
        " Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = 0.650"
    ));
    assert!(text.contains("thing"));
    assert!(text.contains("0.833"), "VOC AP50 5/6 in the table:\n{text}");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("metrics.json");
    write_metrics_json(&json, &coco, &voc).unwrap();
    let parsed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(close(
        parsed["coco"]["stats"]["ap50"].as_f64().unwrap(),
        TFT_101
    ));
    assert_eq!(parsed["coco"]["stats"]["ap_small"].as_f64().unwrap(), -1.0);
    assert!(close(parsed["voc"]["map"].as_f64().unwrap(), 5.0 / 6.0));
    assert_eq!(parsed["coco"]["classes"][0]["name"], "thing");
    let png = dir.path().join("pr_curve.png");
    save_pr_curves(&png, &coco).unwrap();
    let img = image::open(&png).unwrap();
    assert_eq!((img.width(), img.height()), (1600, 500));
    // Only the two files: no temporary panels left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    let none = evaluate_coco(&set(&["x"], vec![(1, vec![])]), &[]);
    assert!(save_pr_curves(&dir.path().join("e.png"), &none).is_err());
}

/// A `size`×`size` mask with the rectangle `[x0, x1) × [y0, y1)` set.
fn rect_mask(size: u32, (x0, y0, x1, y1): (usize, usize, usize, usize)) -> crate::data::Rle {
    let n = size as usize;
    let mut pixels = vec![0u8; n * n];
    for y in y0..y1 {
        pixels[y * n + x0..y * n + x1].fill(1);
    }
    crate::data::Rle::from_bitmap(&pixels, size, size)
}

#[test]
fn mask_ap_compares_masks_not_boxes() {
    // One 10×10 object (area 100) in a 40×40 image. The detection's mask is an 8×10 part of it
    // (IoU 0.8) while its box is the whole image (box IoU 100/1600): it matches at the seven
    // thresholds 0.50…0.80 and misses at 0.85, 0.90, 0.95, so AP = 7/10, AP50 = AP75 = 1.
    let mut object = obj(0, bb(10.0, 10.0, 20.0, 20.0));
    object.mask = Some(rect_mask(40, (10, 10, 20, 20)));
    let gt = set(&["a"], vec![(1, vec![object])]);
    let detection = crate::data::MaskDetection {
        detection: det(1, 0, bb(0.0, 0.0, 40.0, 40.0), 0.9),
        mask: rect_mask(40, (10, 10, 18, 20)),
        area: 1600.0,
    };
    let masks = evaluate_coco_masks(&gt, std::slice::from_ref(&detection)).unwrap();
    assert!((masks.stats.ap - 0.7).abs() < 1e-12, "{:?}", masks.stats);
    assert!((masks.stats.ap50 - 1.0).abs() < 1e-12 && (masks.stats.ap75 - 1.0).abs() < 1e-12);
    // The object is small (area 100 < 32²): AP small is 0.7 too, and AP medium has no object
    // (-1); the detection's area (1600, medium) only decides whether it is ignored there.
    assert!((masks.stats.ap_small - 0.7).abs() < 1e-12);
    assert_eq!(masks.stats.ap_medium, -1.0);
    // Boxes: IoU 1/16 matches nothing.
    let boxes = evaluate_coco(&gt, &[detection.detection]);
    assert_eq!(boxes.stats.ap, 0.0);
    // An object without a mask cannot be evaluated by masks.
    let no_mask = set(&["a"], vec![(1, vec![obj(0, bb(0.0, 0.0, 5.0, 5.0))])]);
    let err = evaluate_coco_masks(&no_mask, &[]).unwrap_err().to_string();
    assert!(err.contains("without a mask"), "{err}");
}
