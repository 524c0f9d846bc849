//! The `[yolo]` table: which head, the input size, the head's own table (`[yolo.v1]` or
//! `[yolo.anchor]`), and the test-time rule.

use serde::{Deserialize, Serialize};

use crate::batch::ResizeRule;
use crate::two_stage::{DetectionRule, ScaleJitter};
use crate::{DetectError, Result};

/// Which YOLO a config trains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum YoloHead {
    /// The single-stage detector with anchor boxes on strides 16 and 32 ([`super::anchor`]).
    #[default]
    Anchor,
    /// YOLOv1 (Redmon et al. 2016): an S×S grid predicted by fully connected layers
    /// ([`super::v1`]).
    V1,
}

/// The box loss of the anchor head.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IouLoss {
    /// `1 − CIoU` (centre distance and aspect ratio terms; YOLOv4/v5).
    #[default]
    Ciou,
    /// `1 − GIoU` (the empty part of the enclosing box).
    Giou,
}

/// YOLOv1's grid, predictors and loss weights (`[yolo.v1]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct YoloV1Config {
    /// Cells per side, S (the paper: 7). The input side must be 64·S: the backbone's
    /// stride-32 map is reduced to S×S by a stride-2 convolution, as in the paper.
    pub grid: usize,
    /// Boxes each cell predicts, B (the paper: 2).
    pub boxes: usize,
    /// Channels of the convolutions between the backbone and the fully connected layers.
    pub channels: usize,
    /// Width of the hidden fully connected layer (the paper: 4,096).
    pub hidden: usize,
    /// Dropout after the hidden layer (the paper: 0.5).
    pub dropout: f64,
    /// λcoord, the weight of the coordinate errors (the paper: 5).
    pub coord_weight: f32,
    /// λnoobj, the weight of the confidence errors of predictors without an object (0.5).
    pub noobj_weight: f32,
}

impl Default for YoloV1Config {
    fn default() -> Self {
        Self {
            grid: 7,
            boxes: 2,
            channels: 256,
            hidden: 1024,
            dropout: 0.5,
            coord_weight: 5.0,
            noobj_weight: 0.5,
        }
    }
}

/// The anchor head's levels, anchors and loss (`[yolo.anchor]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnchorHeadConfig {
    /// Strides of the backbone maps predicted on, finest first.
    pub strides: Vec<usize>,
    /// Anchor `[width, height]`s in input pixels, smallest first, split evenly over the
    /// strides (the first share on the finest); `kiln-detect anchors` fits them by k-means.
    pub sizes: Vec<[f32; 2]>,
    /// Channels of the neck (lateral 1×1 and output 3×3 convolutions per level).
    pub neck_channels: usize,
    /// The box loss.
    pub box_loss: IouLoss,
    /// Weight of the box loss (YOLOv5: 0.05, scaled by 3 / levels).
    pub box_weight: f32,
    /// Weight of the objectness loss (YOLOv5: 1.0, scaled by 3 / levels and (input / 640)²).
    pub objectness_weight: f32,
    /// Weight of the class loss (YOLOv5: 0.5, scaled by 3 / levels and classes / 80; unused with
    /// one class).
    pub class_weight: f32,
    /// An object is matched to an anchor when neither side ratio exceeds this (YOLOv5: 4).
    pub match_ratio: f32,
    /// Objectness loss weight per level, finest first (YOLOv5's balance for two levels: 4, 1).
    pub level_weights: Vec<f32>,
    /// Also match an object in the two neighbouring cells nearest its centre (YOLOv5), tripling
    /// the positives; off: only the cell holding the centre (YOLOv3).
    pub neighbour_cells: bool,
}

impl Default for AnchorHeadConfig {
    fn default() -> Self {
        Self {
            strides: vec![16, 32],
            // YOLOv3-tiny's COCO anchors at 416: replace with `kiln-detect anchors`.
            sizes: vec![
                [10.0, 14.0],
                [23.0, 27.0],
                [37.0, 58.0],
                [81.0, 82.0],
                [135.0, 169.0],
                [344.0, 319.0],
            ],
            neck_channels: 128,
            box_loss: IouLoss::Ciou,
            box_weight: 0.05,
            objectness_weight: 1.0,
            class_weight: 0.5,
            match_ratio: 4.0,
            level_weights: vec![4.0, 1.0],
            neighbour_cells: true,
        }
    }
}

impl AnchorHeadConfig {
    /// Anchors per cell on each level.
    pub fn per_level(&self) -> usize {
        self.sizes.len() / self.strides.len().max(1)
    }

    /// The anchors of level `level` (finest first).
    pub fn level_sizes(&self, level: usize) -> &[[f32; 2]] {
        let a = self.per_level();
        &self.sizes[level * a..(level + 1) * a]
    }
}

/// YOLO's settings (`[yolo]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct YoloConfig {
    /// Which YOLO.
    pub head: YoloHead,
    /// Input side: YOLOv1 warps images to this square (the paper: 448); the anchor head
    /// scales their long side to it, keeping the aspect ratio (letterbox, padded to stride 32).
    pub input_size: usize,
    /// Multi-scale training: each batch rescaled by a random factor (anchor head only; off when
    /// absent; e.g. `scale_jitter = { range = [0.75, 1.25] }`).
    pub scale_jitter: Option<ScaleJitter>,
    /// YOLOv1's settings.
    pub v1: YoloV1Config,
    /// The anchor head's settings.
    pub anchor: AnchorHeadConfig,
    /// Test-time rule (score threshold, per-class NMS, detections per image).
    pub detection: DetectionRule,
    /// Images per evaluation step.
    pub eval_batch: usize,
}

impl Default for YoloConfig {
    fn default() -> Self {
        Self {
            head: YoloHead::Anchor,
            input_size: 416,
            scale_jitter: None,
            v1: YoloV1Config::default(),
            anchor: AnchorHeadConfig::default(),
            detection: DetectionRule {
                score_threshold: 0.01,
                ..DetectionRule::default()
            },
            eval_batch: 8,
        }
    }
}

impl YoloConfig {
    /// How the batcher sizes images for this head.
    pub fn resize(&self) -> ResizeRule {
        match self.head {
            YoloHead::V1 => ResizeRule::Square {
                size: self.input_size,
            },
            YoloHead::Anchor => ResizeRule::ShortSide {
                short_side: self.input_size,
                max_long_side: self.input_size,
            },
        }
    }

    /// Checks every setting, naming the first one out of range.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, reason: String| Err(DetectError::invalid(what, reason));
        if self.input_size < 64 || !self.input_size.is_multiple_of(32) {
            return bad(
                "[yolo] input_size",
                format!(
                    "{} must be a multiple of 32 (the backbone's stride), at least 64",
                    self.input_size
                ),
            );
        }
        if self.eval_batch == 0 {
            return bad("[yolo] eval_batch", "must be positive".into());
        }
        self.detection.validate("[yolo.detection]")?;
        if let Some(jitter) = &self.scale_jitter {
            jitter.validate("[yolo] scale_jitter")?;
            if self.head == YoloHead::V1 {
                return bad(
                    "[yolo] scale_jitter",
                    "YOLOv1's fully connected layers need one input size; remove scale_jitter"
                        .into(),
                );
            }
        }
        match self.head {
            YoloHead::V1 => self.validate_v1(),
            YoloHead::Anchor => self.validate_anchor(),
        }
    }

    fn validate_v1(&self) -> Result<()> {
        let v = &self.v1;
        if v.grid == 0 || v.boxes == 0 || v.channels == 0 || v.hidden == 0 {
            return Err(DetectError::invalid(
                "[yolo.v1]",
                "grid, boxes, channels and hidden must be positive",
            ));
        }
        if self.input_size != 64 * v.grid {
            return Err(DetectError::invalid(
                "[yolo] input_size",
                format!(
                    "YOLOv1 with grid {} needs input_size {} (64 × grid: the stride-32 map is halved to the grid)",
                    v.grid,
                    64 * v.grid
                ),
            ));
        }
        let weights_ok = [v.coord_weight, v.noobj_weight]
            .iter()
            .all(|w| w.is_finite() && *w >= 0.0);
        if !weights_ok || !(0.0..1.0).contains(&v.dropout) {
            return Err(DetectError::invalid(
                "[yolo.v1]",
                "coord_weight and noobj_weight must be ≥ 0 and dropout in [0, 1)",
            ));
        }
        Ok(())
    }

    fn validate_anchor(&self) -> Result<()> {
        let a = &self.anchor;
        let what = "[yolo.anchor]";
        if a.strides.is_empty()
            || a.strides.windows(2).any(|w| w[0] >= w[1])
            || a.strides.iter().any(|s| !s.is_power_of_two() || *s > 32)
        {
            return Err(DetectError::invalid(
                what,
                format!(
                    "strides {:?} must rise, be powers of two and at most 32",
                    a.strides
                ),
            ));
        }
        if a.sizes.is_empty() || !a.sizes.len().is_multiple_of(a.strides.len()) {
            return Err(DetectError::invalid(
                what,
                format!(
                    "{} anchor sizes cannot be split evenly over {} strides",
                    a.sizes.len(),
                    a.strides.len()
                ),
            ));
        }
        if a.sizes
            .iter()
            .flatten()
            .any(|s| !(s.is_finite() && *s > 0.0))
        {
            return Err(DetectError::invalid(what, "anchor sizes must be positive"));
        }
        if a.level_weights.len() != a.strides.len() {
            return Err(DetectError::invalid(
                what,
                format!(
                    "level_weights has {} entries for {} strides",
                    a.level_weights.len(),
                    a.strides.len()
                ),
            ));
        }
        let weights = [a.box_weight, a.objectness_weight, a.class_weight];
        if weights
            .iter()
            .chain(&a.level_weights)
            .any(|w| !(w.is_finite() && *w >= 0.0))
            || a.match_ratio <= 1.0
            || a.neck_channels == 0
        {
            return Err(DetectError::invalid(
                what,
                "loss weights must be ≥ 0, match_ratio > 1 and neck_channels positive",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_settings_name_themselves() {
        YoloConfig::default().validate().unwrap();
        let v1 = YoloConfig {
            head: YoloHead::V1,
            input_size: 448,
            ..Default::default()
        };
        v1.validate().unwrap();
        let wrong_size = YoloConfig {
            input_size: 416,
            ..v1.clone()
        };
        let message = wrong_size.validate().unwrap_err().to_string();
        assert!(message.contains("448"), "{message}");
        let mut uneven = YoloConfig::default();
        uneven.anchor.sizes.pop();
        let message = uneven.validate().unwrap_err().to_string();
        assert!(message.contains("[yolo.anchor]"), "{message}");
        let jitter_on_v1 = YoloConfig {
            scale_jitter: Some(ScaleJitter { range: [0.8, 1.2] }),
            ..v1
        };
        assert!(jitter_on_v1.validate().is_err());
    }

    #[test]
    fn anchors_are_split_over_the_levels_finest_first() {
        let head = AnchorHeadConfig::default();
        assert_eq!(head.per_level(), 3);
        assert_eq!(head.level_sizes(1)[0], [81.0, 82.0]);
    }
}
