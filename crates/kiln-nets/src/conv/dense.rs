//! Gradients of an ungrouped convolution on NCHW `f32` buffers, as matrix products.
//!
//! With `cols` the image's receptive fields (`C·kh·kw × oh·ow`, im2col) and `G` its output
//! gradient (`O × oh·ow`), the weight gradient is `Σ_images G·colsᵀ` and the input gradient
//! folds `Wᵀ·G` back onto the image (col2im). A 1×1 convolution needs neither copy: its
//! columns are the image itself. Burn's generic weight gradient instead convolves the input
//! with the output gradient as a kernel, which for 1×1 layers is one matrix–vector product per
//! input channel.

use rayon::prelude::*;

use super::geometry::ConvGeometry;

/// The gradients of the weight (`[O, C, kh, kw]`) and of the bias (`[O]`).
pub fn weight_grad(g: &ConvGeometry, x: &[f32], grad: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (image_len, out_len, weight_len) = g.sizes();
    let spatial = g.output[0] * g.output[1];
    let rows = weight_len / g.out_channels;
    let mut weight = vec![0f32; weight_len];
    let mut columns = column_buffer(g);
    for n in 0..g.batch {
        let image = &x[n * image_len..][..image_len];
        let grad = &grad[n * out_len..][..out_len];
        let cols: &[f32] = if g.is_pointwise() {
            image
        } else {
            unfold(g, image, &mut columns);
            &columns
        };
        // weight (O × rows) += grad (O × L) · colsᵀ (L × rows).
        gemm(
            &mut weight,
            [g.out_channels, spatial, rows],
            Matrix::row_major(grad, spatial),
            Matrix::transposed(cols, spatial),
            n > 0,
        );
    }
    let bias = (0..g.out_channels)
        .into_par_iter()
        .map(|o| {
            (0..g.batch)
                .map(|n| {
                    let plane = &grad[n * out_len + o * spatial..][..spatial];
                    plane.iter().map(|&v| v as f64).sum::<f64>()
                })
                .sum::<f64>() as f32
        })
        .collect();
    (weight, bias)
}

/// The gradient of the input.
pub fn input_grad(g: &ConvGeometry, weight: &[f32], grad: &[f32]) -> Vec<f32> {
    let (image_len, out_len, weight_len) = g.sizes();
    let spatial = g.output[0] * g.output[1];
    let rows = weight_len / g.out_channels;
    let mut dx = vec![0f32; g.batch * image_len];
    let mut columns = column_buffer(g);
    for n in 0..g.batch {
        let grad = &grad[n * out_len..][..out_len];
        let image = &mut dx[n * image_len..][..image_len];
        // cols (rows × L) = weightᵀ (rows × O) · grad (O × L).
        let target: &mut [f32] = if g.is_pointwise() {
            image
        } else {
            &mut columns
        };
        gemm(
            target,
            [rows, g.out_channels, spatial],
            Matrix::transposed(weight, rows),
            Matrix::row_major(grad, spatial),
            false,
        );
        if !g.is_pointwise() {
            fold(g, &columns, &mut dx[n * image_len..][..image_len]);
        }
    }
    dx
}

/// The im2col workspace of one image (`C·kh·kw × oh·ow`); empty for 1×1 layers, whose columns
/// are the image itself.
fn column_buffer(g: &ConvGeometry) -> Vec<f32> {
    if g.is_pointwise() {
        Vec::new()
    } else {
        let rows = g.in_channels / g.groups * g.kernel[0] * g.kernel[1];
        vec![0f32; rows * g.output[0] * g.output[1]]
    }
}

/// Fills `columns` (`C·kh·kw × oh·ow`) with the receptive fields of one image, zero outside.
pub fn unfold(g: &ConvGeometry, image: &[f32], columns: &mut [f32]) {
    let [h, w] = g.input;
    let taps = g.kernel[0] * g.kernel[1];
    let spatial = g.output[0] * g.output[1];
    columns
        .par_chunks_mut(taps * spatial)
        .zip(image.par_chunks(h * w))
        .for_each(|(rows, plane)| {
            rows.fill(0.0);
            g.for_each_row_tap(|tap, oy, iy, range, start| {
                let out = &mut rows[tap * spatial + oy * g.output[1]..][..g.output[1]];
                let input = &plane[iy * w..(iy + 1) * w];
                for (j, o) in out[range].iter_mut().enumerate() {
                    *o = input[start + j * g.stride[1]];
                }
            });
        });
}

/// Adds each column entry back onto the input position it was read from (the adjoint of
/// [`unfold`]); `image` must start at zero.
pub fn fold(g: &ConvGeometry, columns: &[f32], image: &mut [f32]) {
    let [h, w] = g.input;
    let taps = g.kernel[0] * g.kernel[1];
    let spatial = g.output[0] * g.output[1];
    image
        .par_chunks_mut(h * w)
        .zip(columns.par_chunks(taps * spatial))
        .for_each(|(plane, rows)| {
            g.for_each_row_tap(|tap, oy, iy, range, start| {
                let col = &rows[tap * spatial + oy * g.output[1]..][..g.output[1]];
                let target = &mut plane[iy * w..(iy + 1) * w];
                for (j, &v) in col[range].iter().enumerate() {
                    target[start + j * g.stride[1]] += v;
                }
            });
        });
}

/// A matrix view of a slice: element `(i, j)` at `i·row_stride + j·col_stride`.
#[derive(Clone, Copy)]
struct Matrix<'a> {
    data: &'a [f32],
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Matrix<'a> {
    /// A row-major matrix with rows `cols` long.
    fn row_major(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major matrix whose rows are `stored_cols` long.
    fn transposed(data: &'a [f32], stored_cols: usize) -> Self {
        Self {
            data,
            row_stride: 1,
            col_stride: stored_cols,
        }
    }

    /// Whether every element of an `rows × cols` view lies inside the slice.
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0
            || cols == 0
            || (rows - 1) * self.row_stride + (cols - 1) * self.col_stride < self.data.len()
    }
}

/// `dst (m×n, row-major) = [dst +] lhs (m×k) · rhs (k×n)`, on all of rayon's threads.
fn gemm(dst: &mut [f32], [m, k, n]: [usize; 3], lhs: Matrix, rhs: Matrix, accumulate: bool) {
    assert!(dst.len() >= m * n && lhs.fits(m, k) && rhs.fits(k, n));
    // SAFETY: the assert keeps every element of the m×k, k×n and m×n views inside their
    // slices, and `dst` is exclusively borrowed.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        );
    }
}
