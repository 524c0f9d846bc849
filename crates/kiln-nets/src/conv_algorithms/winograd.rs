//! Winograd's minimal filtering F(m×m, 3×3) (Lavin & Gray, 2016): every `(m+2)×(m+2)` input tile
//! and 3×3 filter is transformed (`Bᵀ d B`, `G g Gᵀ`), the transforms are multiplied
//! element-wise and summed over channels — `(m+2)²` matrix products `[O × C] · [C × tiles]` — and
//! transformed back (`Aᵀ M A`) into an `m×m` output tile. F(2×2) needs 16 multiplications per
//! tile and channel pair instead of 36; F(4×4) 36 instead of 144, with larger rounding error.

use rayon::prelude::*;

use super::{ConvOutput, ConvShape, add_bias, matmul};

/// Output tile size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tile {
    /// F(2×2, 3×3): 4×4 input tiles.
    F2x2,
    /// F(4×4, 3×3): 6×6 input tiles.
    F4x4,
}

/// The transform matrices `(Bᵀ, G, Aᵀ)` of a tile size, row-major.
struct Transforms {
    m: usize,
    bt: Vec<f32>,
    g: Vec<f32>,
    at: Vec<f32>,
}

impl Tile {
    fn transforms(self) -> Transforms {
        match self {
            Self::F2x2 => Transforms {
                m: 2,
                bt: vec![
                    1.0, 0.0, -1.0, 0.0, //
                    0.0, 1.0, 1.0, 0.0, //
                    0.0, -1.0, 1.0, 0.0, //
                    0.0, 1.0, 0.0, -1.0,
                ],
                g: vec![
                    1.0, 0.0, 0.0, //
                    0.5, 0.5, 0.5, //
                    0.5, -0.5, 0.5, //
                    0.0, 0.0, 1.0,
                ],
                at: vec![
                    1.0, 1.0, 1.0, 0.0, //
                    0.0, 1.0, -1.0, -1.0,
                ],
            },
            Self::F4x4 => Transforms {
                m: 4,
                bt: vec![
                    4.0, 0.0, -5.0, 0.0, 1.0, 0.0, //
                    0.0, -4.0, -4.0, 1.0, 1.0, 0.0, //
                    0.0, 4.0, -4.0, -1.0, 1.0, 0.0, //
                    0.0, -2.0, -1.0, 2.0, 1.0, 0.0, //
                    0.0, 2.0, -1.0, -2.0, 1.0, 0.0, //
                    0.0, 4.0, 0.0, -5.0, 0.0, 1.0,
                ],
                g: vec![
                    1.0 / 4.0,
                    0.0,
                    0.0, //
                    -1.0 / 6.0,
                    -1.0 / 6.0,
                    -1.0 / 6.0, //
                    -1.0 / 6.0,
                    1.0 / 6.0,
                    -1.0 / 6.0, //
                    1.0 / 24.0,
                    1.0 / 12.0,
                    1.0 / 6.0, //
                    1.0 / 24.0,
                    -1.0 / 12.0,
                    1.0 / 6.0, //
                    0.0,
                    0.0,
                    1.0,
                ],
                at: vec![
                    1.0, 1.0, 1.0, 1.0, 1.0, 0.0, //
                    0.0, 1.0, -1.0, 2.0, -2.0, 0.0, //
                    0.0, 1.0, 1.0, 4.0, 4.0, 0.0, //
                    0.0, 1.0, -1.0, 8.0, -8.0, 1.0,
                ],
            },
        }
    }
}

/// `L · X · Rᵀ` for small row-major matrices: `L` is `p×q`, `X` is `q×q`, `R` is `p×q`.
fn sandwich(l: &[f32], x: &[f32], r: &[f32], p: usize, q: usize, out: &mut [f32]) {
    let mut tmp = [0f32; 36];
    for i in 0..p {
        for j in 0..q {
            tmp[i * q + j] = (0..q).map(|k| l[i * q + k] * x[k * q + j]).sum();
        }
    }
    for i in 0..p {
        for j in 0..p {
            out[i * p + j] = (0..q).map(|k| tmp[i * q + k] * r[j * q + k]).sum();
        }
    }
}

/// The convolution (3×3 kernel, stride 1, no dilation) by Winograd transforms. Workspace: the
/// transformed filters, input tiles and products, `α²·(O·C + C·T + O·T)` values for `T` tiles.
pub fn conv2d(
    tile: Tile,
    shape: &ConvShape,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
) -> ConvOutput {
    let t = tile.transforms();
    let (m, a) = (t.m, t.m + 2);
    let aa = a * a;
    let (c_in, c_out) = (shape.in_channels, shape.out_channels);
    let [h, w] = shape.input;
    let [oh, ow] = shape.output();
    let [py, px] = shape.padding;
    let (ty, tx) = (oh.div_ceil(m), ow.div_ceil(m));
    let tiles = shape.batch * ty * tx;

    // U[ξ][o][c] = (G g Gᵀ)[ξ].
    let mut u = vec![0f32; aa * c_out * c_in];
    let mut g_out = [0f32; 36];
    for o in 0..c_out {
        for c in 0..c_in {
            let g = &weight[(o * c_in + c) * 9..][..9];
            // G is a×3; sandwich wants square inputs, so form G g Gᵀ directly.
            let mut gg = [0f32; 18];
            for i in 0..a {
                for j in 0..3 {
                    gg[i * 3 + j] = (0..3).map(|k| t.g[i * 3 + k] * g[k * 3 + j]).sum();
                }
            }
            for i in 0..a {
                for j in 0..a {
                    g_out[i * a + j] = (0..3).map(|k| gg[i * 3 + k] * t.g[j * 3 + k]).sum();
                }
            }
            for xi in 0..aa {
                u[(xi * c_out + o) * c_in + c] = g_out[xi];
            }
        }
    }

    // V[ξ][c][tile] = (Bᵀ d B)[ξ], tiles in parallel over images.
    let mut v = vec![0f32; aa * c_in * tiles];
    let per_image = ty * tx;
    let tile_values: Vec<Vec<f32>> = (0..shape.batch)
        .into_par_iter()
        .map(|n| {
            let mut local = vec![0f32; c_in * per_image * aa];
            let mut d = [0f32; 36];
            let mut out = [0f32; 36];
            for c in 0..c_in {
                let plane = &input[(n * c_in + c) * h * w..][..h * w];
                for by in 0..ty {
                    for bx in 0..tx {
                        for i in 0..a {
                            let y = (by * m + i) as isize - py as isize;
                            for j in 0..a {
                                let x = (bx * m + j) as isize - px as isize;
                                d[i * a + j] =
                                    if y >= 0 && y < h as isize && x >= 0 && x < w as isize {
                                        plane[y as usize * w + x as usize]
                                    } else {
                                        0.0
                                    };
                            }
                        }
                        sandwich(&t.bt, &d, &t.bt, a, a, &mut out);
                        let base = (c * per_image + by * tx + bx) * aa;
                        local[base..base + aa].copy_from_slice(&out[..aa]);
                    }
                }
            }
            local
        })
        .collect();
    for (n, local) in tile_values.iter().enumerate() {
        for c in 0..c_in {
            for p in 0..per_image {
                let src = &local[(c * per_image + p) * aa..][..aa];
                for (xi, &value) in src.iter().enumerate() {
                    v[(xi * c_in + c) * tiles + n * per_image + p] = value;
                }
            }
        }
    }

    // M[ξ] = U[ξ] · V[ξ]: α² products [O × C] · [C × T].
    let mut mm = vec![0f32; aa * c_out * tiles];
    mm.par_chunks_mut(c_out * tiles)
        .enumerate()
        .for_each(|(xi, out)| {
            matmul(
                &u[xi * c_out * c_in..][..c_out * c_in],
                &v[xi * c_in * tiles..][..c_in * tiles],
                out,
                [c_out, c_in, tiles],
                false,
            );
        });

    // Y = Aᵀ M A per output tile.
    let mut values = vec![0f32; shape.batch * c_out * oh * ow];
    values
        .par_chunks_mut(oh * ow)
        .enumerate()
        .for_each(|(plane_index, plane)| {
            let (n, o) = (plane_index / c_out, plane_index % c_out);
            let mut mt = [0f32; 36];
            let mut y = [0f32; 36];
            for by in 0..ty {
                for bx in 0..tx {
                    let tile_index = n * per_image + by * tx + bx;
                    for xi in 0..aa {
                        mt[xi] = mm[(xi * c_out + o) * tiles + tile_index];
                    }
                    sandwich(&t.at, &mt, &t.at, m, a, &mut y);
                    for i in 0..m.min(oh - by * m) {
                        for j in 0..m.min(ow - bx * m) {
                            plane[(by * m + i) * ow + bx * m + j] = y[i * m + j];
                        }
                    }
                }
            }
        });
    add_bias(&mut values, bias, oh * ow);
    ConvOutput {
        values,
        workspace_bytes: (u.len()
            + v.len()
            + mm.len()
            + tile_values.iter().map(Vec::len).sum::<usize>())
            * 4,
    }
}
