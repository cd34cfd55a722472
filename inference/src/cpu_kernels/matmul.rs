//! `y = x · Wᵀ` for a quantized weight matrix repacked at load ([`PackedMatrix`]), run as a candle
//! [`CustomOp1`] so the model composes it with other tensor ops.
//!
//! Each call quantizes the activation rows to int8 once, then splits the weight rows into chunks that the
//! rayon pool computes in parallel; every chunk takes each weight row once and dots it with the activation
//! rows four at a time (see [`super::dot`]), so a weight row is read from memory once per call however
//! many tokens the step carries.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape};
use rayon::prelude::*;

use super::dot::{self, Isa, MAX_ROWS, Row4, Row8};
use super::quant::{ActRow, BLOCK, BlockSum, Packed4, Packed8, QuantizedRows};

/// The quantized values of a [`PackedMatrix`].
#[derive(Debug, Clone)]
pub enum PackedWeights {
    /// From Q4_0 or Q4_1, with the activation block sum that GGML pairs with it.
    Four(Packed4, BlockSum),
    /// From Q8_0.
    Eight(Packed8),
}

/// A `[rows, cols]` weight matrix (rows = output features) in our kernels' layout.
#[derive(Debug, Clone)]
pub struct PackedMatrix {
    rows: usize,
    cols: usize,
    weights: PackedWeights,
    isa: Isa,
}

/// Weight rows per parallel task at least: below this, scheduling costs more than the work.
const MIN_ROWS_PER_TASK: usize = 16;

impl PackedMatrix {
    /// Repacks a GGML tensor of Q4_0, Q4_1 or Q8_0 blocks; `None` for other types (which stay on candle).
    pub fn from_qtensor(t: &QTensor) -> Result<Option<Self>> {
        let (rows, cols) = t.shape().dims2()?;
        if !cols.is_multiple_of(BLOCK) {
            return Ok(None);
        }
        let raw = t.data()?;
        let weights = match t.dtype() {
            GgmlDType::Q4_0 => PackedWeights::Four(Packed4::from_q4_0(&raw), BlockSum::Exact),
            GgmlDType::Q4_1 => PackedWeights::Four(Packed4::from_q4_1(&raw), BlockSum::Half),
            GgmlDType::Q8_0 => PackedWeights::Eight(Packed8::from_q8_0(&raw)),
            _ => return Ok(None),
        };
        Ok(Some(Self::new(rows, cols, weights, Isa::detect())))
    }

    /// A matrix from already packed weights, run with `isa` (tests pick the scalar reference).
    pub fn new(rows: usize, cols: usize, weights: PackedWeights, isa: Isa) -> Self {
        Self {
            rows,
            cols,
            weights,
            isa,
        }
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// `dst[t, r] = Σ_c x[t, c] · W[r, c]` for `x` of `tokens × cols`, `dst` of `tokens × rows`.
    pub fn matmul(&self, x: &[f32], dst: &mut [f32]) {
        let tokens = x.len() / self.cols;
        assert_eq!(x.len(), tokens * self.cols);
        assert_eq!(dst.len(), tokens * self.rows);
        let sum = match self.weights {
            PackedWeights::Four(_, sum) => sum,
            PackedWeights::Eight(_) => BlockSum::Exact,
        };
        let q = QuantizedRows::quantize(x, self.cols, sum);
        let acts: Vec<ActRow<'_>> = (0..tokens).map(|t| q.row(t)).collect();
        let per_task = self
            .rows
            .div_ceil(rayon::current_num_threads() * 4)
            .max(MIN_ROWS_PER_TASK);
        if tokens == 1 {
            dst.par_chunks_mut(per_task)
                .enumerate()
                .for_each(|(c, out)| self.rows_into(c * per_task, &acts, out));
            return;
        }
        // Feature-major while computing (each task owns whole weight rows), token-major at the end.
        let mut by_row = vec![0f32; dst.len()];
        by_row
            .par_chunks_mut(per_task * tokens)
            .enumerate()
            .for_each(|(c, out)| self.rows_into(c * per_task, &acts, out));
        for (r, col) in by_row.chunks_exact(tokens).enumerate() {
            for (t, &v) in col.iter().enumerate() {
                dst[t * self.rows + r] = v;
            }
        }
    }

    /// Weight rows from `first` on, each against every activation row; `out` is `[rows, tokens]`.
    fn rows_into(&self, first: usize, acts: &[ActRow<'_>], out: &mut [f32]) {
        let tokens = acts.len();
        for (i, out) in out.chunks_exact_mut(tokens).enumerate() {
            let r = first + i;
            for (group, out) in acts.chunks(MAX_ROWS).zip(out.chunks_mut(MAX_ROWS)) {
                self.row_dot(r, group, out);
            }
        }
    }

    fn row_dot(&self, r: usize, acts: &[ActRow<'_>], out: &mut [f32]) {
        let nb = self.cols / BLOCK;
        let blocks = r * nb..(r + 1) * nb;
        match &self.weights {
            PackedWeights::Four(w, _) => {
                let row = Row4 {
                    d: &w.d[blocks.clone()],
                    m: &w.m[blocks.clone()],
                    qs: &w.qs[blocks.start * 16..blocks.end * 16],
                };
                dot::dot4(self.isa, row, acts, out)
            }
            PackedWeights::Eight(w) => {
                let row = Row8 {
                    d: &w.d[blocks.clone()],
                    qs: &w.qs[blocks.start * BLOCK..blocks.end * BLOCK],
                };
                dot::dot8(self.isa, row, acts, out)
            }
        }
    }
}

impl CustomOp1 for PackedMatrix {
    fn name(&self) -> &'static str {
        "anshin-packed-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("packed matmul needs f32 activations");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("packed matmul needs contiguous activations");
        };
        let mut dims = layout.shape().dims().to_vec();
        if dims.last() != Some(&self.cols) {
            candle_core::bail!(
                "packed matmul: input {dims:?} does not end in {}",
                self.cols
            );
        }
        let x = &data[start..end];
        let mut dst = vec![0f32; x.len() / self.cols * self.rows];
        self.matmul(x, &mut dst);
        if let Some(last) = dims.last_mut() {
            *last = self.rows;
        }
        Ok((CpuStorage::F32(dst), Shape::from(dims)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QTensor;
    use candle_core::{Device, Module, Tensor};
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn random(rng: &mut StdRng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// Our op against candle's own quantized matmul on the same GGML tensor, for every supported type,
    /// odd row counts (tails of the parallel split) and 1–9 tokens (candle itself needs an even block count; odd ones are covered against the scalar reference) (tails of the 4-row groups).
    #[test]
    fn packed_matmul_matches_candle_qmatmul() {
        let mut rng = StdRng::seed_from_u64(7);
        let dev = Device::Cpu;
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0] {
            for (rows, cols) in [(1, 64), (37, 192), (193, 576)] {
                let w =
                    Tensor::from_vec(random(&mut rng, rows * cols), (rows, cols), &dev).unwrap();
                let qt = QTensor::quantize(&w, dtype).unwrap();
                let ours = PackedMatrix::from_qtensor(&qt)
                    .unwrap()
                    .expect("supported type");
                let theirs = candle_core::quantized::QMatMul::from_qtensor(qt).unwrap();
                for tokens in [1, 2, 5, 9] {
                    let x =
                        Tensor::from_vec(random(&mut rng, tokens * cols), (1, tokens, cols), &dev)
                            .unwrap();
                    let a = x.apply_op1_no_bwd(&ours).unwrap().flatten_all().unwrap();
                    // candle's one-token path is GGML's vec_dot; its batched path takes other routes.
                    let b: Vec<Tensor> = (0..tokens)
                        .map(|t| theirs.forward(&x.narrow(1, t, 1).unwrap()).unwrap())
                        .collect();
                    let b = Tensor::cat(&b, 1).unwrap().flatten_all().unwrap();
                    let (a, b) = (a.to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap());
                    let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    let q = QuantizedRows::quantize(&xs, cols, BlockSum::Half);
                    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                        // Same quantization as candle, and only the order of float additions differs,
                        // except for Q8_1's block sum: GGML stores f16(d·Σq), candle f16(Σq)·f16(d),
                        // rounded once more; allow that rounding times each block's offset.
                        let (t, r) = (i / rows, i % rows);
                        let extra: f32 = match &ours.weights {
                            PackedWeights::Four(w, BlockSum::Half) => (0..cols / BLOCK)
                                .map(|b| {
                                    let (wb, ab) = (r * cols / BLOCK + b, t * cols / BLOCK + b);
                                    w.m[wb].abs() * q.s[ab].abs() / 512.0
                                })
                                .sum(),
                            _ => 0.0,
                        };
                        let tol = 1e-4 * (1.0 + y.abs()) + extra;
                        assert!(
                            (x - y).abs() <= tol,
                            "{dtype:?} {rows}x{cols} t={tokens} [{i}]: {x} vs {y}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn detected_isa_matches_scalar_reference_on_a_whole_matrix() {
        let mut rng = StdRng::seed_from_u64(8);
        let (rows, cols, tokens) = (67, 96, 7);
        let w =
            Tensor::from_vec(random(&mut rng, rows * cols), (rows, cols), &Device::Cpu).unwrap();
        let qt = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
        let fast = PackedMatrix::from_qtensor(&qt)
            .unwrap()
            .expect("supported type");
        let slow = PackedMatrix::new(rows, cols, fast.weights.clone(), Isa::Scalar);
        let x = random(&mut rng, tokens * cols);
        let (mut a, mut b) = (vec![0f32; tokens * rows], vec![0f32; tokens * rows]);
        fast.matmul(&x, &mut a);
        slow.matmul(&x, &mut b);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    #[test]
    fn unsupported_types_stay_on_candle() {
        let w = Tensor::zeros((4, 256), candle_core::DType::F32, &Device::Cpu).unwrap();
        let qt = QTensor::quantize(&w, GgmlDType::Q4K).unwrap();
        assert!(PackedMatrix::from_qtensor(&qt).unwrap().is_none());
    }
}
