//! Two neighbouring row groups at once on 512-bit vectors: [`super::tile_simd::tile`] for groups `g` and
//! `g + 1` of one matrix, with group `g` in the low half of each vector and `g + 1` in the high half.
//!
//! One `vpdpbusd` then does 64 products instead of 32, and each broadcast activation word and each
//! float epilogue instruction serves 16 weight rows instead of 8, so the kernel issues half the
//! instructions per product. The layout of [`Tiled`] is unchanged (the halves are loaded from the two
//! groups and joined in registers), and the results are bitwise those of two single-group calls: the
//! same integer dots, then the same float operations in the same order per lane.

use super::quant::{ActRow, BLOCK};
use super::tile::{Bits, LANES, MAX_TOKENS, Tiled};

/// Whether this CPU runs [`tile_pair`] (AVX-512 F, BW and VNNI, with F16C).
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *OK.get_or_init(|| {
            is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni")
                && is_x86_feature_detected!("f16c")
                && is_x86_feature_detected!("fma")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The weights of the groups a caller runs next, which [`tile_pair`] prefetches while it computes: a
/// decode step's few tokens leave the kernel too little work per byte for the hardware prefetcher to
/// hide the weights' trip from memory (a whole model's weights stream through every step).
#[derive(Clone, Copy, Default)]
pub struct Ahead<'a> {
    spans: [&'a [u8]; 3],
}

impl<'a> Ahead<'a> {
    /// Groups `groups` of `w` (values, scales and offsets), nothing if the range is empty. Panics if
    /// it ends past the last group.
    pub fn groups(w: &'a Tiled, groups: std::ops::Range<usize>) -> Self {
        if groups.is_empty() {
            return Self::default();
        }
        let (d, m, q) = w.span(groups);
        let bytes = |h: &'a [half::f16]| -> &'a [u8] {
            // SAFETY: an f16 is two initialised bytes, and u8 has no alignment to keep.
            unsafe { std::slice::from_raw_parts(h.as_ptr().cast(), std::mem::size_of_val(h)) }
        };
        Self {
            spans: [q, bytes(d), bytes(m)],
        }
    }
}

/// `lo[t]` and `hi[t]` = group `g` and `g + 1` of `w` times `acts[t]`, for `acts.len() ≤ MAX_TOKENS`,
/// prefetching `ahead` spread over the blocks. Panics unless [`supported`] and `g + 1 < w.groups()`.
pub fn tile_pair(
    w: &Tiled,
    g: usize,
    acts: &[ActRow<'_>],
    lo: &mut [[f32; LANES]],
    hi: &mut [[f32; LANES]],
    ahead: Ahead<'_>,
) {
    assert!(supported(), "tile_pair needs AVX-512 F, BW and VNNI");
    assert!(g + 1 < w.groups() && acts.len() <= MAX_TOKENS);
    assert!(lo.len() >= acts.len() && hi.len() >= acts.len());
    for a in acts {
        let nb = w.blocks;
        assert!(a.d.len() >= nb && a.s.len() >= nb && a.qs.len() >= nb * BLOCK);
    }
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! by_tokens {
            ($four:literal) => {
                // SAFETY: the features were detected (`supported`); `g + 1` and every activation row's
                // length were checked above, and `lo`/`hi` hold `acts.len()` tiles.
                unsafe {
                    match acts.len() {
                        0 => {}
                        1 => x86::pair::<1, $four>(w, g, acts, lo, hi, ahead),
                        2 => x86::pair::<2, $four>(w, g, acts, lo, hi, ahead),
                        3 => x86::pair::<3, $four>(w, g, acts, lo, hi, ahead),
                        4 => x86::pair::<4, $four>(w, g, acts, lo, hi, ahead),
                        5 => x86::pair::<5, $four>(w, g, acts, lo, hi, ahead),
                        6 => x86::pair::<6, $four>(w, g, acts, lo, hi, ahead),
                        7 => x86::pair::<7, $four>(w, g, acts, lo, hi, ahead),
                        _ => x86::pair::<8, $four>(w, g, acts, lo, hi, ahead),
                    }
                }
            };
        }
        match w.bits {
            Bits::Four => by_tokens!(true),
            Bits::Eight => by_tokens!(false),
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{ActRow, Ahead, BLOCK, LANES, Tiled};

    /// Prefetches block `b`'s share (of `blocks`) of each span in `ahead`, one cache line at a time.
    #[inline(always)]
    fn prefetch(ahead: &Ahead<'_>, b: usize, blocks: usize) {
        for s in ahead.spans {
            let per = s.len().div_ceil(blocks);
            let (from, to) = ((b * per).min(s.len()), ((b + 1) * per).min(s.len()));
            let mut at = from & !63;
            while at < to {
                // SAFETY: `at < s.len()`, inside the span; prefetching reads nothing into the program.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(s.as_ptr().add(at).cast()) };
                at += 64;
            }
        }
    }

    /// Joins two 256-bit halves.
    #[target_feature(enable = "avx512f")]
    fn join(lo: __m256i, hi: __m256i) -> __m512i {
        _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
    }

    /// 16 f16 scales, 8 from each group's slice at `at`, as f32.
    ///
    /// SAFETY: both slices have 8 values from `at`.
    #[target_feature(enable = "avx512f,f16c")]
    unsafe fn scales(a: &[half::f16], b: &[half::f16], at: usize) -> __m512 {
        // SAFETY: see above.
        let (x, y) = unsafe {
            (
                _mm_loadu_si128(a.as_ptr().add(at).cast()),
                _mm_loadu_si128(b.as_ptr().add(at).cast()),
            )
        };
        _mm512_cvtph_ps(_mm256_inserti128_si256::<1>(_mm256_castsi128_si256(x), y))
    }

    /// Groups `g` and `g + 1` × `T` activation rows; `FOUR` picks 4-bit (else 8-bit) weights.
    ///
    /// SAFETY: the CPU has AVX-512 F/BW/VNNI and F16C; `g + 1 < w.groups()`, `acts.len() == T`,
    /// `lo`/`hi` hold at least `T` tiles, and every activation row has at least `w.blocks` blocks.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn pair<const T: usize, const FOUR: bool>(
        w: &Tiled,
        g: usize,
        acts: &[ActRow<'_>],
        lo: &mut [[f32; LANES]],
        hi: &mut [[f32; LANES]],
        ahead: Ahead<'_>,
    ) {
        let ((d0, m0, q0), (d1, m1, q1)) = (w.group(g), w.group(g + 1));
        let mask = _mm512_set1_epi8(0x0F);
        let mut f = [_mm512_setzero_ps(); T];
        for b in 0..w.blocks {
            prefetch(&ahead, b, w.blocks);
            // SAFETY: `group` returned `blocks · LANES` scales, and as many offsets for 4-bit.
            let wd = unsafe { scales(d0, d1, b * LANES) };
            let wm = if FOUR {
                // SAFETY: as above.
                unsafe { scales(m0, m1, b * LANES) }
            } else {
                _mm512_mul_ps(wd, _mm512_set1_ps(-128.0))
            };
            let mut wv = [_mm512_setzero_si512(); 8];
            if FOUR {
                // SAFETY: 128 bytes per block of a 4-bit group.
                let (p0, p1) = unsafe { (q0.as_ptr().add(b * 128), q1.as_ptr().add(b * 128)) };
                for k in 0..4 {
                    // SAFETY: `k · 32 + 32 <= 128`.
                    let raw = unsafe {
                        join(
                            _mm256_loadu_si256(p0.add(k * 32).cast()),
                            _mm256_loadu_si256(p1.add(k * 32).cast()),
                        )
                    };
                    wv[k] = _mm512_and_si512(raw, mask);
                    wv[k + 4] = _mm512_and_si512(_mm512_srli_epi16::<4>(raw), mask);
                }
            } else {
                // SAFETY: 256 bytes per block of an 8-bit group.
                let (p0, p1) = unsafe { (q0.as_ptr().add(b * 256), q1.as_ptr().add(b * 256)) };
                for (k, v) in wv.iter_mut().enumerate() {
                    // SAFETY: `k · 32 + 32 <= 256`.
                    *v = unsafe {
                        join(
                            _mm256_loadu_si256(p0.add(k * 32).cast()),
                            _mm256_loadu_si256(p1.add(k * 32).cast()),
                        )
                    };
                }
            }
            for (t, ft) in f.iter_mut().enumerate() {
                // SAFETY: `acts.len() == T`; each row has `blocks` blocks of 32 values.
                let (a, ad, asum) = unsafe {
                    let a = acts.get_unchecked(t);
                    (
                        a.qs.as_ptr().add(b * BLOCK),
                        *a.d.get_unchecked(b),
                        *a.s.get_unchecked(b),
                    )
                };
                let mut acc = [_mm512_setzero_si512(); 2];
                for (k, &wk) in wv.iter().enumerate() {
                    // SAFETY: `4k + 4 <= 32`, within the block.
                    let x = unsafe { a.add(4 * k).cast::<i32>().read_unaligned() };
                    let c = if T <= 2 { k % 2 } else { 0 };
                    acc[c] = _mm512_dpbusd_epi32(acc[c], wk, _mm512_set1_epi32(x));
                }
                let acc = if T <= 2 {
                    _mm512_add_epi32(acc[0], acc[1])
                } else {
                    acc[0]
                };
                let scale = _mm512_mul_ps(wd, _mm512_set1_ps(ad));
                *ft = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), scale, *ft);
                *ft = _mm512_fmadd_ps(wm, _mm512_set1_ps(asum), *ft);
            }
        }
        for ((ft, l), h) in f.iter().zip(lo.iter_mut()).zip(hi.iter_mut()) {
            let upper = _mm512_extractf64x4_pd::<1>(_mm512_castps_pd(*ft));
            // SAFETY: a tile is `LANES` floats.
            unsafe {
                _mm256_storeu_ps(l.as_mut_ptr(), _mm512_castps512_ps256(*ft));
                _mm256_storeu_ps(h.as_mut_ptr(), _mm256_castpd_ps(upper));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tile::{random_acts, random_tiled};
    use super::super::tile_simd::{Isa, tile};
    use super::*;
    use rand::{SeedableRng, rngs::StdRng};

    /// The prefetched spans are exactly the named groups' values, scales and offsets, and nothing for an
    /// empty range (also one past the last group).
    #[test]
    fn ahead_spans_cover_exactly_the_named_groups() {
        let mut rng = StdRng::seed_from_u64(6);
        let w = random_tiled(&mut rng, Bits::Four, 40, 3);
        let ahead = Ahead::groups(&w, 2..4);
        let (first, last) = (w.group(2), w.group(3));
        let q = ahead.spans[0];
        assert_eq!(q.as_ptr(), first.2.as_ptr());
        assert_eq!(q.len(), first.2.len() + last.2.len());
        assert_eq!(ahead.spans[1].as_ptr(), first.0.as_ptr().cast::<u8>());
        assert_eq!(ahead.spans[1].len(), 2 * (first.0.len() + last.0.len()));
        assert_eq!(ahead.spans[2].as_ptr(), first.1.as_ptr().cast::<u8>());
        assert_eq!(ahead.spans[2].len(), 2 * (first.1.len() + last.1.len()));
        for empty in [w.groups()..w.groups(), w.groups() + 1..w.groups()] {
            assert!(Ahead::groups(&w, empty).spans.iter().all(|s| s.is_empty()));
        }
    }

    /// Bitwise the results of two single-group calls of the 256-bit VNNI kernel, for both weight widths,
    /// every token count and a padded last group.
    #[test]
    fn a_pair_equals_two_single_group_tiles_bit_for_bit() {
        if !supported() {
            eprintln!("skipped: this CPU has no AVX-512 VNNI");
            return;
        }
        let mut rng = StdRng::seed_from_u64(5);
        for bits in [Bits::Four, Bits::Eight] {
            for blocks in [1, 2, 7, 18] {
                let w = random_tiled(&mut rng, bits, 21, blocks);
                for tokens in 1..=MAX_TOKENS {
                    let q = random_acts(&mut rng, bits, blocks, tokens);
                    let a: Vec<_> = (0..tokens).map(|t| q.row(t)).collect();
                    for g in 0..w.groups() - 1 {
                        let (mut lo, mut hi) =
                            (vec![[0f32; LANES]; tokens], vec![[0f32; LANES]; tokens]);
                        tile_pair(
                            &w,
                            g,
                            &a,
                            &mut lo,
                            &mut hi,
                            Ahead::groups(&w, g + 2..w.groups().min(g + 4)),
                        );
                        let (mut one, mut two) = (lo.clone(), hi.clone());
                        tile(Isa::Avx512Vnni, &w, g, &a, &mut one);
                        tile(Isa::Avx512Vnni, &w, g + 1, &a, &mut two);
                        let bits_of = |v: &[[f32; LANES]]| -> Vec<u32> {
                            v.iter().flatten().map(|f| f.to_bits()).collect()
                        };
                        let case =
                            format!("{bits:?} {blocks} blocks, {tokens} tokens, groups {g}+1");
                        assert_eq!(bits_of(&lo), bits_of(&one), "{case}");
                        assert_eq!(bits_of(&hi), bits_of(&two), "{case}");
                    }
                }
            }
        }
    }
}
