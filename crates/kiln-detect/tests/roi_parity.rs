//! RoIAlign and RoIPool against torchvision 0.29 (`$KILN_SHARED/references/roi-ops-reference.safetensors`,
//! described in `roi-ops-reference.txt` beside it): outputs and the features' gradients of every
//! case, to 1e-5 (absolute; relative for values above 1, where the gradients' sums of hundreds of
//! f32 terms carry rounding of a few millionths against torchvision's float64). Skipped, saying
//! so, when `KILN_SHARED` is not set.

use burn::tensor::{Device, Tensor, TensorData, Tolerance};
use kiln_data::augment::BoundingBox;
use kiln_detect::ops::{RoiAlignConfig, RoiPoolConfig, roi_align, roi_pool};
use safetensors::SafeTensors;

/// The reference file's bytes, or `None` (after printing why) when `KILN_SHARED` is not set.
fn reference_bytes() -> Option<Vec<u8>> {
    let Some(shared) = std::env::var_os("KILN_SHARED").filter(|v| !v.is_empty()) else {
        eprintln!("skipped: KILN_SHARED is not set, so torchvision's RoI references are not read");
        return None;
    };
    let path = std::path::Path::new(&shared).join("references/roi-ops-reference.safetensors");
    Some(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// A stored f32 tensor's values and shape.
fn read(file: &SafeTensors, name: &str) -> (Vec<f32>, Vec<usize>) {
    let view = file.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let values = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (values, view.shape().to_vec())
}

/// The reference boxes grouped by image, and for each box its row in kiln's output (kiln returns
/// the boxes image by image; the reference lists them in any order).
fn rois(file: &SafeTensors, images: usize) -> (Vec<Vec<BoundingBox>>, Vec<usize>) {
    let (values, _) = read(file, "boxes");
    let mut grouped = vec![Vec::new(); images];
    let mut slot = Vec::new();
    for row in values.chunks_exact(5) {
        let image = row[0] as usize;
        slot.push((image, grouped[image].len()));
        grouped[image].push(BoundingBox {
            x1: row[1],
            y1: row[2],
            x2: row[3],
            y2: row[4],
        });
    }
    let starts: Vec<usize> = grouped
        .iter()
        .scan(0, |acc, g| {
            let start = *acc;
            *acc += g.len();
            Some(start)
        })
        .collect();
    let order = slot.iter().map(|(image, k)| starts[*image] + k).collect();
    (grouped, order)
}

/// Runs `op` on the reference features through Autodiff and compares its output and the
/// features' gradient under the case's upstream gradient with torchvision's.
fn check(case: &str, op: impl Fn(Tensor<4>, &[Vec<BoundingBox>]) -> Tensor<4>) {
    let Some(bytes) = reference_bytes() else {
        return;
    };
    let file = SafeTensors::deserialize(&bytes).expect("reference safetensors");
    let device = Device::flex().autodiff();
    let (features, shape) = read(&file, "features");
    let images = shape[0];
    let features =
        Tensor::<4>::from_data(TensorData::new(features, shape.clone()), &device).require_grad();
    let (rois, order) = rois(&file, images);
    let rows = Tensor::<1, burn::tensor::Int>::from_data(
        TensorData::new(
            order.iter().map(|&r| r as i64).collect::<Vec<_>>(),
            [order.len()],
        ),
        &device,
    );
    // kiln's rows in the reference's order.
    let out = op(features.clone(), &rois).select(0, rows);
    let (expected, out_shape) = read(&file, &format!("{case}.out"));
    out.clone()
        .into_data()
        .convert::<f32>()
        .assert_approx_eq::<f32>(
            &TensorData::new(expected, out_shape.clone()),
            Tolerance::rel_abs(1e-5, 1e-5),
        );
    let (upstream, _) = read(&file, &format!("{case}.grad_out"));
    let upstream = Tensor::<4>::from_data(TensorData::new(upstream, out_shape), &device);
    let grads = (out * upstream).sum().backward();
    let grad = features.grad(&grads).expect("features' gradient");
    let (expected, grad_shape) = read(&file, &format!("{case}.grad_features"));
    grad.into_data().convert::<f32>().assert_approx_eq::<f32>(
        &TensorData::new(expected, grad_shape),
        Tolerance::rel_abs(1e-5, 1e-5),
    );
}

fn align(scale: f32, sampling_ratio: Option<usize>, aligned: bool) -> RoiAlignConfig {
    RoiAlignConfig::new([7, 7])
        .with_spatial_scale(scale)
        .with_sampling_ratio(sampling_ratio)
        .with_aligned(aligned)
}

#[test]
fn roi_align_stride_16_two_samples_aligned() {
    let config = align(1.0 / 16.0, Some(2), true);
    check("align_s16_sr2_aligned", |f, r| roi_align(f, r, &config));
}

#[test]
fn roi_align_stride_16_two_samples_unaligned() {
    let config = align(1.0 / 16.0, Some(2), false);
    check("align_s16_sr2", |f, r| roi_align(f, r, &config));
}

#[test]
fn roi_align_stride_16_adaptive_sampling_aligned() {
    let config = align(1.0 / 16.0, None, true);
    check("align_s16_adaptive_aligned", |f, r| {
        roi_align(f, r, &config)
    });
}

#[test]
fn roi_align_stride_8_two_samples_aligned() {
    let config = align(1.0 / 8.0, Some(2), true);
    check("align_s8_sr2_aligned", |f, r| roi_align(f, r, &config));
}

#[test]
fn roi_pool_stride_16() {
    let config = RoiPoolConfig::new([7, 7]).with_spatial_scale(1.0 / 16.0);
    check("pool_s16", |f, r| roi_pool(f, r, &config));
}
