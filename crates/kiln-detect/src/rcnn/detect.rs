//! A trained R-CNN ([`RcnnModel`]: one SVM and one box regressor per class), how it is saved in
//! a run, and detection on one image's proposals: score every proposal with every class's SVM,
//! move it by the class's regressor, clip it, per-class NMS, keep the best.

use std::path::Path;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::features::Features;
use super::regress::BoxRegressor;
use super::svm::LinearSvm;
use crate::data::BoundingBox;
use crate::ops::host::{batched_nms, clip};
use crate::ops::{BoxCoder, boxes_to_tensor, tensor_to_boxes};
use crate::{DetectError, Result};

/// The run file holding the trained SVMs and regressors.
pub const MODEL_FILE: &str = "rcnn_model.json";

/// One class's SVM and box regressor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassModel {
    /// Scores a proposal's (scaled) features.
    pub svm: LinearSvm,
    /// Predicts the proposal's box deltas; `None` when training had no proposal to fit it on.
    pub regressor: Option<BoxRegressor>,
}

/// R-CNN's trained part: per class, an SVM and a box regressor on the backbone's features.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RcnnModel {
    /// Feature size.
    pub dim: usize,
    /// Features were L2-normalised and multiplied by this.
    pub feature_norm: f64,
    /// One per class, in class-index order.
    pub classes: Vec<ClassModel>,
}

/// One detection in an image's pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ImageDetection {
    /// Class index.
    pub class: usize,
    /// The regressed, clipped box.
    pub bbox: BoundingBox,
    /// The SVM's score.
    pub score: f32,
}

impl RcnnModel {
    /// Writes the model as JSON to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text =
            serde_json::to_vec(self).map_err(|e| DetectError::format(path, e.to_string()))?;
        kiln_train::write_atomic(path, &text)?;
        Ok(())
    }

    /// Reads a model written by [`RcnnModel::save`], checking it has `classes` classes and
    /// consistent sizes.
    pub fn load(path: &Path, classes: usize) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| {
            DetectError::io(
                path,
                std::io::Error::new(e.kind(), format!("{e}; is this a finished R-CNN run?")),
            )
        })?;
        let model: Self = serde_json::from_slice(&bytes)
            .map_err(|e| DetectError::format(path, format!("not an R-CNN model: {e}")))?;
        let consistent = model.classes.iter().all(|c| {
            c.svm.weights.len() == model.dim
                && c.svm.weights.iter().all(|v| v.is_finite())
                && c.svm.bias.is_finite()
                && c.regressor.as_ref().is_none_or(|r| {
                    r.weights.len() == 4 * model.dim
                        && r.weights.iter().chain(&r.bias).all(|v| v.is_finite())
                })
        });
        if !(consistent && model.feature_norm.is_finite() && model.feature_norm > 0.0) {
            return Err(DetectError::format(
                path,
                "an SVM or regressor does not match the feature size, or holds a non-finite number",
            ));
        }
        if model.classes.len() != classes {
            return Err(DetectError::format(
                path,
                format!(
                    "{} classes, but the run's categories list {classes}",
                    model.classes.len()
                ),
            ));
        }
        Ok(model)
    }

    /// Detections among `proposals` of a `width`×`height` image whose raw features are
    /// `features`: every proposal scored by every class, regressed, clipped, per-class NMS at
    /// `nms_iou`, the best `max_detections` kept.
    pub fn detect(
        &self,
        proposals: &[BoundingBox],
        features: Features,
        size: [f32; 2],
        nms_iou: f32,
        max_detections: usize,
        device: &Device,
    ) -> Result<Vec<ImageDetection>> {
        let scaled = features.scaled(self.feature_norm);
        self.detect_scaled(proposals, &scaled, size, nms_iou, max_detections, device)
    }

    /// [`RcnnModel::detect`] on features already scaled to the model's feature norm.
    pub fn detect_scaled(
        &self,
        proposals: &[BoundingBox],
        features: &Features,
        [width, height]: [f32; 2],
        nms_iou: f32,
        max_detections: usize,
        device: &Device,
    ) -> Result<Vec<ImageDetection>> {
        if features.len() != proposals.len() || (!proposals.is_empty() && features.dim != self.dim)
        {
            return Err(DetectError::invalid(
                "R-CNN features",
                format!(
                    "{} rows of {} for {} proposals; the model takes {}",
                    features.len(),
                    features.dim,
                    proposals.len(),
                    self.dim
                ),
            ));
        }
        let coder = BoxCoder::new([1.0; 4]);
        let (mut boxes, mut scores, mut classes) = (Vec::new(), Vec::new(), Vec::new());
        for (c, class) in self.classes.iter().enumerate() {
            let class_scores: Vec<f32> = (0..proposals.len())
                .map(|i| class.svm.score(features.row(i)))
                .collect();
            let moved = match (&class.regressor, proposals.is_empty()) {
                (Some(reg), false) => {
                    let deltas: Vec<BoundingBox> = (0..proposals.len())
                        .map(|i| {
                            let [x1, y1, x2, y2] = reg.predict(features.row(i));
                            BoundingBox { x1, y1, x2, y2 }
                        })
                        .collect();
                    tensor_to_boxes(coder.decode(
                        boxes_to_tensor(&deltas, device),
                        boxes_to_tensor(proposals, device),
                    ))
                }
                _ => proposals.to_vec(),
            };
            for (b, s) in moved.iter().zip(class_scores) {
                let b = clip(b, width, height);
                if b.width() > 0.0 && b.height() > 0.0 && s.is_finite() {
                    boxes.push(b);
                    scores.push(s);
                    classes.push(c);
                }
            }
        }
        let keep = batched_nms(&boxes, &scores, &classes, nms_iou);
        Ok(keep
            .into_iter()
            .take(max_detections)
            .map(|i| ImageDetection {
                class: classes[i],
                bbox: boxes[i],
                score: scores[i],
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x1: f32, y1: f32, x2: f32, y2: f32) -> BoundingBox {
        BoundingBox { x1, y1, x2, y2 }
    }

    /// One class; feature 0 is the score, features 1 and 2 shift the box right and down.
    fn model() -> RcnnModel {
        let mut weights = vec![0f32; 3 * 4];
        weights[4] = 1.0; // feature 1 → dx
        weights[2 * 4 + 1] = 1.0; // feature 2 → dy
        RcnnModel {
            dim: 3,
            feature_norm: 1.0,
            classes: vec![ClassModel {
                svm: LinearSvm {
                    weights: vec![1.0, 0.0, 0.0],
                    bias: 0.0,
                },
                regressor: Some(BoxRegressor {
                    weights,
                    bias: [0.0; 4],
                }),
            }],
        }
    }

    #[test]
    fn detection_scores_regresses_clips_and_suppresses() {
        let proposals = [
            b(0.0, 0.0, 10.0, 10.0),
            b(1.0, 0.0, 11.0, 10.0),
            b(50.0, 50.0, 70.0, 70.0),
        ];
        // Unit rows after scaling with norm 1: (0.8, 0.6, 0) moves box 0 right by 0.6 widths.
        let features = Features {
            dim: 3,
            values: vec![0.8, 0.6, 0.0, 0.6, 0.8, 0.0, 0.6, 0.0, 0.8],
        };
        let found = model()
            .detect(
                &proposals,
                features,
                [100.0, 80.0],
                0.3,
                100,
                &Device::flex(),
            )
            .unwrap();
        // Boxes 0 and 1 overlap after moving (0 → x 6..16, 1 → x 9..19): 1 is suppressed.
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].score, 0.8);
        let first = found[0].bbox;
        assert!(
            (first.x1 - 6.0).abs() < 1e-4 && (first.x2 - 16.0).abs() < 1e-4,
            "{first:?}"
        );
        // Box 2 moves down by 0.8 heights (16 px, to 66..86) and is clipped at the bottom (80).
        let second = found[1].bbox;
        assert!((second.y1 - 66.0).abs() < 1e-3, "{second:?}");
        assert_eq!((second.y2, found[1].score), (80.0, 0.6));
        // max_detections caps the list.
        let features = Features {
            dim: 3,
            values: vec![0.8, 0.6, 0.0, 0.6, 0.8, 0.0, 0.6, 0.0, 0.8],
        };
        assert_eq!(
            model()
                .detect(&proposals, features, [100.0, 80.0], 0.3, 1, &Device::flex())
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn a_saved_model_loads_and_bad_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MODEL_FILE);
        model().save(&path).unwrap();
        assert_eq!(RcnnModel::load(&path, 1).unwrap(), model());
        let err = RcnnModel::load(&path, 2).unwrap_err().to_string();
        assert!(err.contains("2") && err.contains(MODEL_FILE), "{err}");
        std::fs::write(&path, b"{\"dim\": 3").unwrap();
        let err = RcnnModel::load(&path, 1).unwrap_err().to_string();
        assert!(err.contains("not an R-CNN model"), "{err}");
        let mut wrong = model();
        wrong.dim = 4;
        wrong.save(&path).unwrap();
        assert!(RcnnModel::load(&path, 1).is_err());
        let missing = RcnnModel::load(&dir.path().join("nothing.json"), 1)
            .unwrap_err()
            .to_string();
        assert!(missing.contains("finished R-CNN run"), "{missing}");
    }
}
