//! `y = x · Wᵀ` for a quantized weight matrix repacked at load ([`PackedMatrix`]), run as a candle
//! [`CustomOp1`] so the model composes it with other tensor ops.
//!
//! Each call quantizes the activation rows to int8 once, then splits the weight matrix's groups of 8 rows
//! ([`super::tile`]) into tasks for the kernel thread pool ([`super::pool`]); a task takes each group once
//! and multiplies it with the activation rows a tile at a time (up to 8 tokens), so a weight block is read
//! and unpacked once per tile of tokens, and the results land directly in the token-major output. With
//! AVX-512, a call with enough tokens takes two neighbouring groups per kernel call ([`super::tile_pair`]).

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape};

use super::pool;
use super::quant::{ActRow, BLOCK, BlockSum, Packed4, Packed8, QuantizedRows};
use super::tile::{Bits, LANES, MAX_TOKENS, Tiled};
use super::tile_pair::{self, Ahead};
use super::tile_simd::{self, Isa};

/// A `[rows, cols]` weight matrix (rows = output features) in our kernels' layout.
#[derive(Debug, Clone)]
pub struct PackedMatrix {
    cols: usize,
    weights: Tiled,
    /// The activation block sum that GGML pairs with the weight type.
    sum: BlockSum,
    isa: Isa,
}

/// Weight-row groups per parallel task at least: below this, scheduling costs more than the work.
const MIN_GROUPS_PER_TASK: usize = 4;

/// Activation rows from which a matrix runs two row groups at a time ([`tile_pair`]). Below that the
/// kernel is bound by reading the weights from memory, which it does faster one group at a time: with
/// pairs, one-stream decoding of the whole model was ≈ 15 % slower (`forward_bench`), and the 8-bit
/// output matrix (30 MB, streamed once per tile of 8 tokens) fell from 100–104 to 74–85 GMAC/s at 8
/// tokens (`matmul_bench`). Above it the kernel is bound by its instructions, and pairs halve them: from
/// 2 tokens for 4-bit weights, and from 9 for 8-bit ones (the output matrix at 12 / 16 / 256 tokens:
/// 62–84 → 91–93, 89–92 → 97–105, 116 → 129–133 GMAC/s). Results are the same bits either way.
fn pair_min_tokens(bits: Bits) -> usize {
    match bits {
        Bits::Four => 2,
        Bits::Eight => 9,
    }
}

/// Output pointer shared by the tasks of one call; each task writes only its own columns.
#[derive(Clone, Copy)]
struct Dst(*mut f32);

// SAFETY: tasks write disjoint elements (their own feature columns) and the caller waits for all of them.
unsafe impl Sync for Dst {}

impl PackedMatrix {
    /// Repacks a GGML tensor of Q4_0, Q4_1 or Q8_0 blocks; `None` for other types (which stay on candle).
    pub fn from_qtensor(t: &QTensor) -> Result<Option<Self>> {
        let (rows, cols) = t.shape().dims2()?;
        if !cols.is_multiple_of(BLOCK) {
            return Ok(None);
        }
        let raw = t.data()?;
        let (weights, sum) = match t.dtype() {
            GgmlDType::Q4_0 => {
                let p = Packed4::from_q4_0(&raw);
                // The tiles store Q4_0's offset `m = -8·d` as f16: a block scale above 65504 / 8 would
                // overflow it, so such a tensor stays on candle (which never forms that product).
                if p.m.iter().any(|m| m.abs() > f32::from(half::f16::MAX)) {
                    return Ok(None);
                }
                (Tiled::from_packed4(&p, rows), BlockSum::Exact)
            }
            GgmlDType::Q4_1 => (
                Tiled::from_packed4(&Packed4::from_q4_1(&raw), rows),
                BlockSum::Half,
            ),
            GgmlDType::Q8_0 => (
                Tiled::from_packed8(&Packed8::from_q8_0(&raw), rows),
                BlockSum::Exact,
            ),
            _ => return Ok(None),
        };
        Ok(Some(Self::new(cols, weights, sum, Isa::detect())))
    }

    /// A matrix from already tiled weights, run with `isa` (tests pick the scalar reference).
    pub fn new(cols: usize, weights: Tiled, sum: BlockSum, isa: Isa) -> Self {
        Self {
            cols,
            weights,
            sum,
            isa,
        }
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.weights.rows
    }

    /// `dst[t, r] = Σ_c x[t, c] · W[r, c]` for `x` of `tokens × cols`, `dst` of `tokens × rows`.
    pub fn matmul(&self, x: &[f32], dst: &mut [f32]) {
        matmul_many(&[self], x, &mut [dst]);
    }

    /// Groups `groups` of weight rows against every activation row, written to their columns of `dst`:
    /// two neighbouring groups at a time on 512-bit vectors where the CPU has them ([`tile_pair`]).
    ///
    /// SAFETY: `dst` points to `acts.len() × rows` floats, and no one else writes these groups' columns.
    unsafe fn groups_into(&self, groups: std::ops::Range<usize>, acts: &[ActRow<'_>], dst: Dst) {
        let pairs = self.isa == Isa::Avx512Vnni
            && acts.len() >= pair_min_tokens(self.weights.bits)
            && tile_pair::supported();
        let mut lo = [[0f32; LANES]; MAX_TOKENS];
        let mut hi = [[0f32; LANES]; MAX_TOKENS];
        let per_tile = self.isa.tokens_per_tile();
        let mut g = groups.start;
        while g < groups.end {
            let two = pairs && g + 1 < groups.end;
            for (i, chunk) in acts.chunks(per_tile).enumerate() {
                if two {
                    // The next pair while this one runs its first tile of tokens (the later tiles
                    // find this pair in cache).
                    let ahead = if i == 0 {
                        Ahead::groups(&self.weights, g + 2..groups.end.min(g + 4))
                    } else {
                        Ahead::default()
                    };
                    tile_pair::tile_pair(&self.weights, g, chunk, &mut lo, &mut hi, ahead);
                } else {
                    tile_simd::tile(self.isa, &self.weights, g, chunk, &mut lo);
                }
                let tiles = [(g, &lo), (g + 1, &hi)];
                for (group, tile) in tiles.into_iter().take(if two { 2 } else { 1 }) {
                    // SAFETY: as this function's, for `group` in `groups`.
                    unsafe { self.store(group, i * per_tile, &tile[..chunk.len()], dst) };
                }
            }
            g += if two { 2 } else { 1 };
        }
    }

    /// Writes the tiles of `group` for tokens `first_token..` into `dst`.
    ///
    /// SAFETY: as [`Self::groups_into`]'s, and `first_token + tiles.len() <= tokens`.
    unsafe fn store(&self, group: usize, first_token: usize, tiles: &[[f32; LANES]], dst: Dst) {
        let rows = self.rows();
        let first = group * LANES;
        let width = LANES.min(rows - first);
        for (j, t) in tiles.iter().enumerate() {
            // SAFETY: the token is below `tokens` and `first + width <= rows`, inside `dst`.
            unsafe {
                let at = dst.0.add((first_token + j) * rows + first);
                // A whole tile as one fixed-size store: a `copy_nonoverlapping` of a run-time length is
                // a call to libc's `memmove`, which was 5 % of a 16-stream profile.
                if width == LANES {
                    at.cast::<[f32; LANES]>().write_unaligned(*t);
                } else {
                    std::ptr::copy_nonoverlapping(t.as_ptr(), at, width);
                }
            }
        }
    }
}

/// `dsts[i] = x · W_iᵀ` for several matrices over the same input (a layer's q, k and v; gate and up):
/// the activations are quantized once per block-sum kind, and the row groups of all the matrices are
/// shared out in one pool call, so the threads meet once instead of once per matrix.
pub fn matmul_many(mats: &[&PackedMatrix], x: &[f32], dsts: &mut [&mut [f32]]) {
    assert_eq!(mats.len(), dsts.len());
    let Some(cols) = mats.first().map(|m| m.cols) else {
        return;
    };
    let tokens = x.len() / cols;
    assert_eq!(x.len(), tokens * cols);
    for (m, d) in mats.iter().zip(dsts.iter()) {
        assert!(m.cols == cols && d.len() == tokens * m.rows());
    }
    // One quantization per distinct block sum; `which[i]` is matrix i's.
    let mut quantized: Vec<(BlockSum, QuantizedRows)> = Vec::new();
    let mut which = Vec::with_capacity(mats.len());
    for m in mats {
        match quantized.iter().position(|(sum, _)| *sum == m.sum) {
            Some(i) => which.push(i),
            None => {
                which.push(quantized.len());
                quantized.push((m.sum, QuantizedRows::quantize(x, cols, m.sum)));
            }
        }
    }
    let acts: Vec<Vec<ActRow<'_>>> = which
        .iter()
        .map(|&i| (0..tokens).map(|t| quantized[i].1.row(t)).collect())
        .collect();
    let total: usize = mats.iter().map(|m| m.weights.groups()).sum();
    // Even, so that the 512-bit kernel's pairs of groups never straddle two tasks.
    let per_task = total
        .div_ceil(pool::threads() * 4)
        .max(MIN_GROUPS_PER_TASK)
        .next_multiple_of(2);
    let tasks: Vec<(usize, std::ops::Range<usize>)> = mats
        .iter()
        .enumerate()
        .flat_map(|(i, m)| {
            let groups = m.weights.groups();
            (0..groups)
                .step_by(per_task)
                .map(move |g| (i, g..(g + per_task).min(groups)))
        })
        .collect();
    let outs: Vec<Dst> = dsts.iter_mut().map(|d| Dst(d.as_mut_ptr())).collect();
    pool::for_each(tasks.len(), &|task| {
        let (i, groups) = &tasks[task];
        // SAFETY: `dsts[i]` has `tokens × rows` elements (asserted above); this task alone writes the
        // columns of these groups of matrix `i`.
        unsafe { mats[*i].groups_into(groups.clone(), &acts[*i], outs[*i]) };
    });
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
        let mut dst = vec![0f32; x.len() / self.cols * self.rows()];
        self.matmul(x, &mut dst);
        if let Some(last) = dims.last_mut() {
            *last = self.rows();
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
    /// odd row counts (padded last groups, tails of the parallel split) and 1–9 tokens (tails of the token tiles;
    /// candle itself needs an even block count, odd ones are covered against the scalar reference).
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
                        let extra: f32 = match ours.sum {
                            BlockSum::Half => (0..cols / BLOCK)
                                .map(|b| {
                                    let ab = t * cols / BLOCK + b;
                                    ours.weights.offset(r, b).abs() * q.s[ab].abs() / 512.0
                                })
                                .sum(),
                            BlockSum::Exact => 0.0,
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

    /// Every token count up to two tiles and a tail, odd row counts (a padded last group, uneven
    /// tasks), for each weight type.
    #[test]
    fn detected_isa_matches_scalar_reference_on_a_whole_matrix() {
        let mut rng = StdRng::seed_from_u64(8);
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0] {
            for (rows, cols) in [(67, 96), (203, 64)] {
                let w = Tensor::from_vec(random(&mut rng, rows * cols), (rows, cols), &Device::Cpu)
                    .unwrap();
                let qt = QTensor::quantize(&w, dtype).unwrap();
                let fast = PackedMatrix::from_qtensor(&qt)
                    .unwrap()
                    .expect("supported type");
                let slow = PackedMatrix::new(cols, fast.weights.clone(), fast.sum, Isa::Scalar);
                for tokens in 1..=17 {
                    let x = random(&mut rng, tokens * cols);
                    let (mut a, mut b) = (vec![0f32; tokens * rows], vec![0f32; tokens * rows]);
                    fast.matmul(&x, &mut a);
                    slow.matmul(&x, &mut b);
                    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                        let ok = (x - y).abs() <= 1e-4 * (1.0 + y.abs());
                        assert!(ok, "{dtype:?} {rows}x{cols} t={tokens} [{i}]: {x} vs {y}");
                    }
                }
            }
        }
    }

    /// Several matrices in one call — of both block-sum kinds, with odd row counts — give exactly what
    /// each gives alone (the same quantized activations and kernels, only the tasks are shared).
    #[test]
    fn matmul_many_equals_one_matmul_per_matrix() {
        let mut rng = StdRng::seed_from_u64(9);
        let cols = 96;
        let mats: Vec<PackedMatrix> = [
            (GgmlDType::Q4_1, 67),
            (GgmlDType::Q8_0, 24),
            (GgmlDType::Q4_1, 9),
        ]
        .into_iter()
        .map(|(dtype, rows)| {
            let w = Tensor::from_vec(random(&mut rng, rows * cols), (rows, cols), &Device::Cpu)
                .unwrap();
            let qt = QTensor::quantize(&w, dtype).unwrap();
            PackedMatrix::from_qtensor(&qt)
                .unwrap()
                .expect("supported type")
        })
        .collect();
        let refs: Vec<&PackedMatrix> = mats.iter().collect();
        for tokens in [1, 7, 16] {
            let x = random(&mut rng, tokens * cols);
            let mut together: Vec<Vec<f32>> =
                mats.iter().map(|m| vec![0f32; tokens * m.rows()]).collect();
            let mut dsts: Vec<&mut [f32]> = together.iter_mut().map(|d| d.as_mut_slice()).collect();
            matmul_many(&refs, &x, &mut dsts);
            for (m, got) in mats.iter().zip(&together) {
                let mut alone = vec![0f32; tokens * m.rows()];
                m.matmul(&x, &mut alone);
                assert_eq!(got, &alone, "{} rows, {tokens} tokens", m.rows());
            }
        }
    }

    /// Values near 10^5 give Q4_0 block scales near 12 500: `-8·d` is past f16's 65 504.
    #[test]
    fn q4_0_with_scales_past_f16_range_stays_on_candle() {
        let big: Vec<f32> = (0..64)
            .map(|i| if i % 2 == 0 { 1.0e5 } else { -1.0e5 })
            .collect();
        let qt = QTensor::quantize(
            &Tensor::from_vec(big, (1, 64), &Device::Cpu).unwrap(),
            GgmlDType::Q4_0,
        )
        .unwrap();
        assert!(PackedMatrix::from_qtensor(&qt).unwrap().is_none());
        let small = Tensor::from_vec(vec![0.5f32; 64], (1, 64), &Device::Cpu).unwrap();
        let qt = QTensor::quantize(&small, GgmlDType::Q4_0).unwrap();
        assert!(PackedMatrix::from_qtensor(&qt).unwrap().is_some());
    }

    #[test]
    fn unsupported_types_stay_on_candle() {
        let w = Tensor::zeros((4, 256), candle_core::DType::F32, &Device::Cpu).unwrap();
        let qt = QTensor::quantize(&w, GgmlDType::Q4K).unwrap();
        assert!(PackedMatrix::from_qtensor(&qt).unwrap().is_none());
    }
}
