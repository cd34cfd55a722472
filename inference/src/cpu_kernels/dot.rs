//! Dot products of one quantized weight row with up to [`MAX_ROWS`] quantized activation rows.
//!
//! Sharing the weight row across several activation rows (tokens of a batch) unpacks each weight block
//! once for all of them, which is what makes prefill and batched decode cheaper per token than single
//! decode. Each function has a portable scalar version, the reference the tests hold the SIMD versions to,
//! and an x86-64 AVX2 version (`maddubs`: unsigned 4-bit or |8-bit| weights × signed int8 activations,
//! summed to int32 per block, then scaled in f32), chosen at run time by [`Isa::detect`].

use super::quant::{ActRow, BLOCK};

/// Activation rows one call handles at most.
pub const MAX_ROWS: usize = 4;

/// One row of [`super::quant::Packed4`].
#[derive(Debug, Clone, Copy)]
pub struct Row4<'a> {
    /// Scale per block.
    pub d: &'a [f32],
    /// Offset per block.
    pub m: &'a [f32],
    /// 16 bytes per block.
    pub qs: &'a [u8],
}

/// One row of [`super::quant::Packed8`].
#[derive(Debug, Clone, Copy)]
pub struct Row8<'a> {
    /// Scale per block.
    pub d: &'a [f32],
    /// 32 values per block.
    pub qs: &'a [i8],
}

/// The instruction set the kernels use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Portable Rust.
    Scalar,
    /// x86-64 AVX2 and FMA.
    Avx2,
    /// AVX2 with AVX-512 VNNI on 256-bit vectors (`vpdpbusd`: one instruction per 32 int8 products).
    Avx512Vnni,
}

impl Isa {
    /// The best instruction set this CPU supports.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            if is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl") {
                return Self::Avx512Vnni;
            }
            return Self::Avx2;
        }
        Self::Scalar
    }
}

fn check(blocks: usize, w_qs: usize, w_bytes_per_block: usize, acts: &[ActRow<'_>], out: &[f32]) {
    assert!(acts.len() <= MAX_ROWS && out.len() == acts.len());
    assert_eq!(w_qs, blocks * w_bytes_per_block);
    for a in acts {
        assert!(a.d.len() >= blocks && a.s.len() >= blocks && a.qs.len() >= blocks * BLOCK);
    }
}

/// `out[r] = w · acts[r]` for a 4-bit weight row.
pub fn dot4(isa: Isa, w: Row4<'_>, acts: &[ActRow<'_>], out: &mut [f32]) {
    check(w.d.len(), w.qs.len(), 16, acts, out);
    assert_eq!(w.m.len(), w.d.len());
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2` is only chosen when the CPU has AVX2 and FMA; lengths were checked above.
        Isa::Avx2 => unsafe {
            match acts.len() {
                1 => avx2::dot4::<1>(w, acts, out),
                2 => avx2::dot4::<2>(w, acts, out),
                3 => avx2::dot4::<3>(w, acts, out),
                _ => avx2::dot4::<4>(w, acts, out),
            }
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx512Vnni` is only chosen when the CPU has it (and AVX2, FMA, AVX-512 VL).
        Isa::Avx512Vnni => unsafe {
            match acts.len() {
                1 => vnni::dot4::<1>(w, acts, out),
                2 => vnni::dot4::<2>(w, acts, out),
                3 => vnni::dot4::<3>(w, acts, out),
                _ => vnni::dot4::<4>(w, acts, out),
            }
        },
        _ => dot4_scalar(w, acts, out),
    }
}

/// `out[r] = w · acts[r]` for an 8-bit weight row.
pub fn dot8(isa: Isa, w: Row8<'_>, acts: &[ActRow<'_>], out: &mut [f32]) {
    check(w.d.len(), w.qs.len(), BLOCK, acts, out);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `dot4`.
        Isa::Avx2 | Isa::Avx512Vnni => unsafe {
            match acts.len() {
                1 => avx2::dot8::<1>(w, acts, out),
                2 => avx2::dot8::<2>(w, acts, out),
                3 => avx2::dot8::<3>(w, acts, out),
                _ => avx2::dot8::<4>(w, acts, out),
            }
        },
        _ => dot8_scalar(w, acts, out),
    }
}

fn dot4_scalar(w: Row4<'_>, acts: &[ActRow<'_>], out: &mut [f32]) {
    for (a, o) in acts.iter().zip(out.iter_mut()) {
        let mut sum = 0f32;
        for b in 0..w.d.len() {
            let qs = &w.qs[b * 16..b * 16 + 16];
            let aq = &a.qs[b * BLOCK..b * BLOCK + BLOCK];
            let mut sumi = 0i32;
            for i in 0..16 {
                sumi +=
                    (qs[i] & 0x0F) as i32 * aq[i] as i32 + (qs[i] >> 4) as i32 * aq[i + 16] as i32;
            }
            sum += w.d[b] * a.d[b] * sumi as f32 + w.m[b] * a.s[b];
        }
        *o = sum;
    }
}

fn dot8_scalar(w: Row8<'_>, acts: &[ActRow<'_>], out: &mut [f32]) {
    for (a, o) in acts.iter().zip(out.iter_mut()) {
        let mut sum = 0f32;
        for b in 0..w.d.len() {
            let wq = &w.qs[b * BLOCK..(b + 1) * BLOCK];
            let aq = &a.qs[b * BLOCK..(b + 1) * BLOCK];
            let sumi: i32 = wq.iter().zip(aq).map(|(&x, &y)| x as i32 * y as i32).sum();
            sum += w.d[b] * a.d[b] * sumi as f32;
        }
        *o = sum;
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{ActRow, BLOCK, Row4, Row8};

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// SAFETY: the caller checked that `w` has `16 · blocks` bytes and every activation row `blocks`
    /// blocks, and that `acts.len() == out.len() == R`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot4<const R: usize>(w: Row4<'_>, acts: &[ActRow<'_>], out: &mut [f32]) {
        let mask = _mm_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); R];
        let mut macc = [0f32; R];
        for b in 0..w.d.len() {
            // SAFETY: `b < blocks`, so the 16 bytes at `16 b` are in `w.qs`.
            let raw = unsafe { _mm_loadu_si128(w.qs.as_ptr().add(b * 16).cast()) };
            let lo = _mm_and_si128(raw, mask);
            let hi = _mm_and_si128(_mm_srli_epi16(raw, 4), mask);
            let wv = _mm256_set_m128i(hi, lo);
            let (wd, wm) = (w.d[b], w.m[b]);
            for r in 0..R {
                let a = &acts[r];
                // SAFETY: every activation row has at least `blocks` blocks of 32 bytes.
                let av = unsafe { _mm256_loadu_si256(a.qs.as_ptr().add(b * BLOCK).cast()) };
                let p = _mm256_madd_epi16(_mm256_maddubs_epi16(wv, av), ones);
                acc[r] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(wd * a.d[b]), acc[r]);
                macc[r] += wm * a.s[b];
            }
        }
        for r in 0..R {
            out[r] = hsum(acc[r]) + macc[r];
        }
    }

    /// SAFETY: as for [`dot4`], with `32 · blocks` weight values.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot8<const R: usize>(w: Row8<'_>, acts: &[ActRow<'_>], out: &mut [f32]) {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); R];
        for b in 0..w.d.len() {
            // SAFETY: `b < blocks`.
            let wv = unsafe { _mm256_loadu_si256(w.qs.as_ptr().add(b * BLOCK).cast()) };
            // maddubs wants one unsigned operand: |w| × (a with w's sign).
            let abs_w = _mm256_sign_epi8(wv, wv);
            let wd = w.d[b];
            for r in 0..R {
                let a = &acts[r];
                // SAFETY: every activation row has at least `blocks` blocks.
                let av = unsafe { _mm256_loadu_si256(a.qs.as_ptr().add(b * BLOCK).cast()) };
                let signed = _mm256_sign_epi8(av, wv);
                let p = _mm256_madd_epi16(_mm256_maddubs_epi16(abs_w, signed), ones);
                acc[r] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(wd * a.d[b]), acc[r]);
            }
        }
        for r in 0..R {
            out[r] = hsum(acc[r]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use std::arch::x86_64::*;

    use super::{ActRow, BLOCK, Row4};

    /// As `avx2::dot4`, with `vpdpbusd` in place of `maddubs` + `madd`.
    ///
    /// SAFETY: as for `avx2::dot4`; the CPU has AVX-512 VNNI and VL.
    #[target_feature(enable = "avx2,fma,avx512vnni,avx512vl")]
    pub(super) unsafe fn dot4<const R: usize>(w: Row4<'_>, acts: &[ActRow<'_>], out: &mut [f32]) {
        let mask = _mm_set1_epi8(0x0F);
        let mut acc = [_mm256_setzero_ps(); R];
        for b in 0..w.d.len() {
            // SAFETY: `b < blocks`, so the 16 bytes at `16 b` are in `w.qs`.
            let raw = unsafe { _mm_loadu_si128(w.qs.as_ptr().add(b * 16).cast()) };
            let lo = _mm_and_si128(raw, mask);
            let hi = _mm_and_si128(_mm_srli_epi16(raw, 4), mask);
            let wv = _mm256_set_m128i(hi, lo);
            let wd = w.d[b];
            for r in 0..R {
                let a = &acts[r];
                // SAFETY: every activation row has at least `blocks` blocks of 32 bytes.
                let av = unsafe { _mm256_loadu_si256(a.qs.as_ptr().add(b * BLOCK).cast()) };
                let p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), wv, av);
                acc[r] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(wd * a.d[b]), acc[r]);
            }
        }
        for r in 0..R {
            // The offset term Σ m·s apart: a plain loop the compiler vectorises.
            let a = &acts[r];
            let offsets: f32 = w.m.iter().zip(a.s).map(|(m, s)| m * s).sum();
            out[r] = super::avx2::hsum(acc[r]) + offsets;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::quant::{BlockSum, Packed4, Packed8, QuantizedRows};
    use super::*;
    use half::f16;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn random_q4_1(rng: &mut StdRng, blocks: usize) -> Packed4 {
        let mut raw = Vec::new();
        for _ in 0..blocks {
            raw.extend(f16::from_f32(rng.random_range(0.001..0.05)).to_le_bytes());
            raw.extend(f16::from_f32(rng.random_range(-0.4..0.0)).to_le_bytes());
            raw.extend((0..16).map(|_| rng.random::<u8>()));
        }
        Packed4::from_q4_1(&raw)
    }

    fn random_q8_0(rng: &mut StdRng, blocks: usize) -> Packed8 {
        let mut raw = Vec::new();
        for _ in 0..blocks {
            raw.extend(f16::from_f32(rng.random_range(0.001..0.05)).to_le_bytes());
            raw.extend((0..32).map(|_| rng.random_range(-127i8..=127) as u8));
        }
        Packed8::from_q8_0(&raw)
    }

    fn acts(rng: &mut StdRng, rows: usize, cols: usize) -> (Vec<f32>, QuantizedRows) {
        let x: Vec<f32> = (0..rows * cols)
            .map(|_| rng.random_range(-2.0..2.0))
            .collect();
        let q = QuantizedRows::quantize(&x, cols, BlockSum::Half);
        (x, q)
    }

    fn close(a: f32, b: f32, tol: f32) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    #[test]
    fn scalar_4bit_dot_matches_dequantized_f32() {
        let mut rng = StdRng::seed_from_u64(1);
        for blocks in [1, 3, 18] {
            let w = random_q4_1(&mut rng, blocks);
            let (x, q) = acts(&mut rng, 1, blocks * BLOCK);
            let mut out = [0f32];
            let row = Row4 {
                d: &w.d,
                m: &w.m,
                qs: &w.qs,
            };
            dot4(Isa::Scalar, row, &[q.row(0)], &mut out);
            let exact: f32 = (0..blocks * BLOCK)
                .map(|i| w.value(i / BLOCK, i % BLOCK) * x[i])
                .sum();
            // Activation rounding: at most half a step per value.
            let bound: f32 = (0..blocks * BLOCK)
                .map(|i| w.value(i / BLOCK, i % BLOCK).abs() * q.d[i / BLOCK] * 0.5)
                .sum();
            assert!(
                (out[0] - exact).abs() <= bound + 1e-4,
                "{} vs {exact}",
                out[0]
            );
        }
    }

    #[test]
    fn scalar_8bit_dot_matches_dequantized_f32() {
        let mut rng = StdRng::seed_from_u64(2);
        let w = random_q8_0(&mut rng, 5);
        let (x, q) = acts(&mut rng, 1, 5 * BLOCK);
        let mut out = [0f32];
        dot8(
            Isa::Scalar,
            Row8 { d: &w.d, qs: &w.qs },
            &[q.row(0)],
            &mut out,
        );
        let exact: f32 = (0..5 * BLOCK)
            .map(|i| w.value(i / BLOCK, i % BLOCK) * x[i])
            .sum();
        let bound: f32 = (0..5 * BLOCK)
            .map(|i| w.value(i / BLOCK, i % BLOCK).abs() * q.d[i / BLOCK] * 0.5)
            .sum();
        assert!((out[0] - exact).abs() <= bound + 1e-4);
    }

    #[test]
    fn detected_isa_matches_scalar_for_every_row_count() {
        let best = Isa::detect();
        let isas = [Isa::Avx2, Isa::Avx512Vnni]
            .into_iter()
            .filter(|&i| best == Isa::Avx512Vnni || i == best);
        for isa in isas {
            every_row_count_matches_scalar(isa);
        }
    }

    fn every_row_count_matches_scalar(isa: Isa) {
        let mut rng = StdRng::seed_from_u64(3);
        for blocks in [1, 2, 7, 18, 48] {
            let w4 = random_q4_1(&mut rng, blocks);
            let w8 = random_q8_0(&mut rng, blocks);
            for rows in 1..=MAX_ROWS {
                let (_, q) = acts(&mut rng, rows, blocks * BLOCK);
                let a: Vec<_> = (0..rows).map(|r| q.row(r)).collect();
                let (mut fast, mut slow) = (vec![0f32; rows], vec![0f32; rows]);
                let row4 = Row4 {
                    d: &w4.d,
                    m: &w4.m,
                    qs: &w4.qs,
                };
                dot4(isa, row4, &a, &mut fast);
                dot4(Isa::Scalar, row4, &a, &mut slow);
                for (f, s) in fast.iter().zip(&slow) {
                    assert!(close(*f, *s, 1e-4), "4-bit {blocks}x{rows}: {f} vs {s}");
                }
                let row8 = Row8 {
                    d: &w8.d,
                    qs: &w8.qs,
                };
                dot8(isa, row8, &a, &mut fast);
                dot8(Isa::Scalar, row8, &a, &mut slow);
                for (f, s) in fast.iter().zip(&slow) {
                    assert!(close(*f, *s, 1e-4), "8-bit {blocks}x{rows}: {f} vs {s}");
                }
            }
        }
    }
}
