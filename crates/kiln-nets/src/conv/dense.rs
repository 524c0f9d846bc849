//! An ungrouped convolution and its gradients on NCHW `f32` buffers, as matrix products.
//!
//! With `cols` the image's receptive fields (`C·kh·kw × oh·ow`, im2col) and `G` its output
//! gradient (`O × oh·ow`), the output is `W·cols` per image, the weight gradient is
//! `Σ_images G·colsᵀ` and the input gradient folds `Wᵀ·G` back onto the image (col2im). A 1×1
//! convolution needs neither copy: its columns are the image itself. A batch with at least one
//! image per thread runs its images in parallel, each product on one thread (small images make
//! small products, whose own threading costs more than it gains); smaller batches run each
//! product on all threads. Burn's generic weight gradient instead convolves the input with the
//! output gradient as a kernel, which for 1×1 layers is one matrix–vector product per input
//! channel.

use rayon::prelude::*;

use super::geometry::ConvGeometry;

/// The output `[n, O, oh, ow]`: per image `W (O × C·kh·kw) · cols`, plus the bias. A batch of
/// at least one image per thread runs images in parallel (each thread its own columns);
/// smaller batches run each product on all threads.
pub fn forward(g: &ConvGeometry, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (image_len, out_len, weight_len) = g.sizes();
    let spatial = g.output[0] * g.output[1];
    let rows = weight_len / g.out_channels;
    let mut out = vec![0f32; g.batch * out_len];
    let one_image = |out: &mut [f32], image: &[f32], columns: &mut Vec<f32>, parallel: bool| {
        let cols = columns_of(g, image, columns);
        // With a bias, each output plane starts at its bias and the product is added to it.
        if let Some(bias) = bias {
            for (plane, &b) in out.chunks_mut(spatial).zip(bias) {
                plane.fill(b);
            }
        }
        gemm(
            out,
            [g.out_channels, rows, spatial],
            Matrix::row_major(weight, rows),
            Matrix::row_major(cols, spatial),
            bias.is_some(),
            parallel,
        );
    };
    for_each_image(g, (&mut out, out_len), (x, image_len), one_image);
    out
}

/// The gradients of the weight (`[O, C, kh, kw]`) and of the bias (`[O]`). With images in
/// parallel each thread sums its share of the batch into a weight gradient of its own.
pub fn weight_grad(g: &ConvGeometry, x: &[f32], grad: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (image_len, out_len, weight_len) = g.sizes();
    let spatial = g.output[0] * g.output[1];
    let rows = weight_len / g.out_channels;
    // weight (O × rows) [+]= grad (O × L) · colsᵀ (L × rows), for one image.
    let add_image = |weight: &mut [f32],
                     image: &[f32],
                     grad: &[f32],
                     columns: &mut Vec<f32>,
                     first: bool,
                     parallel: bool| {
        let cols = columns_of(g, image, columns);
        gemm(
            weight,
            [g.out_channels, spatial, rows],
            Matrix::row_major(grad, spatial),
            Matrix::transposed(cols, spatial),
            !first,
            parallel,
        );
    };
    let images = x.chunks(image_len).zip(grad.chunks(out_len));
    let weight = match per_thread_share(g) {
        Some(share) => x
            .par_chunks(image_len)
            .zip(grad.par_chunks(out_len))
            .with_min_len(share)
            .fold(
                || (vec![0f32; weight_len], column_buffer(g), true),
                |(mut weight, mut columns, first), (image, grad)| {
                    add_image(&mut weight, image, grad, &mut columns, first, false);
                    (weight, columns, false)
                },
            )
            .map(|(weight, _, _)| weight)
            .reduce_with(|mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                a
            })
            .unwrap_or_else(|| vec![0f32; weight_len]),
        None => {
            let mut weight = vec![0f32; weight_len];
            let mut columns = column_buffer(g);
            for (n, (image, grad)) in images.enumerate() {
                add_image(&mut weight, image, grad, &mut columns, n == 0, true);
            }
            weight
        }
    };
    let bias = (0..g.out_channels)
        .into_par_iter()
        .map(|o| {
            (0..g.batch)
                .map(|n| {
                    let plane = &grad[n * out_len + o * spatial..][..spatial];
                    crate::simd::lane_sum(plane, plane, |v, _| v)
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
    // cols (rows × L) = weightᵀ (rows × O) · grad (O × L), folded back onto the image.
    let one_image = |dx: &mut [f32], grad: &[f32], columns: &mut Vec<f32>, parallel: bool| {
        let target: &mut [f32] = if g.is_pointwise() { dx } else { columns };
        gemm(
            target,
            [rows, g.out_channels, spatial],
            Matrix::transposed(weight, rows),
            Matrix::row_major(grad, spatial),
            false,
            parallel,
        );
        if !g.is_pointwise() {
            fold(g, columns, dx);
        }
    };
    for_each_image(g, (&mut dx, image_len), (grad, out_len), one_image);
    dx
}

/// Calls `f(target, source, columns, parallel)` for each image's `target_len` values of `target`
/// and `source_len` values of `source`: images in parallel (each thread its own im2col
/// workspace, `parallel` false) when [`per_thread_share`] allows, else one after the other
/// with `parallel` true.
fn for_each_image(
    g: &ConvGeometry,
    (target, target_len): (&mut [f32], usize),
    (source, source_len): (&[f32], usize),
    f: impl Fn(&mut [f32], &[f32], &mut Vec<f32>, bool) + Sync,
) {
    match per_thread_share(g) {
        Some(share) => target
            .par_chunks_mut(target_len)
            .zip(source.par_chunks(source_len))
            .with_min_len(share)
            .for_each_init(
                || column_buffer(g),
                |columns, (target, source)| f(target, source, columns, false),
            ),
        None => {
            let mut columns = column_buffer(g);
            for (target, source) in target.chunks_mut(target_len).zip(source.chunks(source_len)) {
                f(target, source, &mut columns, true);
            }
        }
    }
}

/// Images per thread when the batch has at least one image per thread (images then run in
/// parallel, each product on one thread); `None` for smaller batches (each product then runs
/// on all threads).
fn per_thread_share(g: &ConvGeometry) -> Option<usize> {
    let threads = rayon::current_num_threads();
    (g.batch >= threads).then(|| g.batch.div_ceil(threads))
}

/// The receptive fields of one image: the image itself for a 1×1 layer, else `buffer` filled
/// by [`unfold`].
fn columns_of<'a>(g: &ConvGeometry, image: &'a [f32], buffer: &'a mut [f32]) -> &'a [f32] {
    if g.is_pointwise() {
        image
    } else {
        unfold(g, image, buffer);
        buffer
    }
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
                let out = &mut out[range];
                if g.stride[1] == 1 {
                    out.copy_from_slice(&input[start..start + out.len()]);
                } else {
                    for (j, o) in out.iter_mut().enumerate() {
                        *o = input[start + j * g.stride[1]];
                    }
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
                let col = &col[range];
                if g.stride[1] == 1 {
                    let target = &mut target[start..start + col.len()];
                    target.iter_mut().zip(col).for_each(|(t, &v)| *t += v);
                } else {
                    for (j, &v) in col.iter().enumerate() {
                        target[start + j * g.stride[1]] += v;
                    }
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

/// `dst (m×n, row-major) = [dst +] lhs (m×k) · rhs (k×n)`, on all of rayon's threads when
/// `parallel`, else on the calling one.
fn gemm(
    dst: &mut [f32],
    [m, k, n]: [usize; 3],
    lhs: Matrix,
    rhs: Matrix,
    accumulate: bool,
    parallel: bool,
) {
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
            if parallel {
                gemm::Parallelism::Rayon(0)
            } else {
                gemm::Parallelism::None
            },
        );
    }
}
