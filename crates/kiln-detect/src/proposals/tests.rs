//! Selective search on small images the tests draw.

use super::*;
use crate::data::{AnnotatedImage, Category, DetectionSet, Object};

/// A `w`×`h` image with a mildly textured background and filled rectangles
/// `(x1, y1, x2, y2, rgb)` (pixel bounds, end exclusive).
fn draw(w: usize, h: usize, rects: &[(usize, usize, usize, usize, [u8; 3])]) -> Image {
    let mut img = Image::filled(w, h, 3, 0);
    for y in 0..h {
        for x in 0..w {
            let v = 120 + ((x * 7 + y * 13) % 5) as u8;
            let at = (y * w + x) * 3;
            img.data[at..at + 3].copy_from_slice(&[v, v + 10, v - 20]);
        }
    }
    for &(x1, y1, x2, y2, rgb) in rects {
        for y in y1..y2 {
            for x in x1..x2 {
                let at = (y * w + x) * 3;
                img.data[at..at + 3].copy_from_slice(&rgb);
            }
        }
    }
    img
}

const RED: [u8; 3] = [220, 30, 30];
const BLUE: [u8; 3] = [20, 40, 210];

fn two_rectangles() -> Image {
    draw(120, 80, &[(10, 15, 50, 60, RED), (70, 20, 110, 70, BLUE)])
}

fn bbox(x1: f32, y1: f32, x2: f32, y2: f32) -> BoundingBox {
    BoundingBox { x1, y1, x2, y2 }
}

fn native_size() -> SelectiveSearchConfig {
    SelectiveSearchConfig {
        long_side: None,
        ..SelectiveSearchConfig::default()
    }
}

#[test]
fn felzenszwalb_finds_the_rectangles() {
    // A flat background: unsmoothed, its pixels' small differences would otherwise be regions.
    let mut img = two_rectangles();
    for p in img.data.chunks_exact_mut(3) {
        if p != RED && p != BLUE {
            p.copy_from_slice(&[122, 132, 102]);
        }
    }
    let inside = |x: usize, y: usize, r: (usize, usize, usize, usize), margin: usize| {
        x >= r.0 + margin && x + margin < r.2 && y >= r.1 + margin && y + margin < r.3
    };
    let (red_rect, blue_rect) = ((10, 15, 50, 60), (70, 20, 110, 70));
    // Unsmoothed: exactly background, red and blue. Smoothed (sigma 0.8), the blurred edges may
    // form thin rings of their own (HSV's hue jumps there), so only the rectangles' insides
    // beyond the kernel's reach (4 pixels) are checked.
    for (sigma, margin) in [(0.0, 0), (0.8, 4)] {
        for space in [ColourSpace::Hsv, ColourSpace::Lab, ColourSpace::Rgb] {
            let seg = felzenszwalb(&img, space, sigma, 100.0, 50);
            if sigma == 0.0 {
                assert_eq!(seg.count, 3, "{space:?}");
            }
            let at = |x: usize, y: usize| seg.labels[y * 120 + x];
            let (bg, red, blue) = (at(0, 0), at(30, 40), at(90, 45));
            assert!(bg != red && bg != blue && red != blue, "{space:?}");
            for y in 0..80 {
                for x in 0..120 {
                    let want = if inside(x, y, red_rect, margin) {
                        red
                    } else if inside(x, y, blue_rect, margin) {
                        blue
                    } else if sigma == 0.0 {
                        bg
                    } else {
                        continue;
                    };
                    assert_eq!(at(x, y), want, "{space:?}, sigma {sigma}, at ({x}, {y})");
                }
            }
        }
    }
}

#[test]
fn grouping_proposes_each_rectangle() {
    let img = two_rectangles();
    let boxes = selective_search(&img, &native_size());
    assert!(boxes.contains(&bbox(10.0, 15.0, 50.0, 60.0)), "{boxes:?}");
    assert!(boxes.contains(&bbox(70.0, 20.0, 110.0, 70.0)), "{boxes:?}");
    assert!(boxes.contains(&bbox(0.0, 0.0, 120.0, 80.0)));
    // Deduplicated: every strategy finds the same three regions and their merges.
    let unique: HashSet<[u32; 4]> = boxes
        .iter()
        .map(|b| [b.x1, b.y1, b.x2, b.y2].map(f32::to_bits))
        .collect();
    assert_eq!(unique.len(), boxes.len());
}

#[test]
fn boxes_are_mapped_back_from_the_resized_image() {
    let img = two_rectangles();
    let boxes = selective_search(&img, &SelectiveSearchConfig::default());
    let close = |want: BoundingBox| {
        boxes.iter().any(|b| {
            (b.x1 - want.x1).abs() <= 0.5
                && (b.y1 - want.y1).abs() <= 0.5
                && (b.x2 - want.x2).abs() <= 0.5
                && (b.y2 - want.y2).abs() <= 0.5
        })
    };
    assert!(close(bbox(10.0, 15.0, 50.0, 60.0)), "{boxes:?}");
    assert!(close(bbox(70.0, 20.0, 110.0, 70.0)), "{boxes:?}");
    assert!(
        boxes
            .iter()
            .all(|b| b.x1 >= 0.0 && b.y1 >= 0.0 && b.x2 <= 120.0 && b.y2 <= 80.0)
    );
}

#[test]
fn ranking_is_deterministic_for_a_seed() {
    let img = draw(
        90,
        60,
        &[
            (5, 5, 30, 25, RED),
            (40, 10, 80, 50, BLUE),
            (10, 35, 25, 55, [30, 200, 40]),
            (50, 20, 60, 30, [240, 240, 40]),
        ],
    );
    let config = native_size();
    let a = selective_search(&img, &config);
    assert_eq!(a, selective_search(&img, &config));
    let parallel = SelectiveSearchConfig {
        parallel_strategies: true,
        ..config.clone()
    };
    assert_eq!(a, selective_search(&img, &parallel));
    let other = SelectiveSearchConfig {
        seed: 7,
        ..config.clone()
    };
    let b = selective_search(&img, &other);
    assert_ne!(a, b);
    let mut sa: Vec<_> = a.iter().map(|b| [b.x1, b.y1, b.x2, b.y2]).collect();
    let mut sb: Vec<_> = b.iter().map(|b| [b.x1, b.y1, b.x2, b.y2]).collect();
    sa.sort_by(|x, y| x.partial_cmp(y).unwrap());
    sb.sort_by(|x, y| x.partial_cmp(y).unwrap());
    assert_eq!(sa, sb, "the seed only reorders the proposals");
    let capped = SelectiveSearchConfig {
        max_proposals: Some(3),
        ..config
    };
    assert_eq!(selective_search(&img, &capped), a[..3].to_vec());
}

#[test]
fn degenerate_images_do_not_panic() {
    let config = SelectiveSearchConfig::default();
    assert!(selective_search(&Image::filled(0, 0, 3, 0), &config).is_empty());
    let one = selective_search(&Image::filled(1, 1, 3, 9), &native_size());
    assert_eq!(one, vec![bbox(0.0, 0.0, 1.0, 1.0)]);
    let grey = selective_search(&Image::filled(7, 3, 1, 50), &config);
    assert_eq!(grey, vec![bbox(0.0, 0.0, 7.0, 3.0)]);
}

#[test]
fn config_defaults_are_fast_mode_and_round_trip() {
    let config = SelectiveSearchConfig::default();
    assert_eq!(config.strategies(), 8);
    config.validate().unwrap();
    let text = toml::to_string(&config).unwrap();
    assert!(text.contains("\"CTSF\""), "{text}");
    let back: SelectiveSearchConfig = toml::from_str(&text).unwrap();
    assert_eq!(back, config);
    let partial: SelectiveSearchConfig =
        toml::from_str("ks = [150.0]\nsimilarities = [\"cf\"]\ncolour_spaces = [\"rgb\"]").unwrap();
    assert_eq!(partial.strategies(), 1);
    assert!(toml::from_str::<SelectiveSearchConfig>("similarities = [\"CQ\"]").is_err());
    let bad = SelectiveSearchConfig {
        ks: vec![-1.0],
        ..SelectiveSearchConfig::default()
    };
    assert!(bad.validate().is_err());
}

/// A set of two PNG images written to `dir`.
fn write_set(dir: &Path) -> DetectionSet {
    let images = [two_rectangles(), draw(64, 48, &[(8, 8, 40, 30, BLUE)])];
    let mut set = DetectionSet {
        categories: vec![Category {
            id: 1,
            name: "thing".into(),
        }],
        images: Vec::new(),
    };
    for (i, img) in images.iter().enumerate() {
        let path = dir.join(format!("img{i}.png"));
        image::RgbImage::from_raw(img.width as u32, img.height as u32, img.data.clone())
            .unwrap()
            .save(&path)
            .unwrap();
        set.images.push(AnnotatedImage {
            id: i as u64 + 1,
            path,
            width: img.width as u32,
            height: img.height as u32,
            objects: vec![Object {
                bbox: if i == 0 {
                    bbox(10.0, 15.0, 50.0, 60.0)
                } else {
                    bbox(8.0, 8.0, 40.0, 30.0)
                },
                class: 0,
                area: 0.0,
                difficult: false,
                crowd: false,
                mask: None,
            }],
        });
    }
    set
}

use std::path::Path;

#[test]
fn cache_round_trips_and_survives_a_corrupt_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = SelectiveSearchConfig::default();
    let cache = ProposalCache::new(&dir.path().join("cache"), &config).unwrap();
    let boxes = vec![bbox(1.0, 2.0, 3.5, 4.25), bbox(0.0, 0.0, 10.0, 10.0)];
    let key = cache.key(b"image bytes");
    assert_ne!(key, cache.key(b"other bytes"));
    assert_eq!(cache.load(key), None);
    cache.store(key, &boxes).unwrap();
    assert_eq!(cache.load(key), Some(boxes.clone()));
    // Another configuration keys the same bytes elsewhere.
    let other = ProposalCache::new(
        &dir.path().join("cache"),
        &SelectiveSearchConfig {
            seed: 1,
            ..config.clone()
        },
    )
    .unwrap();
    assert_ne!(other.key(b"image bytes"), key);
    // Truncated, bit-flipped, empty and foreign files read as absent.
    let path = cache.path(key);
    let good = std::fs::read(&path).unwrap();
    for bad in [
        good[..good.len() - 3].to_vec(),
        {
            let mut b = good.clone();
            b[25] ^= 0x10;
            b
        },
        Vec::new(),
        b"not a proposal file at all, but long enough".to_vec(),
    ] {
        std::fs::write(&path, &bad).unwrap();
        assert_eq!(cache.load(key), None);
    }
}

#[test]
fn propose_for_set_uses_and_repairs_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let set = write_set(dir.path());
    let cache_dir = dir.path().join("cache");
    let config = SelectiveSearchConfig::default();
    let calls = AtomicUsize::new(0);
    let first = propose_for_set_timed(&set, &config, &cache_dir, 2, |_| {
        calls.fetch_add(1, Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    assert_eq!(first.cached, vec![false, false]);
    assert!(first.mean_seconds().unwrap() > 0.0);
    let direct = selective_search(
        &kiln_data::image_folder::decode_image(&set.images[0].path, None).unwrap(),
        &config,
    );
    assert_eq!(first.boxes[0], direct);

    let second = propose_for_set_timed(&set, &config, &cache_dir, 1, |_| {}).unwrap();
    assert_eq!(second.cached, vec![true, true]);
    assert_eq!(second.boxes, first.boxes);
    assert_eq!(second.mean_seconds(), None);

    // Corrupt every cached file: the proposals are recomputed, equal, and the files repaired.
    for entry in std::fs::read_dir(&cache_dir).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        let half = bytes.len() / 2;
        bytes.truncate(half);
        std::fs::write(&path, bytes).unwrap();
    }
    let third = propose_for_set(&set, &config, &cache_dir, 1, |_| {}).unwrap();
    assert_eq!(third, first.boxes);
    let fourth = propose_for_set_timed(&set, &config, &cache_dir, 1, |_| {}).unwrap();
    assert_eq!(fourth.cached, vec![true, true]);

    // Perfect recall of the drawn rectangles.
    let gt = ground_truth_boxes(&set);
    let table = proposal_recall(&gt, &first.boxes, &[1000], &[0.5, 0.9]);
    assert_eq!(table.recall, vec![vec![1.0], vec![1.0]]);

    // A missing image is an error, not a panic.
    let mut broken = set.clone();
    broken.images[1].path = dir.path().join("missing.png");
    assert!(propose_for_set(&broken, &config, &cache_dir, 1, |_| {}).is_err());
}

use std::sync::atomic::{AtomicUsize, Ordering};

#[test]
fn recall_plot_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let gt = vec![
        vec![bbox(0.0, 0.0, 10.0, 10.0)],
        vec![bbox(5.0, 5.0, 9.0, 9.0)],
    ];
    let proposals = vec![
        vec![bbox(50.0, 50.0, 60.0, 60.0), bbox(0.0, 0.0, 10.0, 10.0)],
        vec![bbox(5.0, 5.0, 9.0, 9.5)],
    ];
    let curve = recall_curve("test", &gt, &proposals, 0.5, &[1, 2, 3]);
    assert_eq!(curve.points, vec![(1, 0.5), (2, 1.0), (3, 1.0)]);
    let path = dir.path().join("recall.png");
    save_recall_plot(&path, "recall", &[curve]).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.starts_with(b"\x89PNG"));
}
