//! Settings of the two-stage detectors' box head and of Fast R-CNN (`[fast_rcnn]` in a
//! `kiln-detect` config).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::scale::ScaleJitter;

use super::sampler::RoiSampling;
use crate::batch::{ImageInfo, ResizeRule};
use crate::data::{BoundingBox, Detection};
use crate::ops::host::{batched_nms, clip};
use crate::ops::{RoiAlignConfig, RoiPoolConfig};
use crate::proposals::SelectiveSearchConfig;
use crate::{DetectError, Result};

/// How a region's features are cut from the feature map.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum RoiOp {
    /// RoIAlign (Mask R-CNN): bilinear samples, no rounding.
    Align {
        /// Samples per bin along each side; 0 samples `⌈region side / bins⌉` (adaptive).
        sampling_ratio: usize,
        /// Half-pixel alignment (`aligned=True` in torchvision).
        aligned: bool,
    },
    /// RoIPool (Fast R-CNN): the maximum over bins rounded to whole cells.
    Pool,
}

impl RoiOp {
    /// The op on a map of `stride` pixels per cell, `bins`×`bins` per region.
    pub fn pooler(&self, bins: usize, stride: usize) -> RoiPooler {
        let scale = 1.0 / stride.max(1) as f32;
        match *self {
            RoiOp::Align {
                sampling_ratio,
                aligned,
            } => RoiPooler::Align(
                RoiAlignConfig::new([bins, bins])
                    .with_spatial_scale(scale)
                    .with_sampling_ratio((sampling_ratio > 0).then_some(sampling_ratio))
                    .with_aligned(aligned),
            ),
            RoiOp::Pool => {
                RoiPooler::Pool(RoiPoolConfig::new([bins, bins]).with_spatial_scale(scale))
            }
        }
    }
}

/// A configured RoI op (see [`RoiOp::pooler`]).
#[derive(Clone, Debug, PartialEq)]
pub enum RoiPooler {
    /// [`crate::ops::roi_align`] with these settings.
    Align(RoiAlignConfig),
    /// [`crate::ops::roi_pool`] with these settings.
    Pool(RoiPoolConfig),
}

/// The box head: a 1×1 convolution narrowing the backbone's last map, the RoI op, two fully
/// connected layers, and a classifier (background + classes) and class-specific box deltas.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BoxHeadConfig {
    /// Channels the 1×1 convolution narrows the backbone's last map to before the RoI op
    /// (torchvision pools the full 1,280 channels of EfficientNet-Lite0 into a 62,720-wide first
    /// layer; 256 is what its FPN models pool).
    pub neck_channels: usize,
    /// The RoI op.
    pub roi: RoiOp,
    /// Bins per region side (7).
    pub bins: usize,
    /// Width of the two fully connected layers (1,024).
    pub hidden: usize,
    /// Weights of the box coding `(x, y, w, h)` (torchvision: 10, 10, 5, 5).
    pub box_weights: [f32; 4],
    /// The smooth-L1 box loss's quadratic zone (torchvision: 1/9).
    pub smooth_l1_beta: f32,
    /// Stride of the map regions are pooled from: 32 (the backbone's last map through the
    /// neck) or 16 (that map upsampled 2× and added to a 1×1 projection of the stride-16 map,
    /// one top-down step of a feature pyramid: four times the cells, for small objects and
    /// masks).
    pub feature_stride: usize,
}

impl Default for BoxHeadConfig {
    fn default() -> Self {
        Self {
            neck_channels: 256,
            roi: RoiOp::Align {
                sampling_ratio: 2,
                aligned: false,
            },
            bins: 7,
            hidden: 1024,
            box_weights: [10.0, 10.0, 5.0, 5.0],
            smooth_l1_beta: 1.0 / 9.0,
            feature_stride: 32,
        }
    }
}

/// What a detector reports at test time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionRule {
    /// Class scores below this are dropped (torchvision: 0.05).
    pub score_threshold: f32,
    /// Per-class NMS IoU (torchvision: 0.5).
    pub nms_iou: f32,
    /// Detections per image, best first (100).
    pub max_detections: usize,
    /// Boxes narrower or lower than this many input pixels are dropped.
    pub min_size: f32,
}

/// One scored box of one class, in input pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// The box.
    pub bbox: BoundingBox,
    /// Its score for `class`.
    pub score: f32,
    /// Class index.
    pub class: usize,
}

impl DetectionRule {
    /// The detections (input pixels) this rule keeps of one image's `candidates`: scores
    /// above the threshold, boxes clipped to the image and at least `min_size` a side,
    /// per-class NMS, the best `max_detections`.
    pub fn select(&self, candidates: &[Candidate], info: &ImageInfo) -> Vec<Detection> {
        let rule = self;
        let [w, h] = [info.input_size[0] as f32, info.input_size[1] as f32];
        let kept: Vec<Candidate> = candidates
            .iter()
            .filter(|c| c.score > rule.score_threshold)
            .map(|c| Candidate {
                bbox: clip(&c.bbox, w, h),
                ..*c
            })
            .filter(|c| {
                c.bbox.x2 - c.bbox.x1 >= rule.min_size && c.bbox.y2 - c.bbox.y1 >= rule.min_size
            })
            .collect();
        let boxes: Vec<BoundingBox> = kept.iter().map(|c| c.bbox).collect();
        let scores: Vec<f32> = kept.iter().map(|c| c.score).collect();
        let classes: Vec<usize> = kept.iter().map(|c| c.class).collect();
        let mut keep = batched_nms(&boxes, &scores, &classes, rule.nms_iou);
        keep.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        keep.truncate(rule.max_detections);
        keep.into_iter()
            .map(|k| Detection {
                image_id: info.image_id,
                class: classes[k],
                bbox: boxes[k],
                score: scores[k],
            })
            .collect()
    }
}

impl Default for DetectionRule {
    fn default() -> Self {
        Self {
            score_threshold: 0.05,
            nms_iou: 0.5,
            max_detections: 100,
            min_size: 1.0,
        }
    }
}

/// Fast R-CNN (`[fast_rcnn]`): selective-search proposals, whole-image features, the box head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FastRcnnConfig {
    /// Selective search (`[fast_rcnn.proposals]`; default: the paper's fast mode, cached beside
    /// R-CNN's, so the two methods compute proposals once).
    pub proposals: SelectiveSearchConfig,
    /// Proposals per training image, best first (Fast R-CNN: 2,000).
    pub train_proposals: usize,
    /// Proposals per test image, best first.
    pub test_proposals: usize,
    /// How images are sized for the network.
    pub resize: ResizeRule,
    /// Training batches rescaled by a random factor around the resize rule's size (off when
    /// absent; e.g. `scale_jitter = { range = [0.8, 1.25] }`).
    pub scale_jitter: Option<ScaleJitter>,
    /// The minibatch of regions per image (`[fast_rcnn.sampling]`).
    pub sampling: RoiSampling,
    /// The box head (`[fast_rcnn.head]`).
    pub head: BoxHeadConfig,
    /// Test-time rule (`[fast_rcnn.detection]`).
    pub detection: DetectionRule,
    /// Images per evaluation step.
    pub eval_batch: usize,
    /// Threads for selective search (0: one per core).
    pub threads: usize,
    /// Where proposals are cached (default: `$KILN_DATA/rcnn/proposals`, shared with R-CNN).
    pub cache_dir: Option<PathBuf>,
}

impl Default for FastRcnnConfig {
    fn default() -> Self {
        Self {
            proposals: SelectiveSearchConfig::default(),
            train_proposals: 2000,
            test_proposals: 1000,
            resize: ResizeRule::ShortSide {
                short_side: 416,
                max_long_side: 640,
            },
            scale_jitter: None,
            sampling: RoiSampling::default(),
            head: BoxHeadConfig::default(),
            detection: DetectionRule::default(),
            eval_batch: 4,
            threads: 0,
            cache_dir: None,
        }
    }
}

impl FastRcnnConfig {
    /// Checks every setting, naming the first one out of range.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, reason: &str| {
            Err(DetectError::invalid(
                format!("[fast_rcnn] {what}"),
                reason.to_string(),
            ))
        };
        self.proposals
            .validate()
            .map_err(|e| DetectError::invalid("[fast_rcnn.proposals]", e.to_string()))?;
        self.resize.validate()?;
        if let Some(jitter) = &self.scale_jitter {
            jitter.validate("[fast_rcnn] scale_jitter")?;
        }
        self.sampling.validate("[fast_rcnn.sampling]")?;
        self.head.validate("[fast_rcnn.head]")?;
        self.detection.validate("[fast_rcnn.detection]")?;
        if self.train_proposals == 0 || self.test_proposals == 0 {
            return bad("train_proposals / test_proposals", "must be positive");
        }
        if self.eval_batch == 0 {
            return bad("eval_batch", "must be positive");
        }
        Ok(())
    }

    /// Where proposals are cached.
    pub fn proposal_cache(&self) -> PathBuf {
        self.cache_dir.clone().unwrap_or_else(|| {
            kiln_data::download::cache_dir()
                .join("rcnn")
                .join("proposals")
        })
    }
}

impl BoxHeadConfig {
    /// Checks the sizes and loss settings; `what` names the section in errors.
    pub fn validate(&self, what: &str) -> Result<()> {
        let bad = |field: &str, reason: String| {
            Err(DetectError::invalid(format!("{what} {field}"), reason))
        };
        if self.neck_channels == 0 || self.bins == 0 || self.hidden == 0 {
            return bad("neck_channels / bins / hidden", "must be positive".into());
        }
        if self
            .box_weights
            .iter()
            .any(|w| !(w.is_finite() && *w > 0.0))
        {
            return bad(
                "box_weights",
                format!("{:?}: each must be positive", self.box_weights),
            );
        }
        if !(self.smooth_l1_beta.is_finite() && self.smooth_l1_beta > 0.0) {
            return bad(
                "smooth_l1_beta",
                format!("{} must be positive", self.smooth_l1_beta),
            );
        }
        if ![16, 32].contains(&self.feature_stride) {
            return bad(
                "feature_stride",
                format!("{} is neither 16 nor 32", self.feature_stride),
            );
        }
        Ok(())
    }
}

impl DetectionRule {
    /// Checks the thresholds; `what` names the section in errors.
    pub fn validate(&self, what: &str) -> Result<()> {
        let bad = |field: &str, reason: String| {
            Err(DetectError::invalid(format!("{what} {field}"), reason))
        };
        if !(0.0..1.0).contains(&self.score_threshold) {
            return bad(
                "score_threshold",
                format!("{} is not in [0, 1)", self.score_threshold),
            );
        }
        if !(self.nms_iou > 0.0 && self.nms_iou <= 1.0) {
            return bad("nms_iou", format!("{} is not in (0, 1]", self.nms_iou));
        }
        if self.max_detections == 0 {
            return bad("max_detections", "must be positive".into());
        }
        if self.min_size.is_nan() || self.min_size < 0.0 {
            return bad("min_size", format!("{} must be 0 or more", self.min_size));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        FastRcnnConfig::default().validate().unwrap();
        type Edit = fn(&mut FastRcnnConfig);
        let cases: [(&str, Edit); 6] = [
            ("train_proposals", |c| c.test_proposals = 0),
            ("eval_batch", |c| c.eval_batch = 0),
            ("box_weights", |c| c.head.box_weights[2] = 0.0),
            ("neck_channels", |c| c.head.bins = 0),
            ("nms_iou", |c| c.detection.nms_iou = 0.0),
            ("background_iou", |c| c.sampling.background_iou = [0.6, 0.7]),
        ];
        for (field, edit) in cases {
            let mut config = FastRcnnConfig::default();
            edit(&mut config);
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn roi_ops_map_to_the_ops_settings() {
        let align = RoiOp::Align {
            sampling_ratio: 0,
            aligned: true,
        };
        match align.pooler(7, 32) {
            RoiPooler::Align(c) => {
                assert_eq!(
                    (c.output_size, c.sampling_ratio, c.aligned),
                    ([7, 7], None, true)
                );
                assert_eq!(c.spatial_scale, 1.0 / 32.0);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(RoiOp::Pool.pooler(7, 16), RoiPooler::Pool(_)));
    }

    fn bx(x1: f32, y1: f32, x2: f32, y2: f32) -> BoundingBox {
        BoundingBox { x1, y1, x2, y2 }
    }

    #[test]
    fn threshold_clip_nms_per_class_and_top_k() {
        let info = ImageInfo {
            image_id: 3,
            original_size: [100, 100],
            input_size: [100, 100],
            boxes: vec![],
            labels: vec![],
            proposals: vec![],
            masks: Vec::new(),
        };
        let c = |b, score, class| Candidate {
            bbox: b,
            score,
            class,
        };
        let candidates = [
            c(bx(10.0, 10.0, 50.0, 50.0), 0.9, 0),
            // Overlaps the first, same class: suppressed.
            c(bx(12.0, 10.0, 52.0, 50.0), 0.8, 0),
            // Same place, other class: kept.
            c(bx(12.0, 10.0, 52.0, 50.0), 0.7, 1),
            // Below the threshold.
            c(bx(60.0, 60.0, 90.0, 90.0), 0.01, 0),
            // Crosses the border: clipped.
            c(bx(80.0, -5.0, 120.0, 30.0), 0.6, 0),
            // Thinner than min_size after clipping.
            c(bx(99.5, 0.0, 130.0, 30.0), 0.95, 0),
        ];
        let rule = DetectionRule {
            score_threshold: 0.05,
            nms_iou: 0.5,
            max_detections: 2,
            min_size: 1.0,
        };
        let found = rule.select(&candidates, &info);
        assert_eq!(found.len(), 2);
        assert_eq!((found[0].class, found[0].score), (0, 0.9));
        assert_eq!((found[1].class, found[1].score), (1, 0.7));
        let all = DetectionRule {
            max_detections: 10,
            ..rule
        }
        .select(&candidates, &info);
        assert_eq!(all.len(), 3);
        assert_eq!(all[2].bbox, bx(80.0, 0.0, 100.0, 30.0));
        assert_eq!(all[2].image_id, 3);
    }
}
