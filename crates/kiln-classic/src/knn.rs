//! k-nearest neighbours on raw pixels, with the training set kept in memory and queries
//! processed in chunks under a memory budget.
//!
//! L2 distances come from one matmul per query chunk on the device
//! (‖a‖² + ‖b‖² − 2abᵀ). L1 distances never materialise a queries × train × dims tensor: on
//! CPUs a cache-blocked native kernel sums absolute byte differences (which compilers turn into
//! SIMD sum-of-absolute-differences instructions); on other devices chunked tensor operations
//! stay under the budget.

use std::str::FromStr;
use std::sync::OnceLock;

use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{ClassicError, Result};

/// Distance between two images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Sum of absolute differences (Manhattan).
    L1,
    /// Euclidean distance (ranked by its square).
    L2,
}

impl FromStr for Metric {
    type Err = ClassicError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "l1" => Ok(Self::L1),
            "l2" => Ok(Self::L2),
            other => Err(ClassicError::invalid(
                "metric",
                format!("`{other}` is not l1 or l2"),
            )),
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::L1 => "L1",
            Self::L2 => "L2",
        })
    }
}

/// Where distances are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DistanceKernel {
    /// Native multithreaded loops over bytes (CPU backends): sum-of-absolute-differences for
    /// L1, and an exact integer matmul with AVX-512 VNNI for L2 where the CPU has it (else the
    /// device matmul).
    Native,
    /// Tensor operations on the device (GPU backends).
    Tensor,
}

/// Settings of a prediction.
#[derive(Clone, Copy, Debug)]
pub struct KnnOptions {
    /// Largest distance block held at once, in bytes.
    pub memory_budget: usize,
    /// Where distances are computed.
    pub kernel: DistanceKernel,
}

impl Default for KnnOptions {
    fn default() -> Self {
        Self {
            memory_budget: 1 << 30,
            kernel: DistanceKernel::Native,
        }
    }
}

/// Majority vote among neighbour labels; ties go to the smallest label, as in CS231n.
pub fn vote(labels: impl IntoIterator<Item = usize>, num_classes: usize) -> usize {
    let mut counts = vec![0usize; num_classes];
    for l in labels {
        counts[l] += 1;
    }
    // `max_by_key` keeps the last maximum; reverse so that the smallest label wins ties.
    counts
        .iter()
        .enumerate()
        .rev()
        .max_by_key(|(_, c)| **c)
        .map_or(0, |(l, _)| l)
}

/// The `k` smallest entries of `distances` as indices, nearest first (ties by index).
///
/// One pass keeping a sorted list of the best `k`; most entries fail the comparison with the
/// current k-th best, so this is far cheaper than sorting a row.
fn k_smallest(distances: impl Iterator<Item = f32>, k: usize) -> Vec<u32> {
    let mut best: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
    for (i, d) in distances.enumerate() {
        if best.len() == k && d >= best[k - 1].0 {
            continue;
        }
        // Insert after every entry with a distance <= d, so equal distances keep index order.
        let at = best.partition_point(|&(b, _)| b <= d);
        best.insert(at, (d, i as u32));
        best.truncate(k);
    }
    best.into_iter().map(|(_, i)| i).collect()
}

/// Sum of absolute differences of two byte rows.
#[inline]
fn sad(a: &[u8], b: &[u8]) -> u32 {
    // Accumulating in u16 lanes over 64-byte blocks lets the compiler use SAD instructions.
    let mut total = 0u32;
    let mut chunks_a = a.chunks_exact(64);
    let mut chunks_b = b.chunks_exact(64);
    for (ca, cb) in (&mut chunks_a).zip(&mut chunks_b) {
        let mut acc = 0u16;
        for (x, y) in ca.iter().zip(cb) {
            acc += x.abs_diff(*y) as u16;
        }
        total += acc as u32;
    }
    for (x, y) in chunks_a.remainder().iter().zip(chunks_b.remainder()) {
        total += x.abs_diff(*y) as u32;
    }
    total
}

/// A kNN classifier holding its training images as bytes on the host and, once an operation
/// needs them, as `f32` on the device.
pub struct KnnClassifier {
    pixels: Vec<u8>,
    labels: Vec<usize>,
    num_classes: usize,
    dims: usize,
    device: Device,
    on_device: OnceLock<DeviceTrain>,
    simd: OnceLock<SimdRows>,
}

/// The training set as the AVX-512 kernels need it.
struct SimdRows {
    /// Rows shifted to `i8` for VNNI dot products.
    signed: crate::dot_u8::SignedRows,
    /// Rows zero-padded to a multiple of 64 bytes for `vpsadbw`.
    padded: Vec<u8>,
    /// ‖t‖² per row, exact.
    norms: Vec<i64>,
}

/// The training set as the device needs it.
struct DeviceTrain {
    /// `[N, D]` rows, for L1 on the device.
    rows: Tensor<2>,
    /// `[D, N]`, contiguous, so each chunk's matmul reads it without a transposed copy.
    columns: Tensor<2>,
    /// ‖t‖² per training row, on the host.
    sq_norms: Vec<f32>,
}

impl std::fmt::Debug for KnnClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "KnnClassifier({} × {} on {:?})",
            self.labels.len(),
            self.dims,
            self.device
        )
    }
}

impl KnnClassifier {
    /// "Trains" (stores) `labels.len()` rows of `dims` bytes each.
    pub fn fit(
        pixels: Vec<u8>,
        dims: usize,
        labels: Vec<usize>,
        num_classes: usize,
        device: &Device,
    ) -> Result<Self> {
        if labels.is_empty() {
            return Err(ClassicError::invalid("training set", "it is empty"));
        }
        if dims == 0 || pixels.len() != dims * labels.len() {
            return Err(ClassicError::Shape(format!(
                "{} bytes are not {} rows of {dims}",
                pixels.len(),
                labels.len()
            )));
        }
        if let Some(bad) = labels.iter().find(|&&l| l >= num_classes) {
            return Err(ClassicError::invalid(
                "labels",
                format!("label {bad} but {num_classes} classes"),
            ));
        }
        Ok(Self {
            pixels,
            labels,
            num_classes,
            dims,
            device: device.clone(),
            on_device: OnceLock::new(),
            simd: OnceLock::new(),
        })
    }

    /// Number of stored training rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether no row is stored (never true for a fitted classifier).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// What the training set occupies, as `(description, bytes)`: the bytes themselves, plus
    /// each layout a kernel has built so far (AVX-512 rows on the host; on the device the set
    /// twice as `f32`, rows for L1 and columns for the L2 matmul).
    pub fn memory(&self) -> Vec<(&'static str, usize)> {
        let mut held = vec![("bytes on the host", self.pixels.len())];
        if let Some(simd) = self.simd.get() {
            held.push(("AVX-512 layouts on the host", simd.padded.len() * 2));
        }
        if self.on_device.get().is_some() {
            held.push(("f32 on the device", 2 * self.pixels.len() * 4));
        }
        held
    }

    /// The training set on the device (made on first use).
    fn device_train(&self) -> &DeviceTrain {
        self.on_device.get_or_init(|| {
            let (n, d) = (self.len(), self.dims);
            let values: Vec<f32> = self.pixels.iter().map(|&v| v as f32).collect();
            let mut transposed = vec![0f32; n * d];
            for (i, row) in self.pixels.chunks_exact(d).enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    transposed[j * n + i] = v as f32;
                }
            }
            let sq_norms = self
                .pixels
                .chunks_exact(d)
                .map(|r| r.iter().map(|&v| (v as f32) * (v as f32)).sum())
                .collect();
            DeviceTrain {
                rows: Tensor::from_data(TensorData::new(values, [n, d]), &self.device),
                columns: Tensor::from_data(TensorData::new(transposed, [d, n]), &self.device),
                sq_norms,
            }
        })
    }

    /// Builds the layout that `metric` with `options` computes on (device tensors or AVX-512
    /// rows), which otherwise happens on the first query: part of "training".
    pub fn prepare(&self, metric: Metric, options: &KnnOptions) {
        let native = options.kernel == DistanceKernel::Native;
        match metric {
            Metric::L1 if native && crate::dot_u8::available() => {
                let _ = self.simd_rows();
            }
            Metric::L1 if native => {}
            Metric::L2 if native && crate::dot_u8::available() => {
                let _ = self.simd_rows();
            }
            _ => {
                let _ = self.device_train();
            }
        }
    }

    fn check_queries(&self, queries: &[u8], k: usize) -> Result<usize> {
        if !queries.len().is_multiple_of(self.dims) {
            return Err(ClassicError::Shape(format!(
                "queries of {} bytes are not rows of {} (the training images' size)",
                queries.len(),
                self.dims
            )));
        }
        if k == 0 || k > self.len() {
            return Err(ClassicError::invalid(
                "k",
                format!(
                    "k = {k} must be between 1 and the {} training images",
                    self.len()
                ),
            ));
        }
        Ok(queries.len() / self.dims)
    }

    fn read(tensor: Tensor<2>) -> Result<Vec<f32>> {
        tensor
            .into_data()
            .try_into_vec_as::<f32>()
            .map_err(|e| ClassicError::Read(format!("{e:?}")))
    }

    /// Distances from a chunk of queries to every training row, `[rows × N]`, row-major. For
    /// L2 these are ranking keys `‖t‖² − 2 q·t`: the squared distance minus the query's own
    /// norm, which is constant along a row (see [`KnnClassifier::squared_l2`]).
    fn distance_chunk(
        &self,
        queries: &[u8],
        metric: Metric,
        options: &KnnOptions,
    ) -> Result<Vec<f32>> {
        let rows = queries.len() / self.dims;
        let n = self.len();
        match (metric, options.kernel) {
            (Metric::L1, DistanceKernel::Native) if crate::dot_u8::available() => {
                Ok(self.l1_avx512(queries))
            }
            (Metric::L1, DistanceKernel::Native) => Ok(self.l1_portable(queries)),
            (Metric::L1, DistanceKernel::Tensor) => {
                let train = &self.device_train().rows;
                let q = self.query_tensor(queries);
                // Keep [rows, block, D] under the budget.
                let per_train_row = rows * self.dims * 4;
                let block = (options.memory_budget / per_train_row.max(1)).clamp(1, n);
                let mut parts = Vec::new();
                for start in (0..n).step_by(block) {
                    let end = (start + block).min(n);
                    let t = train
                        .clone()
                        .narrow(0, start, end - start)
                        .unsqueeze_dim::<3>(0);
                    let d = (q.clone().unsqueeze_dim::<3>(1) - t)
                        .abs()
                        .sum_dim(2)
                        .squeeze_dim::<2>(2);
                    parts.push(d);
                }
                Self::read(Tensor::cat(parts, 1))
            }
            (Metric::L2, DistanceKernel::Native) if crate::dot_u8::available() => {
                Ok(self.l2_keys_vnni(queries))
            }
            (Metric::L2, _) => {
                let train = self.device_train();
                let q = self.query_tensor(queries);
                let mut keys = Self::read(q.matmul(train.columns.clone()))?;
                keys.par_chunks_mut(n).for_each(|row| {
                    for (v, t) in row.iter_mut().zip(&train.sq_norms) {
                        *v = t - 2.0 * *v;
                    }
                });
                Ok(keys)
            }
        }
    }

    fn simd_rows(&self) -> &SimdRows {
        self.simd.get_or_init(|| SimdRows {
            signed: crate::dot_u8::SignedRows::new(&self.pixels, self.dims),
            padded: crate::dot_u8::pad_queries(&self.pixels, self.dims).0,
            norms: self
                .pixels
                .chunks_exact(self.dims)
                .map(|r| r.iter().map(|&v| (v as i64) * (v as i64)).sum())
                .collect(),
        })
    }

    /// Runs `kernel(padded query block, its rows, output rows)` over blocks of queries small
    /// enough to stay in cache while the training rows stream past, in parallel.
    fn per_query_block(
        &self,
        queries: &[u8],
        kernel: impl Fn(&[u8], &[u8], &mut [f32]) + Sync,
    ) -> Vec<f32> {
        const BLOCK: usize = 96;
        let n = self.len();
        let mut out = vec![0f32; queries.len() / self.dims * n];
        out.par_chunks_mut(BLOCK * n)
            .zip(queries.par_chunks(BLOCK * self.dims))
            .for_each(|(out, block)| {
                let (padded, _) = crate::dot_u8::pad_queries(block, self.dims);
                kernel(&padded, block, out);
            });
        out
    }

    /// L1 distances with a portable loop that compilers vectorise.
    fn l1_portable(&self, queries: &[u8]) -> Vec<f32> {
        let n = self.len();
        // Each training row is compared with every query of the block while it is in cache.
        self.per_query_block(queries, |_, block, out| {
            for (col, t) in self.pixels.chunks_exact(self.dims).enumerate() {
                for (qi, q) in block.chunks_exact(self.dims).enumerate() {
                    out[qi * n + col] = sad(q, t) as f32;
                }
            }
        })
    }

    /// L1 distances with `vpsadbw` (AVX-512BW), exact.
    fn l1_avx512(&self, queries: &[u8]) -> Vec<f32> {
        let rows = self.simd_rows();
        let stride = self.dims.div_ceil(64) * 64;
        self.per_query_block(queries, |padded, _, out| {
            let mut sads = vec![0u32; out.len()];
            crate::dot_u8::sad_block(padded, &rows.padded, stride, &mut sads);
            for (o, s) in out.iter_mut().zip(sads) {
                *o = s as f32;
            }
        })
    }

    /// L2 ranking keys `‖t‖² − 2 q·t` from exact integer dot products (AVX-512 VNNI).
    fn l2_keys_vnni(&self, queries: &[u8]) -> Vec<f32> {
        let rows = self.simd_rows();
        let (n, d) = (self.len(), self.dims);
        self.per_query_block(queries, |padded, block, out| {
            let mut dots = vec![0i32; out.len()];
            crate::dot_u8::dot_block(padded, &rows.signed, &mut dots);
            for (q, (row, dot_row)) in out.chunks_mut(n).zip(dots.chunks(n)).enumerate() {
                let q_sum: i64 = block[q * d..(q + 1) * d].iter().map(|&v| v as i64).sum();
                for ((key, &dot), &norm) in row.iter_mut().zip(dot_row).zip(&rows.norms) {
                    *key = (norm - 2 * (dot as i64 + 128 * q_sum)) as f32;
                }
            }
        })
    }

    /// Squared L2 distance from a ranking key of [`Metric::L2`] and the query's bytes.
    pub fn squared_l2(key: f32, query: &[u8]) -> f32 {
        key + query.iter().map(|&v| (v as f32) * (v as f32)).sum::<f32>()
    }

    fn query_tensor(&self, queries: &[u8]) -> Tensor<2> {
        let rows = queries.len() / self.dims;
        let values: Vec<f32> = queries.iter().map(|&v| v as f32).collect();
        Tensor::from_data(TensorData::new(values, [rows, self.dims]), &self.device)
    }

    /// Rows of queries per chunk so that a chunk's distances fit the budget.
    pub fn chunk_rows(&self, options: &KnnOptions) -> usize {
        (options.memory_budget / (self.len() * 4 * 2)).max(1)
    }

    /// The `k` nearest training rows of every query, nearest first; `progress` is called with
    /// the number of queries finished after each chunk.
    pub fn neighbours(
        &self,
        queries: &[u8],
        k: usize,
        metric: Metric,
        options: &KnnOptions,
        mut progress: impl FnMut(usize),
    ) -> Result<Vec<Vec<u32>>> {
        let rows = self.check_queries(queries, k)?;
        let chunk = self.chunk_rows(options);
        let mut out = Vec::with_capacity(rows);
        for q in queries.chunks(chunk * self.dims) {
            let distances = self.distance_chunk(q, metric, options)?;
            let n = self.len();
            let mut nearest: Vec<Vec<u32>> = distances
                .par_chunks(n)
                .map(|row| k_smallest(row.iter().copied(), k))
                .collect();
            progress(nearest.len());
            out.append(&mut nearest);
        }
        Ok(out)
    }

    /// Class predicted from the first `k` entries of each neighbour list.
    pub fn vote_k(&self, neighbours: &[Vec<u32>], k: usize) -> Vec<usize> {
        neighbours
            .iter()
            .map(|nb| {
                vote(
                    nb.iter().take(k).map(|&i| self.labels[i as usize]),
                    self.num_classes,
                )
            })
            .collect()
    }

    /// Predicted classes of `queries` with `k` neighbours.
    pub fn predict(
        &self,
        queries: &[u8],
        k: usize,
        metric: Metric,
        options: &KnnOptions,
    ) -> Result<Vec<usize>> {
        let nb = self.neighbours(queries, k, metric, options, |_| {})?;
        Ok(self.vote_k(&nb, k))
    }
}

/// Fraction of `predicted` equal to `truth`.
pub fn accuracy(predicted: &[usize], truth: &[usize]) -> f64 {
    let hits = predicted.iter().zip(truth).filter(|(p, t)| p == t).count();
    hits as f64 / truth.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random()).collect()
    }

    /// The two-loop reference: every distance computed directly in f64.
    fn naive(train: &[u8], queries: &[u8], d: usize, metric: Metric) -> Vec<Vec<f64>> {
        queries
            .chunks(d)
            .map(|q| {
                train
                    .chunks(d)
                    .map(|t| {
                        q.iter()
                            .zip(t)
                            .map(|(&a, &b)| {
                                let diff = a as f64 - b as f64;
                                if metric == Metric::L1 {
                                    diff.abs()
                                } else {
                                    diff * diff
                                }
                            })
                            .sum()
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn every_kernel_matches_the_two_loop_reference() {
        let device = Device::flex();
        let d = 70; // not a multiple of 64, to exercise the remainder
        let train = random_bytes(37 * d, 1);
        let queries = random_bytes(11 * d, 2);
        let labels: Vec<usize> = (0..37).map(|i| i % 3).collect();
        let knn = KnnClassifier::fit(train.clone(), d, labels, 3, &device).unwrap();
        for (metric, kernel) in [
            (Metric::L1, DistanceKernel::Native),
            (Metric::L1, DistanceKernel::Tensor),
            (Metric::L2, DistanceKernel::Native),
            (Metric::L2, DistanceKernel::Tensor),
        ] {
            let reference = naive(&train, &queries, d, metric);
            // A tiny budget forces several chunks and blocks.
            let options = KnnOptions {
                memory_budget: 2_000,
                kernel,
            };
            let got = knn.distance_chunk(&queries, metric, &options).unwrap();
            for (qi, row) in reference.iter().enumerate() {
                let q = &queries[qi * d..(qi + 1) * d];
                for (ti, &r) in row.iter().enumerate() {
                    let key = got[qi * 37 + ti];
                    let g = if metric == Metric::L2 {
                        KnnClassifier::squared_l2(key, q)
                    } else {
                        key
                    } as f64;
                    assert!(
                        (g - r).abs() <= 1e-4 * r.max(1.0),
                        "{metric} {kernel:?}: {g} vs {r}"
                    );
                }
            }
            let nb = knn
                .neighbours(&queries, 5, metric, &options, |_| {})
                .unwrap();
            for (qi, list) in nb.iter().enumerate() {
                let mut order: Vec<usize> = (0..37).collect();
                order.sort_by(|&a, &b| {
                    reference[qi][a]
                        .partial_cmp(&reference[qi][b])
                        .unwrap()
                        .then(a.cmp(&b))
                });
                let expect: Vec<u32> = order[..5].iter().map(|&i| i as u32).collect();
                assert_eq!(list, &expect, "{metric} query {qi}");
            }
        }
    }

    #[test]
    fn k_smallest_keeps_index_order_on_ties() {
        let d = [3.0, 1.0, 2.0, 1.0, 0.5, 2.0];
        assert_eq!(k_smallest(d.iter().copied(), 3), vec![4, 1, 3]);
        assert_eq!(k_smallest(d.iter().copied(), 6), vec![4, 1, 3, 2, 5, 0]);
        assert_eq!(k_smallest(d.iter().copied(), 1), vec![4]);
    }

    #[test]
    fn votes_break_ties_toward_the_smallest_label() {
        assert_eq!(vote([2, 1, 2, 1], 3), 1);
        assert_eq!(vote([0, 2, 2], 3), 2);
        assert_eq!(vote([2], 3), 2);
    }

    #[test]
    fn one_nearest_neighbour_recovers_training_labels() {
        let device = Device::flex();
        let train = random_bytes(20 * 16, 3);
        let labels: Vec<usize> = (0..20).map(|i| i % 4).collect();
        let knn = KnnClassifier::fit(train.clone(), 16, labels.clone(), 4, &device).unwrap();
        for metric in [Metric::L1, Metric::L2] {
            let p = knn
                .predict(&train, 1, metric, &KnnOptions::default())
                .unwrap();
            assert_eq!(accuracy(&p, &labels), 1.0);
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let device = Device::flex();
        assert!(KnnClassifier::fit(vec![], 4, vec![], 2, &device).is_err());
        assert!(KnnClassifier::fit(vec![0; 7], 4, vec![0, 1], 2, &device).is_err());
        assert!(KnnClassifier::fit(vec![0; 8], 4, vec![0, 5], 2, &device).is_err());
        let knn = KnnClassifier::fit(vec![0; 8], 4, vec![0, 1], 2, &device).unwrap();
        let err = knn
            .predict(&[0; 4], 3, Metric::L2, &KnnOptions::default())
            .unwrap_err();
        assert!(err.to_string().contains("k = 3"), "{err}");
        let err = knn
            .predict(&[0; 5], 1, Metric::L2, &KnnOptions::default())
            .unwrap_err();
        assert!(err.to_string().contains("rows of 4"), "{err}");
        assert!("l3".parse::<Metric>().is_err());
    }
}
