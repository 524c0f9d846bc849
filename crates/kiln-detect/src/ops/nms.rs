//! Non-maximum suppression on tensors: burn-vision's `nms` on the backends that have it (Flex,
//! the cubecl backends), the same rule on the host elsewhere (ndarray), never through Autodiff.

use burn::tensor::{Int, Tensor, TensorData};

use super::{host, tensor_to_boxes};

/// burn-vision's NMS when it implements its ops for `device` in this build; `None` otherwise.
#[cfg(any(feature = "flex", feature = "wgpu"))]
fn vision_nms(boxes: &Tensor<2>, scores: &Tensor<1>, iou_threshold: f32) -> Option<Tensor<1, Int>> {
    use burn::backend::DispatchDevice;
    use burn_vision::{Nms, NmsOptions};
    #[allow(unreachable_patterns)]
    let supported = match boxes.device().inner().as_dispatch() {
        #[cfg(feature = "flex")]
        DispatchDevice::Flex(_) => true,
        #[cfg(feature = "wgpu")]
        DispatchDevice::Cube(_) => true,
        _ => false,
    };
    let options = NmsOptions {
        iou_threshold,
        score_threshold: f32::NEG_INFINITY,
        max_output_boxes: 0,
    };
    supported.then(|| boxes.clone().nms(scores.clone(), options))
}

/// Without a burn-vision backend feature, NMS always takes the host path.
#[cfg(not(any(feature = "flex", feature = "wgpu")))]
fn vision_nms(_: &Tensor<2>, _: &Tensor<1>, _: f32) -> Option<Tensor<1, Int>> {
    None
}

/// Greedy NMS of `boxes` `[N, 4]` with `scores` `[N]`: indices `[K]` of the kept boxes, best
/// first; a box is dropped when its IoU with a better kept box exceeds `iou_threshold`.
/// Gradients do not flow through it (it selects; use the indices on the differentiable tensors).
pub fn nms(boxes: Tensor<2>, scores: Tensor<1>, iou_threshold: f32) -> Tensor<1, Int> {
    let device = boxes.device();
    let (boxes, scores) = (boxes.inner(), scores.inner());
    if boxes.dims()[0] == 0 {
        return Tensor::<1, Int>::empty([0], &device.inner());
    }
    if let Some(kept) = vision_nms(&boxes, &scores, iou_threshold) {
        return kept;
    }
    let kept = host::nms(
        &tensor_to_boxes(boxes),
        &scores
            .into_data()
            .convert::<f32>()
            .try_into_vec_as::<f32>()
            .unwrap_or_default(),
        iou_threshold,
    );
    let kept: Vec<i64> = kept.into_iter().map(|i| i as i64).collect();
    let n = kept.len();
    Tensor::from_data(TensorData::new(kept, [n]), &device.inner())
}

/// NMS within each class (torchvision's `batched_nms`): boxes of different `classes` `[N]`
/// never suppress each other. Each class's boxes are moved by an offset larger than every box
/// coordinate, so one NMS over all of them keeps exactly what per-class NMS would.
pub fn batched_nms(
    boxes: Tensor<2>,
    scores: Tensor<1>,
    classes: Tensor<1, Int>,
    iou_threshold: f32,
) -> Tensor<1, Int> {
    let [n, _] = boxes.dims();
    if n == 0 {
        return nms(boxes, scores, iou_threshold);
    }
    let boxes = boxes.inner();
    let span = boxes.clone().abs().max().into_scalar::<f32>() + 1.0;
    let offsets = classes
        .inner()
        .float()
        .mul_scalar(2.0 * span)
        .reshape([n, 1]);
    nms(boxes + offsets, scores, iou_threshold)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::BoundingBox;
    use crate::ops::boxes_to_tensor;
    use burn::tensor::Device;
    use rand::{Rng, SeedableRng};

    fn indices(t: Tensor<1, Int>) -> Vec<usize> {
        t.into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .unwrap()
            .into_iter()
            .map(|i| i as usize)
            .collect()
    }

    fn random_boxes(n: usize, seed: u64) -> (Vec<BoundingBox>, Vec<f32>, Vec<usize>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let boxes = (0..n)
            .map(|_| {
                let (x, y) = (rng.random_range(0.0..80.0), rng.random_range(0.0..80.0));
                let (w, h) = (rng.random_range(5.0..40.0), rng.random_range(5.0..40.0));
                BoundingBox {
                    x1: x,
                    y1: y,
                    x2: x + w,
                    y2: y + h,
                }
            })
            .collect();
        let scores = (0..n).map(|_| rng.random_range(0.0..1.0)).collect();
        let classes = (0..n).map(|_| rng.random_range(0..3)).collect();
        (boxes, scores, classes)
    }

    #[test]
    fn tensor_nms_equals_the_host_rule_on_every_backend_path() {
        for device in [Device::flex(), Device::flex().autodiff()] {
            for seed in 0..5 {
                let (boxes, scores, classes) = random_boxes(200, seed);
                let t = boxes_to_tensor(&boxes, &device);
                let s = Tensor::<1>::from_data(TensorData::new(scores.clone(), [200]), &device);
                for threshold in [0.3, 0.5, 0.7] {
                    let kept = indices(nms(t.clone(), s.clone(), threshold));
                    assert_eq!(kept, host::nms(&boxes, &scores, threshold));
                    let c: Vec<i64> = classes.iter().map(|&c| c as i64).collect();
                    let c = Tensor::<1, Int>::from_data(TensorData::new(c, [200]), &device);
                    let kept = indices(batched_nms(t.clone(), s.clone(), c, threshold));
                    assert_eq!(
                        kept,
                        host::batched_nms(&boxes, &scores, &classes, threshold)
                    );
                }
            }
        }
    }

    #[test]
    fn nms_of_no_boxes_is_empty() {
        let device = Device::flex();
        let boxes = Tensor::<2>::empty([0, 4], &device);
        let scores = Tensor::<1>::empty([0], &device);
        assert_eq!(nms(boxes, scores, 0.5).dims(), [0]);
    }
}
