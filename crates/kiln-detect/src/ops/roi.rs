//! RoI pooling: the features of boxes cropped from a feature map into a fixed grid of bins, as
//! torchvision's `roi_align` (Mask R-CNN) and `roi_pool` (Fast R-CNN) compute them, on any backend
//! and differentiable with respect to the features (the boxes are constants, as in torchvision).
//!
//! Both ops are written as ordinary tensor operations, so Burn's autodiff derives their backward
//! passes:
//! - **RoIAlign** averages bilinear samples. A bilinear sample's weight is a product of a weight
//!   along `y` and one along `x`, and a bin's samples form a grid, so a box's whole output is
//!   `Ay · F · Axᵀ`, with `Ay` `[bins_h, H]` and `Ax` `[bins_w, W]` computed on the host from the
//!   box. Two matrix products per image replace per-sample gathers (whose intermediate would be
//!   `samples × channels` times larger than the output).
//! - **RoIPool** takes the maximum over each bin's rectangle of whole cells, again separably: the
//!   maximum over the bin's columns, then over its rows, each a gather of at most the longest span
//!   (padded by repeating a column of the span, which leaves the maximum unchanged). The gradient
//!   reaches the first maximum in row-major order, torchvision's choice; empty bins are 0.

use burn::config::Config;
use burn::tensor::{Int, Tensor, TensorData};

use crate::data::BoundingBox;

/// RoIAlign's settings (torchvision's `roi_align` arguments).
#[derive(Config, Debug, PartialEq)]
pub struct RoiAlignConfig {
    /// Bins per box, `[height, width]`.
    pub output_size: [usize; 2],
    /// Feature-map cells per input pixel (`1 / stride`).
    #[config(default = 1.0)]
    pub spatial_scale: f32,
    /// Samples per bin along each side; `None` samples `⌈box side / bins⌉` (torchvision's
    /// `sampling_ratio = -1`, adaptive).
    #[config(default = "None")]
    pub sampling_ratio: Option<usize>,
    /// Shift the box by half a cell so that a cell's centre sits at its pixel centre
    /// (Detectron2's and torchvision's `aligned=True`); `false` is the original Mask R-CNN
    /// rule, which also makes every box at least one cell wide.
    #[config(default = false)]
    pub aligned: bool,
}

/// RoIPool's settings (torchvision's `roi_pool` arguments).
#[derive(Config, Debug, PartialEq)]
pub struct RoiPoolConfig {
    /// Bins per box, `[height, width]`.
    pub output_size: [usize; 2],
    /// Feature-map cells per input pixel (`1 / stride`).
    #[config(default = 1.0)]
    pub spatial_scale: f32,
}

/// RoIAlign of `features` `[images, channels, H, W]` over `rois`, the boxes of each image in
/// input-image pixels (`rois[i]` belongs to image `i`; fewer lists than images leave the rest
/// without boxes). Returns `[boxes, channels, bins_h, bins_w]`, the boxes of image 0 first, then
/// those of image 1, and so on.
///
/// # Panics
/// When `rois` has more lists than `features` has images.
pub fn roi_align(
    features: Tensor<4>,
    rois: &[Vec<BoundingBox>],
    config: &RoiAlignConfig,
) -> Tensor<4> {
    let [_, channels, height, width] = features.dims();
    let [bins_h, bins_w] = config.output_size;
    let device = features.device();
    pool_each_image(features, rois, config.output_size, |map, boxes| {
        let n = boxes.len();
        let (mut ay, mut ax) = (Vec::new(), Vec::new());
        for b in boxes {
            let (rows, cols) = align_weights(b, [height, width], config);
            ay.extend(rows);
            ax.extend(cols);
        }
        let ay = Tensor::<3>::from_data(TensorData::new(ay, [n, bins_h, height]), &device);
        // [W, n·bins_w]: column j of box r is its bin j's weights over the map's columns.
        let ax =
            Tensor::<2>::from_data(TensorData::new(ax, [n * bins_w, width]), &device).transpose();
        let map = map.reshape([channels * height, width]);
        // Σ_w F[c, h, w] Ax[r, j, w] → [C, H, n, bins_w] → [n, H, C·bins_w].
        let across = map
            .matmul(ax)
            .reshape([channels, height, n, bins_w])
            .permute([2, 1, 0, 3])
            .reshape([n, height, channels * bins_w]);
        // Σ_h Ay[r, i, h] · … → [n, bins_h, C, bins_w] → [n, C, bins_h, bins_w].
        ay.matmul(across)
            .reshape([n, bins_h, channels, bins_w])
            .swap_dims(1, 2)
    })
}

/// RoIPool of `features` `[images, channels, H, W]` over `rois` (as in [`roi_align`]): each box
/// is rounded to whole cells and split into bins, and each bin keeps its maximum (0 for a bin
/// with no cell). Returns `[boxes, channels, bins_h, bins_w]`, image by image.
///
/// # Panics
/// When `rois` has more lists than `features` has images.
pub fn roi_pool(
    features: Tensor<4>,
    rois: &[Vec<BoundingBox>],
    config: &RoiPoolConfig,
) -> Tensor<4> {
    let [_, channels, height, width] = features.dims();
    let [bins_h, bins_w] = config.output_size;
    let device = features.device();
    pool_each_image(features, rois, config.output_size, |map, boxes| {
        let n = boxes.len();
        let spans: Vec<_> = boxes
            .iter()
            .map(|b| pool_spans(b, [height, width], config))
            .collect();
        let row_spans: Vec<&[(usize, usize)]> = spans.iter().map(|(r, _)| r.as_slice()).collect();
        let col_spans: Vec<&[(usize, usize)]> = spans.iter().map(|(_, c)| c.as_slice()).collect();
        // Maximum over each bin's columns: [C, H, n·bins_w].
        let (cols, col_len) = span_indices(&col_spans, width, 0);
        let cols =
            Tensor::<1, Int>::from_data(TensorData::new(cols, [n * bins_w * col_len]), &device);
        let across = map
            .select(2, cols)
            .reshape([channels, height, n * bins_w, col_len])
            .max_dim(3)
            .reshape([channels, height, n, bins_w])
            .permute([2, 1, 0, 3])
            .reshape([n * height, channels * bins_w]);
        // Then over each bin's rows (row h of box r is row r·H + h): [n, bins_h, C, bins_w].
        let (rows, row_len) = span_indices(&row_spans, height, height);
        let rows =
            Tensor::<1, Int>::from_data(TensorData::new(rows, [n * bins_h * row_len]), &device);
        let pooled = across
            .select(0, rows)
            .reshape([n, bins_h, row_len, channels * bins_w])
            .max_dim(2)
            .reshape([n, bins_h, channels, bins_w])
            .swap_dims(1, 2);
        // Empty bins are 0, with no gradient.
        let filled: Vec<f32> = spans
            .iter()
            .flat_map(|(r, c)| {
                r.iter().flat_map(|rs| {
                    c.iter()
                        .map(move |cs| f32::from(u8::from(rs.1 > rs.0 && cs.1 > cs.0)))
                })
            })
            .collect();
        let filled =
            Tensor::<4>::from_data(TensorData::new(filled, [n, 1, bins_h, bins_w]), &device);
        pooled * filled
    })
}

/// `pool` (an image's map `[channels, H, W]` and its boxes → `[boxes, channels, bins_h,
/// bins_w]`) run on every image of `features` that has boxes in `rois`, the results
/// concatenated image by image (a `[0, …]` tensor when no image has any).
///
/// # Panics
/// When `rois` has more lists than `features` has images.
fn pool_each_image(
    features: Tensor<4>,
    rois: &[Vec<BoundingBox>],
    [bins_h, bins_w]: [usize; 2],
    mut pool: impl FnMut(Tensor<3>, &[BoundingBox]) -> Tensor<4>,
) -> Tensor<4> {
    let [images, channels, height, width] = features.dims();
    assert!(
        rois.len() <= images,
        "{} RoI lists for {images} images",
        rois.len()
    );
    let parts: Vec<Tensor<4>> = rois
        .iter()
        .enumerate()
        .filter(|(_, boxes)| !boxes.is_empty())
        .map(|(image, boxes)| {
            let map = features
                .clone()
                .narrow(0, image, 1)
                .reshape([channels, height, width]);
            pool(map, boxes)
        })
        .collect();
    if parts.is_empty() {
        Tensor::zeros([0, channels, bins_h, bins_w], &features.device())
    } else {
        Tensor::cat(parts, 0)
    }
}

/// One axis of RoIAlign's sampling: `bins` rows of `size` weights, row `i` the mean over the
/// bin's samples of their linear-interpolation weights on the map's cells along this axis.
/// `start` and `length` are the box's extent in cells; `grid` the samples per bin.
fn axis_weights(start: f32, length: f32, bins: usize, grid: usize, size: usize) -> Vec<f32> {
    let mut weights = vec![0.0f32; bins * size];
    if grid == 0 || size == 0 {
        return weights;
    }
    let bin = length / bins as f32;
    let share = 1.0 / grid as f32;
    for i in 0..bins {
        let row = &mut weights[i * size..(i + 1) * size];
        for s in 0..grid {
            let mut p = start + i as f32 * bin + (s as f32 + 0.5) * bin / grid as f32;
            // torchvision: samples more than one cell outside the map contribute nothing, the
            // rest are clamped to it.
            if p < -1.0 || p > size as f32 {
                continue;
            }
            p = p.max(0.0);
            let mut low = p as usize;
            let high;
            if low >= size - 1 {
                low = size - 1;
                high = size - 1;
                p = low as f32;
            } else {
                high = low + 1;
            }
            let frac = p - low as f32;
            row[low] += share * (1.0 - frac);
            row[high] += share * frac;
        }
    }
    weights
}

/// RoIAlign's `Ay` `[bins_h, H]` and `Ax` `[bins_w, W]` for one box.
fn align_weights(
    b: &BoundingBox,
    [height, width]: [usize; 2],
    config: &RoiAlignConfig,
) -> (Vec<f32>, Vec<f32>) {
    let [bins_h, bins_w] = config.output_size;
    let offset = if config.aligned { 0.5 } else { 0.0 };
    let scale = config.spatial_scale;
    let (x0, y0) = (b.x1 * scale - offset, b.y1 * scale - offset);
    let (mut w, mut h) = (b.x2 * scale - offset - x0, b.y2 * scale - offset - y0);
    if !config.aligned {
        w = w.max(1.0);
        h = h.max(1.0);
    }
    let grid = |length: f32, bins: usize| match config.sampling_ratio {
        Some(ratio) => ratio,
        None => (length / bins as f32).ceil().max(0.0) as usize,
    };
    (
        axis_weights(y0, h, bins_h, grid(h, bins_h), height),
        axis_weights(x0, w, bins_w, grid(w, bins_w), width),
    )
}

/// RoIPool's bins of one box as half-open cell ranges, rows then columns (torchvision's
/// rounding: the box's corners rounded to cells, its size counted inclusively).
#[allow(clippy::type_complexity)]
fn pool_spans(
    b: &BoundingBox,
    [height, width]: [usize; 2],
    config: &RoiPoolConfig,
) -> (Vec<(usize, usize)>, Vec<(usize, usize)>) {
    let [bins_h, bins_w] = config.output_size;
    let scale = config.spatial_scale;
    let axis = |lo: f32, hi: f32, bins: usize, size: usize| {
        let (start, end) = ((lo * scale).round() as i64, (hi * scale).round() as i64);
        let length = (end - start + 1).max(1) as f32;
        let bin = length / bins as f32;
        (0..bins)
            .map(|i| {
                let clamp = |v: i64| (v + start).clamp(0, size as i64) as usize;
                (
                    clamp((i as f32 * bin).floor() as i64),
                    clamp(((i + 1) as f32 * bin).ceil() as i64),
                )
            })
            .collect()
    };
    (
        axis(b.y1, b.y2, bins_h, height),
        axis(b.x1, b.x2, bins_w, width),
    )
}

/// Gather indices for spans of cells: for each box `r` and bin, `len` indices (the span's cells,
/// padded by repeating its first one; an empty span points at a clamped cell and is masked
/// later), offset by `r · stride`. Returns the indices and `len`, the longest span (at least 1).
fn span_indices(spans: &[&[(usize, usize)]], size: usize, stride: usize) -> (Vec<i64>, usize) {
    let len = spans
        .iter()
        .flat_map(|s| s.iter())
        .map(|(a, b)| b.saturating_sub(*a))
        .max()
        .unwrap_or(0)
        .max(1);
    let mut indices = Vec::with_capacity(spans.iter().map(|s| s.len()).sum::<usize>() * len);
    for (r, bins) in spans.iter().enumerate() {
        for &(a, b) in bins.iter() {
            let first = a.min(size - 1);
            for k in 0..len {
                let cell = if a + k < b { a + k } else { first };
                indices.push((r * stride + cell) as i64);
            }
        }
    }
    (indices, len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Tolerance};

    fn bx(x1: f32, y1: f32, x2: f32, y2: f32) -> BoundingBox {
        BoundingBox { x1, y1, x2, y2 }
    }

    /// A `[1, 1, 4, 4]` map whose cell (y, x) holds `4y + x`.
    fn ramp(device: &Device) -> Tensor<4> {
        let values: Vec<f32> = (0..16).map(|v| v as f32).collect();
        Tensor::from_data(TensorData::new(values, [1, 1, 4, 4]), device)
    }

    #[test]
    fn align_of_a_linear_map_is_the_value_at_each_bin_centre() {
        // Bilinear interpolation of a linear map is exact, so each bin's mean of samples is the
        // map at the bin's centre. Box (0.5, 0.5)-(2.5, 2.5), aligned: cells (0, 0)-(2, 2),
        // 2×2 bins of one cell, centres at 0.5 and 1.5 → values 4y + x there.
        let device = Device::flex();
        let config = RoiAlignConfig::new([2, 2])
            .with_aligned(true)
            .with_sampling_ratio(Some(2));
        let out = roi_align(ramp(&device), &[vec![bx(0.5, 0.5, 2.5, 2.5)]], &config);
        assert_eq!(out.dims(), [1, 1, 2, 2]);
        let expected = [2.5f32, 3.5, 6.5, 7.5];
        out.into_data().assert_approx_eq::<f32>(
            &TensorData::new(expected.to_vec(), [1, 1, 2, 2]),
            Tolerance::absolute(1e-5),
        );
    }

    #[test]
    fn align_weights_sum_to_one_inside_the_map_and_vanish_far_outside() {
        // Inside: every bin's weights sum to 1 (a mean of interpolations).
        let w = axis_weights(0.3, 2.4, 3, 2, 4);
        for row in w.chunks(4) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6, "{row:?}");
        }
        // A box wholly more than one cell to the left of the map samples nothing.
        assert!(axis_weights(-5.0, 2.0, 2, 2, 4).iter().all(|v| *v == 0.0));
        // A zero-size box with adaptive sampling takes no samples.
        assert!(axis_weights(1.0, 0.0, 2, 0, 4).iter().all(|v| *v == 0.0));
    }

    #[test]
    fn pool_takes_each_bin_maximum_and_routes_the_gradient_to_it() {
        let device = Device::flex().autodiff();
        let map = ramp(&device).require_grad();
        // The whole 4×4 map in 2×2 bins: maxima at cells (1,1), (1,3), (3,1), (3,3).
        let out = roi_pool(
            map.clone(),
            &[vec![bx(0.0, 0.0, 3.0, 3.0)]],
            &RoiPoolConfig::new([2, 2]),
        );
        out.clone().into_data().assert_approx_eq::<f32>(
            &TensorData::new(vec![5.0f32, 7.0, 13.0, 15.0], [1, 1, 2, 2]),
            Tolerance::absolute(1e-6),
        );
        let grads = out.sum().backward();
        let grad = map
            .grad(&grads)
            .expect("gradient")
            .into_data()
            .convert::<f32>();
        let mut expected = vec![0.0f32; 16];
        for i in [5, 7, 13, 15] {
            expected[i] = 1.0;
        }
        grad.assert_approx_eq::<f32>(
            &TensorData::new(expected, [1, 1, 4, 4]),
            Tolerance::absolute(1e-6),
        );
    }

    #[test]
    fn boxes_of_several_images_come_out_image_by_image() {
        let device = Device::flex();
        // Image 1 is image 0 plus 100.
        let maps = Tensor::cat(vec![ramp(&device), ramp(&device) + 100.0], 0);
        let config = RoiPoolConfig::new([1, 1]);
        let rois = vec![
            vec![bx(0.0, 0.0, 1.0, 1.0)],
            vec![bx(0.0, 0.0, 1.0, 1.0), bx(2.0, 2.0, 3.0, 3.0)],
        ];
        let out = roi_pool(maps, &rois, &config);
        let values = out
            .into_data()
            .convert::<f32>()
            .try_to_vec_as::<f32>()
            .unwrap();
        assert_eq!(values, vec![5.0, 105.0, 115.0]);
        // No boxes at all: an empty result.
        let empty = roi_align(ramp(&device), &[vec![]], &RoiAlignConfig::new([2, 2]));
        assert_eq!(empty.dims(), [0, 1, 2, 2]);
    }
}
