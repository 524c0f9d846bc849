//! The one AP integrator: a precision/recall curve built from ranked detection outcomes, and
//! the three ways of turning it into average precision (VOC07 11-point, VOC2010+ all-point,
//! COCO 101-point).

/// What a ranked detection turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It matched a ground truth that counts.
    TruePositive,
    /// It matched nothing (or a ground truth already taken).
    FalsePositive,
    /// Neither: it matched an ignored ground truth (crowd, `difficult`, outside the area range),
    /// or it is unmatched and outside the area range (COCO).
    Ignored,
}

/// How a precision/recall curve is integrated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApMethod {
    /// Pascal VOC 2007: the mean over recall `t ∈ {0, 0.1, …, 1}` (computed as `i * 0.1`, as
    /// `np.arange` does) of the highest precision at recall ≥ `t` (0 if none).
    ElevenPoint,
    /// Pascal VOC 2010 and later: the exact area under the precision envelope (the precision
    /// made non-increasing from the right), summed where recall changes.
    AllPoint,
    /// COCO: the mean of the envelope sampled at the 101 recall thresholds
    /// [`recall_thresholds`], each sample taken at the first detection whose recall reaches the
    /// threshold (`searchsorted(side='left')`), 0 where recall never reaches it.
    Coco101,
}

/// COCO's 101 recall thresholds `0, 0.01, …, 1`, bit for bit as `np.linspace(0, 1, 101)`
/// computes them (`i * 0.01`, the last one exactly 1).
pub fn recall_thresholds() -> [f64; 101] {
    let step = 1.0 / 100.0;
    let mut r = [0.0; 101];
    for (i, v) in r.iter_mut().enumerate() {
        *v = i as f64 * step;
    }
    r[100] = 1.0;
    r
}

/// Precision and recall after each ranked detection (ignored ones included: they repeat the
/// previous point).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PrCurve {
    /// Recall after the first `i + 1` detections: true positives / positives.
    pub recall: Vec<f64>,
    /// Precision after the first `i + 1` detections: `tp / (tp + fp + ε)` with `ε` the `f64`
    /// machine epsilon, as pycocotools computes it (0 before any counted detection).
    pub precision: Vec<f64>,
}

impl PrCurve {
    /// The curve of detections ranked by descending score, against `num_positives` ground
    /// truths that count (must be > 0 for the recall to be meaningful).
    pub fn from_outcomes(
        outcomes: impl IntoIterator<Item = Outcome>,
        num_positives: usize,
    ) -> Self {
        let npos = num_positives as f64;
        let (mut tp, mut fp) = (0.0f64, 0.0f64);
        let mut curve = Self::default();
        for o in outcomes {
            match o {
                Outcome::TruePositive => tp += 1.0,
                Outcome::FalsePositive => fp += 1.0,
                Outcome::Ignored => {}
            }
            curve.recall.push(tp / npos);
            curve.precision.push(tp / (fp + tp + f64::EPSILON));
        }
        curve
    }

    /// The recall after all detections (0 without detections).
    pub fn final_recall(&self) -> f64 {
        self.recall.last().copied().unwrap_or(0.0)
    }

    /// The precision envelope: each precision raised to the highest precision after it.
    pub fn envelope(&self) -> Vec<f64> {
        let mut p = self.precision.clone();
        for i in (1..p.len()).rev() {
            if p[i] > p[i - 1] {
                p[i - 1] = p[i];
            }
        }
        p
    }

    /// The envelope sampled at `thresholds` (ascending): the envelope at the first detection
    /// whose recall is ≥ the threshold, 0 where none is.
    pub fn sample(&self, thresholds: &[f64]) -> Vec<f64> {
        let env = self.envelope();
        thresholds
            .iter()
            .map(|&t| {
                let i = self.recall.partition_point(|&r| r < t);
                env.get(i).copied().unwrap_or(0.0)
            })
            .collect()
    }

    /// The average precision by `method`.
    pub fn average_precision(&self, method: ApMethod) -> f64 {
        match method {
            ApMethod::ElevenPoint => {
                let mut ap = 0.0;
                for i in 0..=10 {
                    let t = i as f64 * 0.1;
                    let p = self
                        .recall
                        .iter()
                        .zip(&self.precision)
                        .filter(|(r, _)| **r >= t)
                        .map(|(_, p)| *p)
                        .fold(0.0, f64::max);
                    ap += p / 11.0;
                }
                ap
            }
            ApMethod::AllPoint => {
                // Sentinels: recall 0 and 1, precision 0 at both ends.
                let mut mrec = Vec::with_capacity(self.recall.len() + 2);
                mrec.push(0.0);
                mrec.extend_from_slice(&self.recall);
                mrec.push(1.0);
                let mut mpre = Vec::with_capacity(mrec.len());
                mpre.push(0.0);
                mpre.extend_from_slice(&self.precision);
                mpre.push(0.0);
                for i in (1..mpre.len()).rev() {
                    mpre[i - 1] = mpre[i - 1].max(mpre[i]);
                }
                (0..mrec.len() - 1)
                    .filter(|&i| mrec[i + 1] != mrec[i])
                    .map(|i| (mrec[i + 1] - mrec[i]) * mpre[i + 1])
                    .sum()
            }
            ApMethod::Coco101 => {
                let samples = self.sample(&recall_thresholds());
                samples.iter().sum::<f64>() / samples.len() as f64
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Outcome::{FalsePositive as F, Ignored as I, TruePositive as T};

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn thresholds_match_numpy_linspace() {
        let r = recall_thresholds();
        assert_eq!(r[0], 0.0);
        assert_eq!(r[100], 1.0);
        // np.linspace gives 0.07 as 7 * 0.01, which is not the literal 0.07.
        assert_eq!(r[7], 7.0 * 0.01);
        assert_eq!(r[29], 29.0 * 0.01);
    }

    #[test]
    fn three_detections_two_positives() {
        // Ranked T, F, T against 2 positives:
        //   recall    0.5, 0.5, 1.0
        //   precision 1,   1/2, 2/3
        // Envelope: 1, 2/3, 2/3.
        let c = PrCurve::from_outcomes([T, F, T], 2);
        assert!(close(c.recall[2], 1.0) && close(c.precision[1], 0.5));
        let env = c.envelope();
        assert!(close(env[0], 1.0) && close(env[1], 2.0 / 3.0));
        // COCO: thresholds 0..=0.50 (51 of them) reach index 0 → 1; 0.51..=1 (50) reach
        // index 2 → 2/3. AP = (51 + 50 * 2/3) / 101 = 84.333…/101.
        let coco = c.average_precision(ApMethod::Coco101);
        assert!(close(coco, (51.0 + 50.0 * 2.0 / 3.0) / 101.0), "{coco}");
        // VOC all-point: 0.5 * 1 + 0.5 * 2/3 = 5/6.
        assert!(close(c.average_precision(ApMethod::AllPoint), 5.0 / 6.0));
        // VOC 11-point: t = 0..0.5 (6 points) → 1, t = 0.6..1 (5 points) → 2/3:
        // (6 + 10/3) / 11 = 28/33.
        assert!(close(
            c.average_precision(ApMethod::ElevenPoint),
            28.0 / 33.0
        ));
    }

    #[test]
    fn ignored_detections_change_nothing_and_missing_recall_scores_zero() {
        let a = PrCurve::from_outcomes([T, F, T], 2);
        let b = PrCurve::from_outcomes([I, T, I, F, T, I], 2);
        for m in [ApMethod::ElevenPoint, ApMethod::AllPoint, ApMethod::Coco101] {
            assert!(close(a.average_precision(m), b.average_precision(m)));
        }
        // One of four positives found first: recall reaches only 0.25.
        // COCO: thresholds 0..=0.25 (26) → 1, the rest 0 → 26/101.
        let c = PrCurve::from_outcomes([T, F], 4);
        assert!(close(c.average_precision(ApMethod::Coco101), 26.0 / 101.0));
        // All-point: 0.25 * 1 = 0.25. 11-point: t = 0, 0.1, 0.2 → 3/11.
        assert!(close(c.average_precision(ApMethod::AllPoint), 0.25));
        assert!(close(
            c.average_precision(ApMethod::ElevenPoint),
            3.0 / 11.0
        ));
        // No detections at all: AP 0, final recall 0.
        let e = PrCurve::from_outcomes([], 3);
        assert_eq!(e.average_precision(ApMethod::Coco101), 0.0);
        assert_eq!(e.average_precision(ApMethod::AllPoint), 0.0);
        assert_eq!(e.final_recall(), 0.0);
    }
}
