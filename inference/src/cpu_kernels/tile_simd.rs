//! The x86-64 versions of [`super::tile::tile_scalar`], chosen at run time by [`Isa::detect`]: AVX2
//! (`maddubs` + `madd`) and AVX-512 VNNI on 256-bit vectors (`vpdpbusd`, one instruction per 4 products
//! of each of 8 rows). One generic body per instruction set; the integer dot of a block is the only part
//! that differs.

use super::quant::{ActRow, BLOCK};
use super::tile::{Bits, LANES, MAX_TOKENS, Tiled, tile_scalar};

/// The instruction set the kernels use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Portable Rust.
    Scalar,
    /// x86-64 AVX2, FMA and F16C.
    Avx2,
    /// AVX2 with AVX-512 VNNI on 256-bit vectors (`vpdpbusd`: one instruction per 32 int8 products).
    Avx512Vnni,
}

impl Isa {
    /// The best instruction set this CPU supports.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
        {
            if is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl") {
                return Self::Avx512Vnni;
            }
            return Self::Avx2;
        }
        Self::Scalar
    }

    /// Activation rows per tile call: what fits in the registers next to a block's 8 weight vectors
    /// (16 vector registers with AVX2, 32 with AVX-512 VL).
    pub fn tokens_per_tile(self) -> usize {
        match self {
            Self::Avx2 => 4,
            Self::Scalar | Self::Avx512Vnni => MAX_TOKENS,
        }
    }
}

/// `out[t][lane] = Σ_c W[8g + lane, c] · acts[t][c]` for group `g` of `w` and `acts.len() ≤ MAX_TOKENS`.
pub fn tile(isa: Isa, w: &Tiled, g: usize, acts: &[ActRow<'_>], out: &mut [[f32; LANES]]) {
    assert!(g < w.groups() && acts.len() <= MAX_TOKENS && out.len() >= acts.len());
    for a in acts {
        let nb = w.blocks;
        assert!(a.d.len() >= nb && a.s.len() >= nb && a.qs.len() >= nb * BLOCK);
    }
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! by_tokens {
            ($f:ident, $four:literal) => {
                // SAFETY: the features of `isa` were detected (`Isa::detect`); `g` and every activation
                // row's length were checked above, and `out` holds `acts.len()` tiles.
                unsafe {
                    match acts.len() {
                        0 => {}
                        1 => x86::$f::<1, $four>(w, g, acts, out),
                        2 => x86::$f::<2, $four>(w, g, acts, out),
                        3 => x86::$f::<3, $four>(w, g, acts, out),
                        4 => x86::$f::<4, $four>(w, g, acts, out),
                        5 => x86::$f::<5, $four>(w, g, acts, out),
                        6 => x86::$f::<6, $four>(w, g, acts, out),
                        7 => x86::$f::<7, $four>(w, g, acts, out),
                        _ => x86::$f::<8, $four>(w, g, acts, out),
                    }
                }
            };
        }
        match (isa, w.bits) {
            (Isa::Avx512Vnni, Bits::Four) => return by_tokens!(tile_vnni, true),
            (Isa::Avx512Vnni, Bits::Eight) => return by_tokens!(tile_vnni, false),
            (Isa::Avx2, Bits::Four) => return by_tokens!(tile_avx2, true),
            (Isa::Avx2, Bits::Eight) => return by_tokens!(tile_avx2, false),
            _ => {}
        }
    }
    tile_scalar(w, g, acts, out)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{ActRow, BLOCK, LANES, Tiled};

    /// 4 products per lane, added to `acc`: `u8` weights × `i8` activations.
    #[target_feature(enable = "avx2,fma,avx512vnni,avx512vl")]
    fn dot_vnni(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(acc, w, a)
    }

    /// As `dot_vnni` for 4-bit weights: `maddubs` pairs stay within i16 (2 · 15 · 127).
    #[target_feature(enable = "avx2,fma")]
    fn dot_avx2_4(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
        let p = _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), _mm256_set1_epi16(1));
        _mm256_add_epi32(acc, p)
    }

    /// As `dot_vnni` for offset 8-bit weights (`u < 256`): split into the low 7 bits and the top bit so
    /// that neither `maddubs` saturates.
    #[target_feature(enable = "avx2,fma")]
    fn dot_avx2_8(acc: __m256i, w: __m256i, a: __m256i) -> __m256i {
        let ones = _mm256_set1_epi16(1);
        let lo = _mm256_and_si256(w, _mm256_set1_epi8(0x7F));
        let hi = _mm256_and_si256(w, _mm256_set1_epi8(-128));
        let lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a), ones);
        let hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, a), ones);
        _mm256_add_epi32(acc, _mm256_add_epi32(lo, hi))
    }

    macro_rules! tile_kernel {
        ($name:ident, $features:literal, $dot4:ident, $dot8:ident) => {
            /// One group × `T` activation rows; `FOUR` picks 4-bit (else 8-bit) weights.
            ///
            /// SAFETY: the CPU has `$features`; `g < w.groups()`, `acts.len() == T`, `out.len() >= T`,
            /// and every activation row has at least `w.blocks` blocks.
            #[target_feature(enable = $features)]
            pub(super) unsafe fn $name<const T: usize, const FOUR: bool>(
                w: &Tiled,
                g: usize,
                acts: &[ActRow<'_>],
                out: &mut [[f32; LANES]],
            ) {
                let (d, m, qs) = w.group(g);
                let mask = _mm256_set1_epi8(0x0F);
                let mut f = [_mm256_setzero_ps(); T];
                for b in 0..w.blocks {
                    // SAFETY: `group` returned `blocks · LANES` scales, and as many offsets for 4-bit.
                    let (wd, wm) = unsafe {
                        let wd = _mm256_cvtph_ps(_mm_loadu_si128(d.as_ptr().add(b * LANES).cast()));
                        let wm = if FOUR {
                            _mm256_cvtph_ps(_mm_loadu_si128(m.as_ptr().add(b * LANES).cast()))
                        } else {
                            _mm256_mul_ps(wd, _mm256_set1_ps(-128.0))
                        };
                        (wd, wm)
                    };
                    let mut wv = [_mm256_setzero_si256(); 8];
                    if FOUR {
                        // SAFETY: 128 bytes per block of a 4-bit group.
                        let p = unsafe { qs.as_ptr().add(b * 128) };
                        for k in 0..4 {
                            // SAFETY: `k · 32 + 32 <= 128`.
                            let raw = unsafe { _mm256_loadu_si256(p.add(k * 32).cast()) };
                            wv[k] = _mm256_and_si256(raw, mask);
                            wv[k + 4] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask);
                        }
                    } else {
                        // SAFETY: 256 bytes per block of an 8-bit group.
                        let p = unsafe { qs.as_ptr().add(b * 256) };
                        for (k, v) in wv.iter_mut().enumerate() {
                            // SAFETY: `k · 32 + 32 <= 256`.
                            *v = unsafe { _mm256_loadu_si256(p.add(k * 32).cast()) };
                        }
                    }
                    for t in 0..T {
                        // SAFETY: `acts.len() == T`; each row has `blocks` blocks of 32 values.
                        let (a, ad, asum) = unsafe {
                            let a = acts.get_unchecked(t);
                            (
                                a.qs.as_ptr().add(b * BLOCK),
                                *a.d.get_unchecked(b),
                                *a.s.get_unchecked(b),
                            )
                        };
                        // Two chains of 4 when few tokens give the core little else to overlap.
                        let mut acc = [_mm256_setzero_si256(); 2];
                        for (k, &wk) in wv.iter().enumerate() {
                            // Vector `k` holds values `4k..4k + 4` of each row.
                            // SAFETY: `4k + 4 <= 32`, within the block.
                            let x = unsafe { a.add(4 * k).cast::<i32>().read_unaligned() };
                            let c = if T <= 2 { k % 2 } else { 0 };
                            acc[c] = if FOUR {
                                $dot4(acc[c], wk, _mm256_set1_epi32(x))
                            } else {
                                $dot8(acc[c], wk, _mm256_set1_epi32(x))
                            };
                        }
                        let acc = if T <= 2 {
                            _mm256_add_epi32(acc[0], acc[1])
                        } else {
                            acc[0]
                        };
                        let scale = _mm256_mul_ps(wd, _mm256_set1_ps(ad));
                        f[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), scale, f[t]);
                        f[t] = _mm256_fmadd_ps(wm, _mm256_set1_ps(asum), f[t]);
                    }
                }
                for t in 0..T {
                    // SAFETY: `out.len() >= T`; a tile is `LANES` floats.
                    unsafe { _mm256_storeu_ps(out.get_unchecked_mut(t).as_mut_ptr(), f[t]) };
                }
            }
        };
    }

    tile_kernel!(
        tile_vnni,
        "avx2,fma,f16c,avx512vnni,avx512vl",
        dot_vnni,
        dot_vnni
    );
    tile_kernel!(tile_avx2, "avx2,fma,f16c", dot_avx2_4, dot_avx2_8);
}

#[cfg(test)]
mod tests {
    use super::super::quant::{BlockSum, QuantizedRows};
    use super::super::tile::{random_acts, random_tiled};
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// The dot of the first row against the dequantized weights, within the activation rounding.
    #[test]
    fn scalar_tile_matches_dequantized_f32() {
        let mut rng = StdRng::seed_from_u64(1);
        for bits in [Bits::Four, Bits::Eight] {
            let w = random_tiled(&mut rng, bits, 3, 5);
            let cols = 5 * BLOCK;
            let x: Vec<f32> = (0..cols).map(|_| rng.random_range(-2.0..2.0)).collect();
            let q = QuantizedRows::quantize(&x, cols, BlockSum::Exact);
            let mut out = [[0f32; LANES]];
            tile_scalar(&w, 0, &[q.row(0)], &mut out);
            for (r, &got) in out[0].iter().take(3).enumerate() {
                let exact: f32 = (0..cols).map(|c| w.value(r, c) * x[c]).sum();
                let bound: f32 = (0..cols)
                    .map(|c| w.value(r, c).abs() * q.d[c / BLOCK] * 0.5)
                    .sum();
                assert!((got - exact).abs() <= bound + 1e-4, "{bits:?} row {r}");
            }
        }
    }

    #[test]
    fn detected_isa_matches_scalar_for_every_token_count() {
        let best = Isa::detect();
        let isas = [Isa::Avx2, Isa::Avx512Vnni]
            .into_iter()
            .filter(|&i| best == Isa::Avx512Vnni || i == best);
        for isa in isas {
            every_token_count_matches_scalar(isa);
        }
    }

    fn every_token_count_matches_scalar(isa: Isa) {
        let mut rng = StdRng::seed_from_u64(3);
        for bits in [Bits::Four, Bits::Eight] {
            for blocks in [1, 2, 7, 18] {
                let w = random_tiled(&mut rng, bits, 13, blocks);
                for tokens in 1..=MAX_TOKENS {
                    let q = random_acts(&mut rng, bits, blocks, tokens);
                    let a: Vec<_> = (0..tokens).map(|t| q.row(t)).collect();
                    for g in 0..w.groups() {
                        let mut fast = vec![[0f32; LANES]; tokens];
                        let mut slow = fast.clone();
                        tile(isa, &w, g, &a, &mut fast);
                        tile_scalar(&w, g, &a, &mut slow);
                        for (f, s) in fast.iter().flatten().zip(slow.iter().flatten()) {
                            let ok = (f - s).abs() <= 1e-4 * (1.0 + s.abs());
                            assert!(ok, "{isa:?} {bits:?} {blocks}x{tokens} g{g}: {f} vs {s}");
                        }
                    }
                }
            }
        }
    }
}
