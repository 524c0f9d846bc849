//! Drawing a convolution's filters as an image grid, as the course does for first layers.

use std::path::Path;

use burn::tensor::Tensor;
use kiln_data::Image;
use kiln_data::{GridOptions, save_grid};

use crate::{Result, TrainError};

fn drawing(e: kiln_data::DataError) -> TrainError {
    TrainError::Invalid(format!("drawing filters: {e}"))
}

/// Writes the filters `[count, channels, k, k]` of a convolution as a PNG grid: each filter
/// stretched to the full grey/colour range on its own (3 channels draw in colour, others as one
/// grey tile per channel), 8 filters a row.
pub fn save_filters(weights: Tensor<4>, path: &Path) -> Result<()> {
    let [count, channels, kh, kw] = weights.dims();
    let values = weights
        .into_data()
        .try_to_vec_as::<f32>()
        .map_err(|e| TrainError::Invalid(format!("reading filters: {e:?}")))?;
    let per_filter = channels * kh * kw;
    let mut tiles = Vec::new();
    for f in values.chunks_exact(per_filter).take(count) {
        let (lo, hi) = f
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
                (l.min(v), h.max(v))
            });
        let scale = if hi > lo { 255.0 / (hi - lo) } else { 0.0 };
        let byte = |v: f32| ((v - lo) * scale).round().clamp(0.0, 255.0) as u8;
        if channels == 3 {
            // CHW → HWC.
            let data = (0..kh * kw)
                .flat_map(|p| (0..3).map(move |c| f[c * kh * kw + p]))
                .map(byte)
                .collect();
            tiles.push(Image::new(kw, kh, 3, data).map_err(drawing)?);
        } else {
            for c in 0..channels {
                let data = f[c * kh * kw..(c + 1) * kh * kw]
                    .iter()
                    .map(|&v| byte(v))
                    .collect();
                tiles.push(Image::new(kw, kh, 1, data).map_err(drawing)?);
            }
        }
    }
    let tiles_per_filter = if channels == 3 { 1 } else { channels };
    let rows: Vec<Vec<Image>> = tiles
        .chunks(8 * tiles_per_filter)
        .map(<[Image]>::to_vec)
        .collect();
    let options = GridOptions {
        scale: (48 / kh.max(kw)).max(2),
        gap: 2,
        background: 128,
    };
    save_grid(&rows, options, path).map_err(drawing)
}
