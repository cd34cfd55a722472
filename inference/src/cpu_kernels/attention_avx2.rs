//! The AVX2 + FMA (+ F16C, to widen the f16 cache) loops of [`super::attention::attention`] for head
//! widths that are a multiple of 8: scores eight keys at a time (one horizontal reduction per four dot
//! products), a vectorized exponential for the softmax, and the weighted sum of values with the output
//! head held in registers 64 lanes at a time.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::ops::Range;

use half::f16;

use super::attention::KvView;
use super::exp_avx2::exp;

/// Eight f16 values from `p` as f32 lanes.
///
/// SAFETY: `p` points to at least 8 readable f16 values.
#[target_feature(enable = "avx2,f16c")]
unsafe fn load8(p: *const f16) -> __m256 {
    // SAFETY: as this function's contract.
    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
}

/// `scores[i] = q · k[keys.start + i] · scale` for kv head `g`.
///
/// SAFETY: the CPU has AVX2, FMA and F16C; `q.len()` is a multiple of 8, the view holds the rows of
/// `keys` and `scores` has one slot per key.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn score(
    q: &[f32],
    k: KvView<'_>,
    g: usize,
    keys: Range<usize>,
    scale: f32,
    scores: &mut [f32],
) {
    let hd = q.len();
    let row = |t: usize| k.data[k.offset + g * k.head_stride + t * k.token_stride..][..hd].as_ptr();
    let mut t = keys.start;
    // Eight keys at a time: eight independent FMA chains keep both FMA pipes busy (four leave them
    // waiting on the chains' latency). Each group of four is reduced as a block of four always was, so
    // the scores do not depend on where the blocks of eight fall.
    let mut eights = scores.chunks_exact_mut(8);
    for out in &mut eights {
        let r: [*const f16; 8] = std::array::from_fn(|j| row(t + j));
        // SAFETY: every row (and `q`) holds `hd` values; `out` has eight floats.
        unsafe { dots::<8>(q, r, scale, out) };
        t += 8;
    }
    let mut fours = eights.into_remainder().chunks_exact_mut(4);
    for out in &mut fours {
        let r: [*const f16; 4] = std::array::from_fn(|j| row(t + j));
        // SAFETY: as above, with four floats.
        unsafe { dots::<4>(q, r, scale, out) };
        t += 4;
    }
    let qp = q.as_ptr();
    for s in fours.into_remainder() {
        let kr = row(t);
        let mut acc = _mm256_setzero_ps();
        for c in (0..hd).step_by(8) {
            // SAFETY: `c + 8 <= hd` and the row (and `q`) holds `hd` values.
            unsafe { acc = _mm256_fmadd_ps(_mm256_loadu_ps(qp.add(c)), load8(kr.add(c)), acc) };
        }
        *s = hsum(acc) * scale;
        t += 1;
    }
}

/// `out[j] = q · row j · scale` for `N` (4 or 8) key rows, each group of four reduced together.
///
/// SAFETY: the CPU has AVX2, FMA and F16C; every row and `q` hold `q.len()` values (a multiple of 8);
/// `out` has `N` floats.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dots<const N: usize>(q: &[f32], r: [*const f16; N], scale: f32, out: &mut [f32]) {
    let qp = q.as_ptr();
    let mut acc = [_mm256_setzero_ps(); N];
    for c in (0..q.len()).step_by(8) {
        // SAFETY: `c + 8 <= q.len()`, inside `q` and every row.
        unsafe {
            let qv = _mm256_loadu_ps(qp.add(c));
            for j in 0..N {
                acc[j] = _mm256_fmadd_ps(qv, load8(r[j].add(c)), acc[j]);
            }
        }
    }
    for (a, o) in acc.chunks_exact(4).zip(out.chunks_exact_mut(4)) {
        let s01 = _mm256_hadd_ps(a[0], a[1]);
        let s23 = _mm256_hadd_ps(a[2], a[3]);
        let s = _mm256_hadd_ps(s01, s23);
        let sum = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        // SAFETY: `o` has four floats.
        unsafe { _mm_storeu_ps(o.as_mut_ptr(), _mm_mul_ps(sum, _mm_set1_ps(scale))) };
    }
}

/// `s[i] = exp(s[i] - max(s))`; returns their sum.
///
/// SAFETY: the CPU has AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn exp_in_place(s: &mut [f32]) -> f32 {
    let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let m = _mm256_set1_ps(max);
    let mut total = _mm256_setzero_ps();
    let mut chunks = s.chunks_exact_mut(8);
    for c in &mut chunks {
        // SAFETY: `c` has eight floats.
        unsafe {
            let e = exp(_mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), m));
            _mm256_storeu_ps(c.as_mut_ptr(), e);
            total = _mm256_add_ps(total, e);
        }
    }
    let mut sum = hsum(total);
    for x in chunks.into_remainder() {
        *x = (*x - max).exp();
        sum += *x;
    }
    sum
}

/// `out += Σ_i p[i] · v[first + i]` for kv head `g`, 64 output lanes at a time (held in registers
/// across the keys, so a caller that runs the keys in blocks gets the same sums as one call).
///
/// SAFETY: the CPU has AVX2, FMA and F16C; `out.len()` is a multiple of 8 and the view holds rows
/// `first..first + p.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn accumulate(p: &[f32], v: KvView<'_>, g: usize, first: usize, out: &mut [f32]) {
    let hd = out.len();
    let base = v.offset + g * v.head_stride + first * v.token_stride;
    let rows = &v.data[base..base + (p.len() - 1) * v.token_stride + hd];
    for lo in (0..hd).step_by(64) {
        let (o, r, stride) = (&mut out[lo..], &rows[lo..], v.token_stride);
        // SAFETY: `o` holds the lanes' floats and `r` their values in each of `p.len()` rows `stride`
        // apart (`rows` was cut to the last row's end above); the CPU features are this function's.
        unsafe {
            match (hd - lo).min(64) / 8 {
                8 => accumulate_lanes::<8>(p, r, stride, o),
                7 => accumulate_lanes::<7>(p, r, stride, o),
                6 => accumulate_lanes::<6>(p, r, stride, o),
                5 => accumulate_lanes::<5>(p, r, stride, o),
                4 => accumulate_lanes::<4>(p, r, stride, o),
                3 => accumulate_lanes::<3>(p, r, stride, o),
                2 => accumulate_lanes::<2>(p, r, stride, o),
                _ => accumulate_lanes::<1>(p, r, stride, o),
            }
        }
    }
}

/// `out[..8L] += Σ_i p[i] · rows[i · stride..][..8L]` with the `L` output vectors in registers (a fixed
/// count, so the loop over them unrolls instead of testing the count per key).
///
/// SAFETY: the CPU has AVX2, FMA and F16C; `out` has `8L` floats; `rows` holds `8L` values from each
/// `i · stride`, `i < p.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn accumulate_lanes<const L: usize>(
    p: &[f32],
    rows: &[f16],
    stride: usize,
    out: &mut [f32],
) {
    debug_assert!(out.len() >= 8 * L && rows.len() >= (p.len() - 1) * stride + 8 * L);
    let (op, rp) = (out.as_mut_ptr(), rows.as_ptr());
    let mut acc = [_mm256_setzero_ps(); L];
    for (j, a) in acc.iter_mut().enumerate() {
        // SAFETY: `8j + 8 <= 8L <= out.len()`.
        *a = unsafe { _mm256_loadu_ps(op.add(8 * j)) };
    }
    for (i, &w) in p.iter().enumerate() {
        let w = _mm256_set1_ps(w);
        // SAFETY: row `i < p.len()` is inside `rows`, with `8L` values.
        let r = unsafe { rp.add(i * stride) };
        for (j, a) in acc.iter_mut().enumerate() {
            // SAFETY: as above, `8j + 8 <= 8L`.
            unsafe { *a = _mm256_fmadd_ps(w, load8(r.add(8 * j)), *a) };
        }
    }
    for (j, a) in acc.iter().enumerate() {
        // SAFETY: as for the loads.
        unsafe { _mm256_storeu_ps(op.add(8 * j), *a) };
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_hadd_ps(s, s);
    _mm_cvtss_f32(_mm_hadd_ps(s, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_close_to_std_over_the_softmax_range() {
        if !(is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c"))
        {
            return;
        }
        let xs: Vec<f32> = (0..4000)
            .map(|i| -(i as f32) * 0.025)
            .chain([-100.0, -1e30])
            .collect();
        let mut s = xs.clone();
        s.insert(0, 0.0); // The maximum, so `exp_in_place` subtracts nothing.
        // SAFETY: the features were checked above.
        unsafe { exp_in_place(&mut s) };
        for (x, got) in xs.iter().zip(&s[1..]) {
            let want = x.exp();
            assert!(
                (got - want).abs() <= 4.0 * f32::EPSILON * want + 2e-38,
                "exp({x}): {got} vs {want}"
            );
        }
    }
}
