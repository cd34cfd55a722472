//! A vectorized `e^x` for AVX2 + FMA (softmax arguments, `x <= 0`) and the SwiGLU activation built on it,
//! so that neither calls libm's scalar `expf` once per value.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// `e^x` for `x <= 0` (softmax arguments), to about 2 ulp: `2^n · p(r)` with `x = n ln2 + r`,
/// `|r| <= ln2 / 2`, and a degree-6 polynomial (Cephes' `expf`); arguments below -87.3 (near the smallest normal result) give 0.
#[target_feature(enable = "avx2,fma")]
pub(super) fn exp(x: __m256) -> __m256 {
    let tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3), _CMP_LT_OQ);
    let x = _mm256_max_ps(x, _mm256_set1_ps(-87.3));
    let n = _mm256_round_ps(
        _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
    );
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm256_set1_ps(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        5.0e-1,
    ] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let r2 = _mm256_mul_ps(r, r);
    let p = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0));
    let pow2 = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)),
        23,
    );
    let e = _mm256_mul_ps(p, _mm256_castsi256_ps(pow2));
    _mm256_andnot_ps(tiny, e)
}

/// `out[i] = e^{(x[i] - max) · scale}` eight lanes at a time (softmax weights; `x[i] <= max`,
/// `scale > 0`).
///
/// SAFETY: the CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn exp_shifted(x: &[f32], max: f32, scale: f32, out: &mut [f32]) {
    let n = x.len().min(out.len());
    let (m, s) = (_mm256_set1_ps(max), _mm256_set1_ps(scale));
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: `i + 8 <= n` and both slices hold `n` values.
        unsafe {
            let v = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x.as_ptr().add(i)), m), s);
            _mm256_storeu_ps(out.as_mut_ptr().add(i), exp(v));
        }
        i += 8;
    }
    for (o, v) in out[i..n].iter_mut().zip(&x[i..n]) {
        *o = ((v - max) * scale).exp();
    }
}

/// `gate[i] = silu(gate[i]) · up[i]` eight lanes at a time: `silu(g) = g · σ(g)` with `σ` from
/// `e = e^{-|g|}` (never overflows): `1 / (1 + e)` for `g ≥ 0`, `e / (1 + e)` below.
///
/// SAFETY: the CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn silu_mul(gate: &mut [f32], up: &[f32]) {
    let n = gate.len().min(up.len());
    let sign = _mm256_set1_ps(-0.0);
    let one = _mm256_set1_ps(1.0);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: `i + 8 <= n` and both slices hold `n` values.
        unsafe {
            let g = _mm256_loadu_ps(gate.as_ptr().add(i));
            let e = exp(_mm256_or_ps(g, sign));
            let inv = _mm256_div_ps(one, _mm256_add_ps(one, e));
            let negative = _mm256_cmp_ps(g, _mm256_setzero_ps(), _CMP_LT_OQ);
            let sigma = _mm256_blendv_ps(inv, _mm256_mul_ps(e, inv), negative);
            let u = _mm256_loadu_ps(up.as_ptr().add(i));
            _mm256_storeu_ps(
                gate.as_mut_ptr().add(i),
                _mm256_mul_ps(_mm256_mul_ps(g, sigma), u),
            );
        }
        i += 8;
    }
    super::elementwise::silu_mul_scalar(&mut gate[i..n], &up[i..n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the scalar formula over both signs, large magnitudes (where `e^{-g}` would overflow) and
    /// a length that leaves a scalar tail.
    #[test]
    fn silu_matches_the_scalar_formula() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            return;
        }
        let g: Vec<f32> = (0..4003)
            .map(|i| (i as f32 - 2001.0) * 0.05)
            .chain([-200.0, 200.0])
            .collect();
        let u: Vec<f32> = (0..g.len()).map(|i| 1.0 + (i % 7) as f32 * 0.25).collect();
        let mut fast = g.clone();
        // SAFETY: the features were checked above.
        unsafe { silu_mul(&mut fast, &u) };
        let mut slow = g.clone();
        crate::cpu_kernels::elementwise::silu_mul_scalar(&mut slow, &u);
        for ((x, f), s) in g.iter().zip(&fast).zip(&slow) {
            assert!(
                (f - s).abs() <= 4.0 * f32::EPSILON * s.abs() + 1e-30,
                "silu({x}): {f} vs {s}"
            );
        }
    }
}
