//! Anchor boxes (Faster R-CNN): at every cell of a feature map, one box per size × aspect
//! ratio, centred on the cell's top-left corner in input pixels, as torchvision's
//! `AnchorGenerator` places them.

use serde::{Deserialize, Serialize};

use crate::data::BoundingBox;
use crate::{DetectError, Result};

/// Anchor sizes and shapes of one feature level.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnchorConfig {
    /// Square roots of the anchors' areas, in input pixels.
    pub sizes: Vec<f32>,
    /// Height / width ratios.
    pub aspect_ratios: Vec<f32>,
}

impl Default for AnchorConfig {
    fn default() -> Self {
        Self {
            sizes: vec![64.0, 128.0, 256.0, 512.0],
            aspect_ratios: vec![0.5, 1.0, 2.0],
        }
    }
}

impl AnchorConfig {
    /// Anchors per cell.
    pub fn per_cell(&self) -> usize {
        self.sizes.len() * self.aspect_ratios.len()
    }

    /// Checks that there is at least one anchor and every size and ratio is positive.
    pub fn validate(&self, what: &str) -> Result<()> {
        if self.per_cell() == 0 {
            return Err(DetectError::invalid(
                what,
                "needs at least one size and one aspect ratio",
            ));
        }
        if let Some(v) = self
            .sizes
            .iter()
            .chain(&self.aspect_ratios)
            .find(|v| !(v.is_finite() && **v > 0.0))
        {
            return Err(DetectError::invalid(
                what,
                format!("{v}: sizes and aspect ratios must be positive"),
            ));
        }
        Ok(())
    }

    /// The cell's anchors centred on the origin, ratio-major (torchvision's order), rounded to
    /// whole pixels as torchvision rounds them (half to even).
    pub fn cell_anchors(&self) -> Vec<BoundingBox> {
        let mut out = Vec::with_capacity(self.per_cell());
        for &ratio in &self.aspect_ratios {
            let h_ratio = ratio.sqrt();
            let w_ratio = 1.0 / h_ratio;
            for &size in &self.sizes {
                let (w, h) = (w_ratio * size, h_ratio * size);
                out.push(BoundingBox {
                    x1: (-w / 2.0).round_ties_even(),
                    y1: (-h / 2.0).round_ties_even(),
                    x2: (w / 2.0).round_ties_even(),
                    y2: (h / 2.0).round_ties_even(),
                });
            }
        }
        out
    }

    /// Every anchor of a `[height, width]` map of `stride` pixels per cell, cell by cell in
    /// row-major order and the cell's anchors within: index `(y · width + x) · per_cell + a`,
    /// the order the RPN head's outputs are flattened in.
    pub fn grid(&self, [height, width]: [usize; 2], stride: usize) -> Vec<BoundingBox> {
        let cell = self.cell_anchors();
        let mut out = Vec::with_capacity(height * width * cell.len());
        for y in 0..height {
            for x in 0..width {
                let (sx, sy) = ((x * stride) as f32, (y * stride) as f32);
                out.extend(cell.iter().map(|a| BoundingBox {
                    x1: a.x1 + sx,
                    y1: a.y1 + sy,
                    x2: a.x2 + sx,
                    y2: a.y2 + sy,
                }));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_anchors_keep_their_area_and_ratio() {
        let config = AnchorConfig {
            sizes: vec![32.0, 64.0],
            aspect_ratios: vec![0.5, 1.0, 2.0],
        };
        let cell = config.cell_anchors();
        assert_eq!(cell.len(), 6);
        // Ratio 1, size 64: a 64×64 square centred on the origin.
        assert_eq!(
            cell[3],
            BoundingBox {
                x1: -32.0,
                y1: -32.0,
                x2: 32.0,
                y2: 32.0
            }
        );
        // Ratio 0.5 (h/w), size 32: w = 32·√2 = 45.25, h = 22.6 → rounded ±23, ±11.
        assert_eq!(
            cell[0],
            BoundingBox {
                x1: -23.0,
                y1: -11.0,
                x2: 23.0,
                y2: 11.0
            }
        );
        // Ratio 2: taller than wide.
        assert!(cell[5].y2 - cell[5].y1 > cell[5].x2 - cell[5].x1);
    }

    #[test]
    fn the_grid_runs_cell_by_cell_in_row_major_order() {
        let config = AnchorConfig {
            sizes: vec![16.0],
            aspect_ratios: vec![1.0, 2.0],
        };
        let grid = config.grid([2, 3], 32);
        assert_eq!(grid.len(), 2 * 3 * 2);
        // Cell (y 1, x 2), anchor 0: centred on (64, 32).
        let a = grid[(3 + 2) * 2];
        assert_eq!(((a.x1 + a.x2) / 2.0, (a.y1 + a.y2) / 2.0), (64.0, 32.0));
        assert!(
            AnchorConfig {
                sizes: vec![],
                ..config.clone()
            }
            .validate("a")
            .is_err()
        );
        assert!(
            AnchorConfig {
                aspect_ratios: vec![0.0],
                ..config
            }
            .validate("a")
            .is_err()
        );
    }
}
