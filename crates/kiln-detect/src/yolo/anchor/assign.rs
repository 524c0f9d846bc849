//! Which predictions learn each object (YOLOv5's `build_targets`): on every level, each anchor
//! whose width and height are both within `match_ratio` of the object's (either way) is matched
//! in the cell holding the object's centre and, with `neighbour_cells`, in the horizontal and the
//! vertical neighbour nearest that centre — up to three cells per anchor. The decoding of
//! [`super::loss`] lets a cell's box centre move half a cell beyond it, so the neighbours can
//! reach the centre. Unlike YOLOv3's rule (best anchor only, centre cell only), an object is
//! learned by several predictions, which matters with few training images.

use crate::batch::ImageInfo;
use crate::data::BoundingBox;
use crate::yolo::config::AnchorHeadConfig;

/// One prediction that learns one object.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Match {
    /// Row of the prediction in its level's `[batch × anchors × h × w, 5 + classes]` table.
    pub row: usize,
    /// The cell `(column, row)`.
    pub cell: [usize; 2],
    /// The anchor's `[width, height]` in input pixels.
    pub anchor: [f32; 2],
    /// The object's box in input pixels.
    pub target: BoundingBox,
    /// The object's class.
    pub label: usize,
}

/// The matches of a batch on each level (finest first) whose maps are `[height, width]` cells.
pub fn assign(
    infos: &[ImageInfo],
    level_sizes: &[[usize; 2]],
    config: &AnchorHeadConfig,
) -> Vec<Vec<Match>> {
    let per_level = config.per_level();
    level_sizes
        .iter()
        .enumerate()
        .map(|(level, &[h, w])| {
            let stride = config.strides[level] as f32;
            let anchors = config.level_sizes(level);
            let mut matches = Vec::new();
            for (image, info) in infos.iter().enumerate() {
                for (target, &label) in info.boxes.iter().zip(&info.labels) {
                    let (bw, bh) = (target.x2 - target.x1, target.y2 - target.y1);
                    if bw <= 0.0 || bh <= 0.0 {
                        continue;
                    }
                    let gx = (target.x1 + target.x2) / 2.0 / stride;
                    let gy = (target.y1 + target.y2) / 2.0 / stride;
                    let cells = cells_of(gx, gy, w, h, config.neighbour_cells);
                    for (a, &anchor) in anchors.iter().enumerate() {
                        let ratio = (bw / anchor[0])
                            .max(anchor[0] / bw)
                            .max(bh / anchor[1])
                            .max(anchor[1] / bh);
                        if ratio >= config.match_ratio {
                            continue;
                        }
                        for &[cx, cy] in &cells {
                            matches.push(Match {
                                row: ((image * per_level + a) * h + cy) * w + cx,
                                cell: [cx, cy],
                                anchor,
                                target: *target,
                                label,
                            });
                        }
                    }
                }
            }
            matches
        })
        .collect()
}

/// The cell holding grid point `(gx, gy)` and, with `neighbours`, the horizontal and vertical
/// neighbours on the sides the point is nearer to (inside the `w`×`h` grid).
fn cells_of(gx: f32, gy: f32, w: usize, h: usize, neighbours: bool) -> Vec<[usize; 2]> {
    let clamp = |v: f32, n: usize| (v.floor().max(0.0) as usize).min(n - 1);
    let (i, j) = (clamp(gx, w), clamp(gy, h));
    let mut cells = vec![[i, j]];
    if neighbours {
        let (fx, fy) = (gx - i as f32, gy - j as f32);
        if fx < 0.5 && i > 0 {
            cells.push([i - 1, j]);
        } else if fx > 0.5 && i + 1 < w {
            cells.push([i + 1, j]);
        }
        if fy < 0.5 && j > 0 {
            cells.push([i, j - 1]);
        } else if fy > 0.5 && j + 1 < h {
            cells.push([i, j + 1]);
        }
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(boxes: Vec<BoundingBox>) -> ImageInfo {
        let labels = vec![0; boxes.len()];
        ImageInfo {
            image_id: 1,
            original_size: [64, 64],
            input_size: [64, 64],
            boxes,
            labels,
            proposals: vec![],
            masks: Vec::new(),
        }
    }

    #[test]
    fn anchors_within_the_ratio_match_in_the_centre_cell_and_its_nearest_neighbours() {
        let config = AnchorHeadConfig {
            strides: vec![16, 32],
            sizes: vec![[8.0, 8.0], [40.0, 20.0], [64.0, 64.0], [200.0, 200.0]],
            level_weights: vec![1.0, 0.4],
            ..Default::default()
        };
        // A 40×20 box centred at (20, 44): on stride 16 it is at grid point (1.25, 2.75) →
        // cell (1, 2), nearer the left (0, 2) and the lower (1, 3) neighbours.
        let object = BoundingBox {
            x1: 0.0,
            y1: 34.0,
            x2: 40.0,
            y2: 54.0,
        };
        let levels = assign(&[info(vec![object])], &[[4, 4], [2, 2]], &config);
        // Stride 16: anchor 8×8 is 5× too narrow (≥ 4: no match); 40×20 matches in 3 cells.
        let cells: Vec<[usize; 2]> = levels[0].iter().map(|m| m.cell).collect();
        assert_eq!(cells, vec![[1, 2], [0, 2], [1, 3]]);
        assert!(levels[0].iter().all(|m| m.anchor == [40.0, 20.0]));
        // Row of anchor 1, cell (0, 2) of image 0 on a 4×4 map: (1 × 4 + 2) × 4 + 0.
        assert_eq!(levels[0][1].row, 24);
        // Stride 32: grid point (0.625, 1.375) → cell (0, 1); 64×64 is 3.2× the height
        // (matches), 200×200 is 10× (does not); neighbours: right (1, 1) and upper (0, 0).
        let cells: Vec<[usize; 2]> = levels[1].iter().map(|m| m.cell).collect();
        assert_eq!(cells, vec![[0, 1], [1, 1], [0, 0]]);
        // YOLOv3's rule: the centre cell only.
        let centre_only = AnchorHeadConfig {
            neighbour_cells: false,
            ..config
        };
        let levels = assign(&[info(vec![object])], &[[4, 4], [2, 2]], &centre_only);
        assert_eq!(levels[0].len(), 1);
    }
}
