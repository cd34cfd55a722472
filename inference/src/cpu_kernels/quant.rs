//! Block-quantized data in the layouts our CPU kernels read.
//!
//! Weights come from GGML blocks of 32 values and are repacked once at load into structure-of-arrays rows:
//! f32 scales apart from the quantized values, so a kernel streams each row without decoding f16 or
//! striding over block headers. Q4_0 becomes the Q4_1 form (`x = d·q + m` with `m = -8·d`), so one 4-bit
//! kernel serves both. Activations are quantized to signed int8 per 32-value block ([`QuantizedRows`]),
//! once per projection input, and carry each block's sum for the 4-bit `m` term.

use half::f16;

/// Values per quantization block (GGML's QK4_0 = QK4_1 = QK8_0 = 32).
pub const BLOCK: usize = 32;

/// 4-bit weights: value `j` of block `b` is `d[b] * q + m[b]`, `q` in `0..16`. Within a block, byte `i`
/// holds value `i` in its low nibble and value `i + 16` in its high nibble (GGML's order).
#[derive(Debug, Clone)]
pub struct Packed4 {
    /// Scale per block, row-major `[rows, blocks]`.
    pub d: Vec<f32>,
    /// Offset per block, row-major `[rows, blocks]`.
    pub m: Vec<f32>,
    /// 16 bytes per block, row-major.
    pub qs: Vec<u8>,
}

/// 8-bit weights: value `j` of block `b` is `d[b] * qs[32b + j]`.
#[derive(Debug, Clone)]
pub struct Packed8 {
    /// Scale per block, row-major `[rows, blocks]`.
    pub d: Vec<f32>,
    /// 32 signed values per block, row-major.
    pub qs: Vec<i8>,
}

fn half(bytes: &[u8]) -> f32 {
    f16::from_le_bytes([bytes[0], bytes[1]]).to_f32()
}

impl Packed4 {
    /// Repacks GGML Q4_0 blocks (`d: f16, qs: [u8; 16]`, 18 bytes).
    pub fn from_q4_0(raw: &[u8]) -> Self {
        let mut p = Self::with_blocks(raw.len() / 18);
        for b in raw.chunks_exact(18) {
            let d = half(&b[0..2]);
            p.d.push(d);
            p.m.push(-8.0 * d);
            p.qs.extend_from_slice(&b[2..18]);
        }
        p
    }

    /// Repacks GGML Q4_1 blocks (`d: f16, m: f16, qs: [u8; 16]`, 20 bytes).
    pub fn from_q4_1(raw: &[u8]) -> Self {
        let mut p = Self::with_blocks(raw.len() / 20);
        for b in raw.chunks_exact(20) {
            p.d.push(half(&b[0..2]));
            p.m.push(half(&b[2..4]));
            p.qs.extend_from_slice(&b[4..20]);
        }
        p
    }

    fn with_blocks(n: usize) -> Self {
        Self {
            d: Vec::with_capacity(n),
            m: Vec::with_capacity(n),
            qs: Vec::with_capacity(n * 16),
        }
    }

    /// The dequantized value at flat block `b`, position `j` (reference code and tests).
    pub fn value(&self, b: usize, j: usize) -> f32 {
        let byte = self.qs[b * 16 + j % 16];
        let q = if j < 16 { byte & 0x0F } else { byte >> 4 };
        self.d[b] * q as f32 + self.m[b]
    }
}

impl Packed8 {
    /// Repacks GGML Q8_0 blocks (`d: f16, qs: [i8; 32]`, 34 bytes).
    pub fn from_q8_0(raw: &[u8]) -> Self {
        let n = raw.len() / 34;
        let mut p = Self {
            d: Vec::with_capacity(n),
            qs: Vec::with_capacity(n * BLOCK),
        };
        for b in raw.chunks_exact(34) {
            p.d.push(half(&b[0..2]));
            p.qs.extend(b[2..34].iter().map(|&q| q as i8));
        }
        p
    }

    /// The dequantized value at flat block `b`, position `j`.
    pub fn value(&self, b: usize, j: usize) -> f32 {
        self.d[b] * self.qs[b * BLOCK + j] as f32
    }
}

/// How a quantized activation block's sum `s` is rounded, to match the GGML block type that the weight
/// type pairs with: Q4_1 pairs with Q8_1, which stores `d·Σq` as f16; Q4_0 pairs with Q8_0, whose kernel
/// computes `Σ(q_w − 8)·q_a` in integers, i.e. an exact `d·Σq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockSum {
    /// `d · Σq` with `d` the f16 scale, unrounded (Q8_0).
    Exact,
    /// `d · Σq` rounded to f16 (Q8_1).
    Half,
}

/// Activation rows quantized to int8 per block: `x ≈ d · q`, with `s = d · Σq` per block.
#[derive(Debug, Default)]
pub struct QuantizedRows {
    /// Blocks per row.
    pub blocks: usize,
    /// Scale per block, `[rows, blocks]`.
    pub d: Vec<f32>,
    /// `d · Σq` per block, `[rows, blocks]`.
    pub s: Vec<f32>,
    /// 32 values per block.
    pub qs: Vec<i8>,
}

impl QuantizedRows {
    /// Quantizes `x` (`rows × cols`, row-major; `cols` a multiple of [`BLOCK`]) with round-to-nearest and
    /// each block's largest magnitude mapped to 127, exactly as GGML's Q8_0/Q8_1 do. A prompt's rows are
    /// shared out over the kernel pool (each block is quantized alone, so the values do not change).
    pub fn quantize(x: &[f32], cols: usize, sum: BlockSum) -> Self {
        debug_assert_eq!(cols % BLOCK, 0);
        let n = x.len() / BLOCK;
        let mut out = Self {
            blocks: cols / BLOCK,
            d: vec![0.0; n],
            s: vec![0.0; n],
            qs: vec![0; x.len()],
        };
        let scales = Scales(out.d.as_mut_ptr(), out.s.as_mut_ptr());
        #[cfg(target_arch = "x86_64")]
        let simd = is_x86_feature_detected!("avx2");
        super::pool::for_rows_mut(&mut out.qs, cols, &|first, qs| {
            let start = first * cols;
            let blocks = x[start..start + qs.len()].chunks_exact(BLOCK);
            for (i, (block, qs)) in blocks.zip(qs.chunks_exact_mut(BLOCK)).enumerate() {
                #[cfg(target_arch = "x86_64")]
                let (d, q_sum) = if simd {
                    // SAFETY: AVX2 was detected; `block` and `qs` are `BLOCK` long.
                    unsafe { x86::quantize_block(block, qs) }
                } else {
                    quantize_block(block, qs)
                };
                #[cfg(not(target_arch = "x86_64"))]
                let (d, q_sum) = quantize_block(block, qs);
                // Stored like GGML's Q8_0/Q8_1 blocks (f16 scale and sum), so that results match
                // llama.cpp's and candle's to the last rounding rather than merely closely.
                let (d_half, total) = (f16::from_f32(d).to_f32(), q_sum as f32);
                let s = match sum {
                    BlockSum::Exact => d_half * total,
                    BlockSum::Half => f16::from_f32(d * total).to_f32(),
                };
                // SAFETY: block `start / BLOCK + i` is below `n` and belongs to this piece of rows alone.
                unsafe { scales.set(start / BLOCK + i, d_half, s) };
            }
        });
        out
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.d.len() / self.blocks.max(1)
    }

    /// One row's blocks: `(d, s, qs)`.
    pub fn row(&self, r: usize) -> ActRow<'_> {
        let nb = self.blocks;
        ActRow {
            d: &self.d[r * nb..(r + 1) * nb],
            s: &self.s[r * nb..(r + 1) * nb],
            qs: &self.qs[r * nb * BLOCK..(r + 1) * nb * BLOCK],
        }
    }
}

/// Quantizes one block of [`BLOCK`] values into `qs`; returns the scale `d` (before f16 rounding) and `Σq`.
fn quantize_block(block: &[f32], qs: &mut [i8]) -> (f32, i32) {
    let amax = block.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
    let mut q_sum = 0i32;
    for (q, &v) in qs.iter_mut().zip(block) {
        // Half away from zero, as GGML's reference quantizer and candle round. (GGML's AVX2 quantizer
        // rounds half to even; ties are rare and the golden tests pass either way for SmolLM2, but
        // Gemma 3's greedy continuation sits on a near tie that flips with it.)
        *q = (v * inv).round() as i8;
        q_sum += *q as i32;
    }
    (d, q_sum)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// [`super::quantize_block`] with AVX2, to the same bits: the same maximum, scale and product, and
    /// half-away-from-zero rounding from an exact truncation and fraction.
    ///
    /// SAFETY: the CPU has AVX2; `block` and `qs` are at least 32 long.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn quantize_block(block: &[f32], qs: &mut [i8]) -> (f32, i32) {
        assert!(block.len() >= 32 && qs.len() >= 32);
        // SAFETY: 32 floats were checked above.
        let v: [__m256; 4] =
            std::array::from_fn(|i| unsafe { _mm256_loadu_ps(block.as_ptr().add(8 * i)) });
        let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFF_FFFF));
        let m = _mm256_max_ps(
            _mm256_max_ps(_mm256_and_ps(v[0], abs), _mm256_and_ps(v[1], abs)),
            _mm256_max_ps(_mm256_and_ps(v[2], abs), _mm256_and_ps(v[3], abs)),
        );
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
        let d = amax / 127.0;
        let inv = _mm256_set1_ps(if d > 0.0 { 1.0 / d } else { 0.0 });
        let q: [__m256i; 4] = std::array::from_fn(|i| {
            let x = _mm256_mul_ps(v[i], inv);
            let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(x);
            let far = _mm256_cmp_ps::<_CMP_GE_OQ>(
                _mm256_and_ps(_mm256_sub_ps(x, t), abs),
                _mm256_set1_ps(0.5),
            );
            let sign = _mm256_or_ps(_mm256_andnot_ps(abs, x), _mm256_set1_ps(1.0));
            _mm256_cvtps_epi32(_mm256_add_ps(t, _mm256_and_ps(far, sign)))
        });
        // Packing interleaves 4-value groups across lanes; the permute restores the order.
        let packed = _mm256_packs_epi16(
            _mm256_packs_epi32(q[0], q[1]),
            _mm256_packs_epi32(q[2], q[3]),
        );
        let packed = _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        // SAFETY: 32 bytes were checked above.
        unsafe { _mm256_storeu_si256(qs.as_mut_ptr().cast(), packed) };
        let s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        (d, _mm_cvtsi128_si32(s))
    }
}

/// The scale and sum arrays of a [`QuantizedRows`] being filled, shared by the pieces of rows that
/// [`QuantizedRows::quantize`] hands out (each writes its own blocks).
struct Scales(*mut f32, *mut f32);

impl Scales {
    /// Writes block `b`'s scale and sum.
    ///
    /// SAFETY: `b` is inside both arrays, and no other thread writes block `b`.
    unsafe fn set(&self, b: usize, d: f32, s: f32) {
        // SAFETY: as this function's contract.
        unsafe {
            *self.0.add(b) = d;
            *self.1.add(b) = s;
        }
    }
}

// SAFETY: the pieces write disjoint blocks, and the arrays outlive `quantize`'s parallel section.
unsafe impl Sync for Scales {}

/// One quantized activation row, borrowed from [`QuantizedRows`].
#[derive(Debug, Clone, Copy)]
pub struct ActRow<'a> {
    /// Scale per block.
    pub d: &'a [f32],
    /// `d · Σq` per block.
    pub s: &'a [f32],
    /// 32 values per block.
    pub qs: &'a [i8],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_0_repacks_to_offset_form() {
        let mut raw = f16::from_f32(0.5).to_le_bytes().to_vec();
        raw.extend((0..16u8).map(|i| i | (15 - i) << 4));
        let p = Packed4::from_q4_0(&raw);
        assert_eq!(p.value(0, 0), -4.0); // q = 0 → 0.5 · (0 − 8)
        assert_eq!(p.value(0, 16), 3.5); // high nibble of byte 0 is 15
        assert_eq!(p.value(0, 3), -2.5);
    }

    #[test]
    fn activation_quantization_keeps_values_within_half_a_step() {
        let x: Vec<f32> = (0..64)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.3)
            .collect();
        let q = QuantizedRows::quantize(&x, 64, BlockSum::Half);
        assert_eq!(q.rows(), 1);
        for (i, &v) in x.iter().enumerate() {
            let b = i / BLOCK;
            let back = q.d[b] * q.qs[i] as f32;
            assert!(
                (back - v).abs() <= q.d[b] * 0.5 + 1e-6,
                "{i}: {back} vs {v}"
            );
        }
        let sum: i32 = q.qs[..32].iter().map(|&v| v as i32).sum();
        assert!((q.s[0] - q.d[0] * sum as f32).abs() <= q.s[0].abs() / 1024.0 + 1e-6);
    }

    /// Same bits as the scalar quantizer, ties (`k + 0.5` steps) and values just short of them included.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_quantizer_matches_scalar_bit_for_bit() {
        if !is_x86_feature_detected!("avx2") {
            return;
        }
        for seed in 0..200u32 {
            let mut block: Vec<f32> = (0..32)
                .map(|i| ((i * 37 + seed * 11) % 255) as f32 - 127.0)
                .collect();
            block[0] = 127.0; // scale 1: every other value is on a step, `seed` moves some to ties
            for (i, v) in block.iter_mut().enumerate().skip(1) {
                match (i + seed as usize) % 4 {
                    0 => *v += 0.5,
                    1 => *v = f32::from_bits((*v + 0.5).to_bits() - 1),
                    2 => *v *= 0.013 * seed as f32,
                    _ => {}
                }
            }
            let (mut a, mut b) = ([0i8; 32], [0i8; 32]);
            let slow = quantize_block(&block, &mut a);
            // SAFETY: AVX2 was detected above.
            let fast = unsafe { x86::quantize_block(&block, &mut b) };
            assert_eq!((slow, a), (fast, b), "seed {seed}");
        }
    }

    /// A prompt's rows, quantized in pieces on the pool, give the bits of quantizing each row alone.
    #[test]
    fn a_prompt_quantized_in_parallel_equals_its_rows_one_by_one() {
        let cols = 576;
        let rows = super::super::pool::ROWS_PARALLEL_MIN / cols + 3;
        let x: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919 % 2001) as f32 - 1000.0) / 37.0)
            .collect();
        for sum in [BlockSum::Exact, BlockSum::Half] {
            let all = QuantizedRows::quantize(&x, cols, sum);
            for (r, row) in x.chunks_exact(cols).enumerate() {
                let one = QuantizedRows::quantize(row, cols, sum);
                let (a, b) = (all.row(r), one.row(0));
                assert_eq!((a.qs, a.d, a.s), (b.qs, b.d, b.s), "row {r}");
            }
        }
    }

    #[test]
    fn a_zero_block_quantizes_to_zeros() {
        let q = QuantizedRows::quantize(&[0.0; 32], 32, BlockSum::Exact);
        assert_eq!(q.d, vec![0.0]);
        assert!(q.qs.iter().all(|&v| v == 0));
    }
}
