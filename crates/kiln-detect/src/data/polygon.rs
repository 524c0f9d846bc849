//! Polygon outlines rasterised into masks exactly as pycocotools rasterises COCO polygons
//! (`maskApi.c`'s `rleFrPoly`), so that masks — and so mask IoU and mask AP — agree with
//! pycocotools' for the same annotation.
//!
//! The rule: vertices are scaled by 5 and rounded; the outline is traced densely between them
//! (one point per step along the longer axis); every point where the traced x changes marks a
//! crossing of a pixel column's centre line, at the (downscaled, rounded up) row where the
//! column's inside starts or ends; sorting those column-major positions and differencing them
//! gives the run lengths. A pixel is inside when its centre is — close to the even–odd rule.

use super::rle::Rle;

/// The supersampling factor of the outline.
const SCALE: f64 = 5.0;

/// Rasterises one polygon, `[x0, y0, x1, y1, …]` in continuous pixel coordinates, into a
/// `height × width` mask. Callers check that it has at least 3 points.
pub fn polygon_to_rle(xy: &[f64], height: u32, width: u32) -> Rle {
    let k = xy.len() / 2;
    let (h, w) = (i64::from(height), i64::from(width));
    // Scaled, rounded vertices, closed.
    let round = |v: f64| (SCALE * v + 0.5) as i64;
    let mut x: Vec<i64> = (0..k).map(|j| round(xy[2 * j])).collect();
    let mut y: Vec<i64> = (0..k).map(|j| round(xy[2 * j + 1])).collect();
    if k > 0 {
        x.push(x[0]);
        y.push(y[0]);
    }
    // Dense points along every edge.
    let (mut u, mut v) = (Vec::new(), Vec::new());
    for j in 0..k {
        let (mut xs, mut xe, mut ys, mut ye) = (x[j], x[j + 1], y[j], y[j + 1]);
        let (dx, dy) = ((xe - xs).abs(), (ys - ye).abs());
        let flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye);
        if flip {
            std::mem::swap(&mut xs, &mut xe);
            std::mem::swap(&mut ys, &mut ye);
        }
        if dx >= dy {
            let s = if dx == 0 {
                0.0
            } else {
                (ye - ys) as f64 / dx as f64
            };
            for d in 0..=dx {
                let t = if flip { dx - d } else { d };
                u.push(t + xs);
                v.push((ys as f64 + s * t as f64 + 0.5) as i64);
            }
        } else {
            let s = (xe - xs) as f64 / dy as f64;
            for d in 0..=dy {
                let t = if flip { dy - d } else { d };
                v.push(t + ys);
                u.push((xs as f64 + s * t as f64 + 0.5) as i64);
            }
        }
    }
    // Crossings of column centre lines, downsampled to pixel rows.
    let mut positions: Vec<u64> = Vec::new();
    for j in 1..u.len() {
        if u[j] == u[j - 1] {
            continue;
        }
        let xd = if u[j] < u[j - 1] { u[j] } else { u[j] - 1 } as f64;
        let xd = (xd + 0.5) / SCALE - 0.5;
        if xd.floor() != xd || xd < 0.0 || xd > (w - 1) as f64 {
            continue;
        }
        let yd = v[j].min(v[j - 1]) as f64;
        let yd = ((yd + 0.5) / SCALE - 0.5).clamp(0.0, h as f64).ceil();
        positions.push((xd as i64 * h + yd as i64) as u64);
    }
    positions.push((h * w) as u64);
    positions.sort_unstable();
    // Differences are run lengths; zero-length runs merge their neighbours.
    let mut previous = 0u64;
    let diffs: Vec<u64> = positions
        .iter()
        .map(|&p| {
            let d = p - previous;
            previous = p;
            d
        })
        .collect();
    let mut counts: Vec<u32> = Vec::with_capacity(diffs.len());
    let mut j = 0;
    if let Some(&first) = diffs.first() {
        counts.push(first as u32);
        j = 1;
    }
    while j < diffs.len() {
        if diffs[j] > 0 {
            counts.push(diffs[j] as u32);
            j += 1;
        } else {
            j += 1;
            if j < diffs.len() {
                *counts.last_mut().expect("one count pushed first") += diffs[j] as u32;
                j += 1;
            }
        }
    }
    Rle {
        height,
        width,
        counts,
    }
}

/// Rasterises the polygons of one object (COCO's list of outlines) and merges them, as
/// pycocotools' `annToRLE` does.
pub fn polygons_to_rle(polygons: &[Vec<f64>], height: u32, width: u32) -> Rle {
    let parts: Vec<Rle> = polygons
        .iter()
        .map(|p| polygon_to_rle(p, height, width))
        .collect();
    Rle::union(&parts, height, width)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_axis_aligned_square_covers_the_pixels_whose_centres_it_contains() {
        // The square (1, 1)–(3, 3) in a 5×5 image covers pixels 1..3 in x and y.
        let rle = polygon_to_rle(&[1.0, 1.0, 3.0, 1.0, 3.0, 3.0, 1.0, 3.0], 5, 5);
        let mut expected = vec![0u8; 25];
        for y in 1..3 {
            for x in 1..3 {
                expected[y * 5 + x] = 1;
            }
        }
        assert_eq!(rle.to_bitmap(), expected);
        assert_eq!(rle.area(), 4);
    }

    #[test]
    fn a_triangle_matches_pycocotools() {
        // pycocotools 2.0: mask.frPyObjects([[0.5, 0.5, 6.2, 1.0, 2.0, 5.7]], 7, 8), decoded:
        //   row 1: columns 1–5, row 2: 1–4, row 3: 1–3, row 4: column 2.
        let rle = polygon_to_rle(&[0.5, 0.5, 6.2, 1.0, 2.0, 5.7], 7, 8);
        assert_eq!(rle.counts, vec![8, 3, 4, 4, 3, 3, 4, 2, 5, 1, 19]);
    }

    #[test]
    fn outlines_beyond_the_image_are_clipped() {
        let rle = polygon_to_rle(&[-3.0, -3.0, 10.0, -3.0, 10.0, 10.0, -3.0, 10.0], 4, 6);
        assert_eq!(rle.area(), 24);
        assert_eq!(rle.counts, vec![0, 24]);
    }

    #[test]
    fn several_outlines_are_merged() {
        let a = vec![0.0, 0.0, 2.0, 0.0, 2.0, 2.0, 0.0, 2.0];
        let b = vec![3.0, 3.0, 5.0, 3.0, 5.0, 5.0, 3.0, 5.0];
        let rle = polygons_to_rle(&[a, b], 6, 6);
        assert_eq!(rle.area(), 8);
    }
}
