//! Anchor sizes fitted to a dataset (YOLOv2's dimension clusters): k-means over the training
//! boxes' `[width, height]` (as the network sees them) with `1 − IoU` of the sizes, centred on
//! each other, as the distance, so large and small boxes count alike. `kiln-detect anchors`
//! runs it and writes the sizes into a config's `[yolo.anchor]` table.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::batch::ResizeRule;
use crate::data::DetectionSet;
use crate::{DetectError, Result};

/// Anchors fitted by [`fit_anchors`] and how well they cover the boxes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AnchorFit {
    /// `[width, height]`s, smallest area first.
    pub sizes: Vec<[f32; 2]>,
    /// Mean over the boxes of the best IoU with an anchor (YOLOv2's "Avg IoU").
    pub mean_iou: f64,
    /// Share of boxes some anchor matches within `match_ratio` (YOLOv5's best possible recall).
    pub matched: f64,
    /// Boxes clustered.
    pub boxes: usize,
}

/// The IoU of two sizes placed on the same centre.
pub fn size_iou(a: [f32; 2], b: [f32; 2]) -> f32 {
    let inter = a[0].min(b[0]) * a[1].min(b[1]);
    inter / (a[0] * a[1] + b[0] * b[1] - inter).max(f32::MIN_POSITIVE)
}

/// The `[width, height]` of every object of `set` after `rule` resizes its image.
pub fn box_sizes(set: &DetectionSet, rule: &ResizeRule) -> Vec<[f32; 2]> {
    set.images
        .iter()
        .flat_map(|image| {
            let [w, h] = rule.output_size([image.width as usize, image.height as usize]);
            let (sx, sy) = (
                w as f32 / image.width.max(1) as f32,
                h as f32 / image.height.max(1) as f32,
            );
            image
                .objects
                .iter()
                .map(move |o| [(o.bbox.x2 - o.bbox.x1) * sx, (o.bbox.y2 - o.bbox.y1) * sy])
        })
        .filter(|[w, h]| *w > 0.0 && *h > 0.0)
        .collect()
}

fn nearest(size: [f32; 2], centres: &[[f32; 2]]) -> (usize, f32) {
    centres
        .iter()
        .enumerate()
        .map(|(k, &c)| (k, size_iou(size, c)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((0, 0.0))
}

/// One k-means run from a k-means++ start drawn with `rng`; returns the centres.
fn kmeans_once(sizes: &[[f32; 2]], k: usize, rng: &mut ChaCha8Rng) -> Vec<[f32; 2]> {
    let mut centres = vec![sizes[rng.random_range(0..sizes.len())]];
    while centres.len() < k {
        let distances: Vec<f32> = sizes
            .iter()
            .map(|&s| (1.0 - nearest(s, &centres).1).powi(2))
            .collect();
        let total: f32 = distances.iter().sum();
        if total <= 0.0 {
            break;
        }
        let mut pick = rng.random_range(0.0..total);
        let index = distances
            .iter()
            .position(|&d| {
                pick -= d;
                pick <= 0.0
            })
            .unwrap_or(sizes.len() - 1);
        centres.push(sizes[index]);
    }
    for _ in 0..300 {
        let mut sums = vec![[0.0f64; 3]; centres.len()];
        for &s in sizes {
            let (k, _) = nearest(s, &centres);
            sums[k] = [
                sums[k][0] + s[0] as f64,
                sums[k][1] + s[1] as f64,
                sums[k][2] + 1.0,
            ];
        }
        let moved: Vec<[f32; 2]> = centres
            .iter()
            .zip(&sums)
            .map(|(&c, s)| {
                if s[2] > 0.0 {
                    [(s[0] / s[2]) as f32, (s[1] / s[2]) as f32]
                } else {
                    c
                }
            })
            .collect();
        if moved == centres {
            break;
        }
        centres = moved;
    }
    centres
}

/// `k` anchor sizes clustering `sizes` (best of `restarts` seeded k-means++ runs by mean IoU),
/// with the share of sizes matched within `match_ratio`.
pub fn fit_anchors(
    sizes: &[[f32; 2]],
    k: usize,
    match_ratio: f32,
    seed: u64,
    restarts: usize,
) -> Result<AnchorFit> {
    let mut distinct = sizes.to_vec();
    distinct.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    distinct.dedup();
    if k == 0 || distinct.len() < k {
        return Err(DetectError::invalid(
            "anchors",
            format!(
                "{k} anchors need at least {k} different box sizes; the data has {}",
                distinct.len()
            ),
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mean_iou = |centres: &[[f32; 2]]| {
        sizes
            .iter()
            .map(|&s| nearest(s, centres).1 as f64)
            .sum::<f64>()
            / sizes.len() as f64
    };
    let mut best = kmeans_once(sizes, k, &mut rng);
    for _ in 1..restarts.max(1) {
        let candidate = kmeans_once(sizes, k, &mut rng);
        if mean_iou(&candidate) > mean_iou(&best) {
            best = candidate;
        }
    }
    best.sort_by(|a, b| (a[0] * a[1]).total_cmp(&(b[0] * b[1])));
    let best: Vec<[f32; 2]> = best
        .into_iter()
        .map(|[w, h]| [(w * 10.0).round() / 10.0, (h * 10.0).round() / 10.0])
        .collect();
    let matched = sizes
        .iter()
        .filter(|&&[w, h]| {
            best.iter()
                .any(|&[aw, ah]| (w / aw).max(aw / w).max(h / ah).max(ah / h) < match_ratio)
        })
        .count() as f64
        / sizes.len() as f64;
    Ok(AnchorFit {
        mean_iou: mean_iou(&best),
        sizes: best,
        matched,
        boxes: sizes.len(),
    })
}

/// `config_text` (a `kiln-detect` TOML config) with its `[yolo.anchor]` `sizes` set to `sizes`,
/// every other line (comments included) kept: the `sizes` line (or multi-line array) is
/// replaced, added under the table's header, or the table is appended.
pub fn write_anchor_sizes(config_text: &str, sizes: &[[f32; 2]]) -> String {
    let value = format!(
        "sizes = [{}]",
        sizes
            .iter()
            .map(|[w, h]| format!("[{w}, {h}]"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let lines: Vec<&str> = config_text.lines().collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len() + 2);
    let mut in_table = false;
    let mut saw_table = false;
    let mut written = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if is_header(line) {
            if in_table && !written {
                out.push(value.clone());
                written = true;
            }
            in_table = line.split('#').next().unwrap_or("").trim() == "[yolo.anchor]";
            saw_table |= in_table;
            out.push(line.to_string());
            i += 1;
            continue;
        }
        let is_sizes = trimmed
            .strip_prefix("sizes")
            .is_some_and(|rest| rest.trim_start().starts_with('='));
        if in_table && is_sizes && !written {
            // Skip the old value, which may span lines until its brackets balance.
            let mut depth = 0i32;
            loop {
                let text = lines[i].split('#').next().unwrap_or("");
                depth += text.matches('[').count() as i32 - text.matches(']').count() as i32;
                i += 1;
                if depth <= 0 || i >= lines.len() {
                    break;
                }
            }
            out.push(value.clone());
            written = true;
            continue;
        }
        out.push(line.to_string());
        i += 1;
    }
    if in_table && !written {
        out.push(value.clone());
        written = true;
    }
    if !saw_table && !written {
        out.push(String::new());
        out.push("[yolo.anchor]".into());
        out.push(value);
    }
    let mut text = out.join("\n");
    text.push('\n');
    text
}

/// Whether `line` is a table header (`[name]` or `[[name]]`), not a line of a multi-line array.
fn is_header(line: &str) -> bool {
    let text = line.split('#').next().unwrap_or("").trim();
    let inner = text.trim_start_matches('[');
    text.starts_with('[')
        && text.ends_with(']')
        && !text.contains(',')
        && inner
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_' || c == '"')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DetectConfig;

    #[test]
    fn kmeans_finds_well_separated_clusters() {
        // Three tight clusters of sizes around 10×20, 50×50 and 200×100.
        let mut sizes = Vec::new();
        for k in 0..30 {
            let d = (k % 5) as f32 * 0.4;
            sizes.push([10.0 + d, 20.0 - d]);
            sizes.push([50.0 - d, 50.0 + d]);
            sizes.push([200.0 + d, 100.0 + d]);
        }
        let fit = fit_anchors(&sizes, 3, 4.0, 0, 5).unwrap();
        assert_eq!(fit.boxes, 90);
        let expected = [[10.8, 19.2], [49.2, 50.8], [200.8, 100.8]];
        for (got, want) in fit.sizes.iter().zip(expected) {
            assert!(
                (got[0] - want[0]).abs() < 0.05 && (got[1] - want[1]).abs() < 0.05,
                "{got:?}"
            );
        }
        assert!(fit.mean_iou > 0.95, "{}", fit.mean_iou);
        assert_eq!(fit.matched, 1.0);
        assert!(fit_anchors(&sizes[..2], 3, 4.0, 0, 1).is_err());
    }

    #[test]
    fn sizes_are_written_into_the_config_keeping_everything_else() {
        let text = "# a comment\nmethod = \"yolo\"\n\n[yolo.anchor]\n# fitted\nsizes = [\n  [1, 2],\n  [3, 4],\n]\nneck_channels = 64\n\n[train]\nepochs = 3\n";
        let sizes = [[12.5, 20.0], [100.0, 80.0]];
        let written = write_anchor_sizes(text, &sizes);
        assert!(written.starts_with("# a comment\n"));
        assert!(written.contains("# fitted\nsizes = [[12.5, 20], [100, 80]]\nneck_channels = 64"));
        let config: DetectConfig = toml::from_str(&written).unwrap();
        assert_eq!(config.yolo.anchor.sizes, sizes.to_vec());
        assert_eq!(config.yolo.anchor.neck_channels, 64);
        assert_eq!(config.train.epochs, 3);
        // Without the table: appended.
        let appended = write_anchor_sizes("method = \"yolo\"\n", &sizes);
        let config: DetectConfig = toml::from_str(&appended).unwrap();
        assert_eq!(config.yolo.anchor.sizes, sizes.to_vec());
        // A table without a sizes line: added under its header.
        let added = write_anchor_sizes(
            "[yolo.anchor]\nneck_channels = 32\n[train]\nepochs = 1\n",
            &sizes,
        );
        let config: DetectConfig = toml::from_str(&added).unwrap();
        assert_eq!(config.yolo.anchor.sizes, sizes.to_vec());
        assert_eq!(config.yolo.anchor.neck_channels, 32);
    }
}
