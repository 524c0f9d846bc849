//! im2col + GEMM: each image's receptive fields are copied into the columns of a
//! `C·kh·kw × oh·ow` matrix, and the convolution becomes `weights[O × C·kh·kw] · columns`.

use rayon::prelude::*;

use super::{ConvOutput, ConvShape, add_bias, matmul};

/// Fills `columns` (`C·kh·kw × oh·ow`, row-major) with the receptive fields of one image.
pub fn unfold(shape: &ConvShape, image: &[f32], columns: &mut [f32]) {
    let [h, w] = shape.input;
    let [kh, kw] = shape.kernel;
    let [oh, ow] = shape.output();
    let ([sy, sx], [py, px], [dy, dx]) = (shape.stride, shape.padding, shape.dilation);
    for c in 0..shape.in_channels {
        let plane = &image[c * h * w..(c + 1) * h * w];
        for ky in 0..kh {
            for kx in 0..kw {
                let row = &mut columns[((c * kh + ky) * kw + kx) * oh * ow..][..oh * ow];
                for oy in 0..oh {
                    let y = (oy * sy + ky * dy) as isize - py as isize;
                    let out = &mut row[oy * ow..(oy + 1) * ow];
                    if y < 0 || y >= h as isize {
                        out.fill(0.0);
                        continue;
                    }
                    let src = &plane[y as usize * w..(y as usize + 1) * w];
                    for (ox, v) in out.iter_mut().enumerate() {
                        let x = (ox * sx + kx * dx) as isize - px as isize;
                        *v = if x >= 0 && x < w as isize {
                            src[x as usize]
                        } else {
                            0.0
                        };
                    }
                }
            }
        }
    }
}

/// The convolution by im2col + GEMM, images in parallel; the workspace is one column matrix
/// per worker thread.
pub fn conv2d(
    shape: &ConvShape,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
) -> ConvOutput {
    let [oh, ow] = shape.output();
    let rows = shape.in_channels * shape.kernel[0] * shape.kernel[1];
    let in_len = shape.in_channels * shape.input[0] * shape.input[1];
    let out_len = shape.out_channels * oh * ow;
    let mut values = vec![0f32; shape.batch * out_len];
    values
        .par_chunks_mut(out_len)
        .zip(input.par_chunks(in_len))
        .for_each_init(
            || vec![0f32; rows * oh * ow],
            |columns, (out, image)| {
                unfold(shape, image, columns);
                matmul(
                    weight,
                    columns,
                    out,
                    [shape.out_channels, rows, oh * ow],
                    false,
                );
            },
        );
    add_bias(&mut values, bias, oh * ow);
    let workers = rayon::current_num_threads().min(shape.batch);
    ConvOutput {
        values,
        workspace_bytes: workers * rows * oh * ow * 4,
    }
}
