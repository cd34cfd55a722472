//! The per-token work of a decoder layer around its projections, on plain f32 rows: RMS norm, rotary
//! embeddings, the gated activations of the MLP, the f16 rounding of cached keys and values, and residual
//! adds. Each replaces a candle op (and the tensor it allocates) on the CPU path of [`crate::model`] and
//! computes what its candle counterpart computes (the tests hold them to candle). Where candle and
//! llama.cpp round differently, they round as llama.cpp does: the golden test holds our logits to
//! llama.cpp's, and the int8 quantization of activations turns last-bit differences into visible ones.

use half::f16;
use half::slice::HalfFloatSliceExt;

use super::pool::for_rows_mut;

/// Elements per piece of element-wise work (a multiple of the 8-lane vectors, so that a piece never
/// moves the scalar tail of a vectorized loop: the values are those of one call over the whole slice).
const LANE_ROW: usize = 64;

/// `out[r] = x[r] · (1 / sqrt(mean(x[r]²) + eps)) · w` for every row `r` of width `w.len()` (candle's
/// `rms_norm`, rounded as llama.cpp's `ggml_rms_norm` then `ggml_mul`: squares summed in f64). A
/// prompt's rows are shared out over the kernel pool.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let n = w.len();
    for_rows_mut(out, n, &|first, dst| {
        let src = &x[first * n..];
        rms_norm_rows(src, w, eps, dst);
    });
}

fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let n = w.len();
    for (src, dst) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let scale = inv_rms(src, eps);
        for ((d, s), a) in dst.iter_mut().zip(src).zip(w) {
            *d = (*s * scale) * *a;
        }
    }
}

/// [`rms_norm`] in place.
pub fn rms_norm_in_place(x: &mut [f32], w: &[f32], eps: f32) {
    for_rows_mut(x, w.len(), &|_, rows| rms_norm_rows_in_place(rows, w, eps));
}

fn rms_norm_rows_in_place(x: &mut [f32], w: &[f32], eps: f32) {
    let n = w.len();
    for row in x.chunks_exact_mut(n) {
        let scale = inv_rms(row, eps);
        for (d, a) in row.iter_mut().zip(w) {
            *d = (*d * scale) * *a;
        }
    }
}

/// `1 / sqrt(mean(x²) + eps)` with the squares (f32) summed in f64, four lanes at a time.
fn inv_rms(x: &[f32], eps: f32) -> f32 {
    let mut acc = [0f64; 4];
    let chunks = x.chunks_exact(4);
    let tail: f64 = chunks.remainder().iter().map(|v| f64::from(v * v)).sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += f64::from(v * v);
        }
    }
    let mean = (acc.iter().sum::<f64>() + tail) / x.len() as f64;
    1.0 / (mean as f32 + eps).sqrt()
}

/// Rotates every head (`head_dim` wide) of `row` by the angles whose cosines and sines are `cos`, `sin`
/// (`head_dim / 2` each). `interleaved`: pairs `(2i, 2i+1)` (candle's `rope_i`); otherwise halves
/// `(i, i + head_dim/2)` (candle's `rope`).
pub fn rope(row: &mut [f32], cos: &[f32], sin: &[f32], interleaved: bool) {
    let half = cos.len();
    for head in row.chunks_exact_mut(2 * half) {
        if interleaved {
            for ((p, c), s) in head.chunks_exact_mut(2).zip(cos).zip(sin) {
                let (a, b) = (p[0], p[1]);
                p[0] = a * c - b * s;
                p[1] = a * s + b * c;
            }
        } else {
            let (lo, hi) = head.split_at_mut(half);
            for (((a, b), c), s) in lo.iter_mut().zip(hi.iter_mut()).zip(cos).zip(sin) {
                let (x, y) = (*a, *b);
                *a = x * c - y * s;
                *b = x * s + y * c;
            }
        }
    }
}

/// `gate[i] = silu(gate[i]) * up[i]` (SwiGLU), as candle's `silu(gate) * up`; a prompt's values are
/// shared out over the kernel pool.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    for_rows_mut(gate, LANE_ROW, &|first, g| {
        silu_mul_here(g, &up[first * LANE_ROW..]);
    });
}

fn silu_mul_here(gate: &mut [f32], up: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        unsafe { super::exp_avx2::silu_mul(gate, up) };
        return;
    }
    silu_mul_scalar(gate, up);
}

/// The portable body of [`silu_mul`].
pub(super) fn silu_mul_scalar(gate: &mut [f32], up: &[f32]) {
    for (g, u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// `out[i] = e^{(x[i] - max) · scale}`: softmax weights (`x[i] <= max`, `scale > 0`), vectorized where
/// the CPU allows.
pub fn exp_shifted(x: &[f32], max: f32, scale: f32, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        unsafe { super::exp_avx2::exp_shifted(x, max, scale, out) };
        return;
    }
    for (o, v) in out.iter_mut().zip(x) {
        *o = ((v - max) * scale).exp();
    }
}

/// `gate[i] = gelu(gate[i]) * up[i]` with the tanh approximation (candle's `gelu`).
pub fn gelu_mul(gate: &mut [f32], up: &[f32]) {
    const SQRT_TWO_OVER_PI: f32 = 0.797_884_6;
    for (g, u) in gate.iter_mut().zip(up) {
        let v = *g;
        *g = 0.5 * v * (1.0 + (SQRT_TWO_OVER_PI * v * (1.0 + 0.044715 * v * v)).tanh()) * u;
    }
}

/// Rounds every value to the nearest f16 (ties to even) and back, as `to_dtype(F16)` then `F32` does
/// (and as llama.cpp rounds what it multiplies with its f16 key/value cache).
pub fn round_to_f16(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx") && is_x86_feature_detected!("f16c") {
        // SAFETY: F16C (with AVX) was detected.
        return unsafe { x86::round_to_f16(x) };
    }
    round_to_f16_portable(x);
}

fn round_to_f16_portable(x: &mut [f32]) {
    let mut tmp = [f16::ZERO; 64];
    for chunk in x.chunks_mut(64) {
        let t = &mut tmp[..chunk.len()];
        t.convert_from_f32_slice(chunk);
        t.convert_to_f32_slice(chunk);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// [`super::round_to_f16`] eight values at a time: the hardware conversion rounds to nearest, ties
    /// to even, as `half` does (which uses the same instructions on such CPUs).
    ///
    /// SAFETY: the CPU has AVX and F16C.
    #[target_feature(enable = "avx,f16c")]
    pub(super) unsafe fn round_to_f16(x: &mut [f32]) {
        let mut chunks = x.chunks_exact_mut(8);
        for c in &mut chunks {
            // SAFETY: `c` holds eight floats.
            unsafe {
                let v = _mm256_loadu_ps(c.as_ptr());
                let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
                _mm256_storeu_ps(c.as_mut_ptr(), _mm256_cvtph_ps(h));
            }
        }
        super::round_to_f16_portable(chunks.into_remainder());
    }
}

/// `x[i] += y[i]`.
pub fn add_in_place(x: &mut [f32], y: &[f32]) {
    for_rows_mut(x, LANE_ROW, &|first, x| {
        for (a, b) in x.iter_mut().zip(&y[first * LANE_ROW..]) {
            *a += b;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Tensor};
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-3.0..3.0)).collect()
    }

    fn close(got: &[f32], want: &[f32], tol: f32) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= tol * (1.0 + w.abs()), "{i}: {g} vs {w}");
        }
    }

    fn tensor(v: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_slice(v, shape, &Device::Cpu).expect("tensor")
    }

    fn flat(t: Tensor) -> Vec<f32> {
        t.flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("vec")
    }

    #[test]
    fn rms_norm_matches_candle() {
        let (rows, n) = (5, 67);
        let (x, w) = (random(rows * n, 1), random(n, 2));
        let want = candle_nn::ops::rms_norm(&tensor(&x, &[rows, n]), &tensor(&w, &[n]), 1e-5)
            .expect("candle");
        let mut out = vec![0f32; x.len()];
        rms_norm(&x, &w, 1e-5, &mut out);
        close(&out, &flat(want.clone()), 1e-6);
        let mut inplace = x.clone();
        rms_norm_in_place(&mut inplace, &w, 1e-5);
        close(&inplace, &flat(want), 1e-6);
    }

    #[test]
    fn rope_matches_candle_in_both_layouts() {
        let (heads, tokens, hd) = (3, 4, 16);
        // Candle's layout is [1, heads, tokens, hd]; ours is [tokens, heads * hd].
        let x = random(heads * tokens * hd, 3);
        let (cos, sin) = (random(tokens * hd / 2, 4), random(tokens * hd / 2, 5));
        let xt = tensor(&x, &[1, heads, tokens, hd]);
        let (ct, st) = (
            tensor(&cos, &[tokens, hd / 2]),
            tensor(&sin, &[tokens, hd / 2]),
        );
        for interleaved in [true, false] {
            let want = if interleaved {
                candle_nn::rotary_emb::rope_i(&xt, &ct, &st)
            } else {
                candle_nn::rotary_emb::rope(&xt, &ct, &st)
            };
            let want = flat(want.and_then(|t| t.transpose(1, 2)).expect("candle"));
            let mut rows = flat(xt.transpose(1, 2).expect("transpose"));
            for (t, row) in rows.chunks_exact_mut(heads * hd).enumerate() {
                let span = t * hd / 2..(t + 1) * hd / 2;
                rope(row, &cos[span.clone()], &sin[span], interleaved);
            }
            close(&rows, &want, 1e-6);
        }
    }

    #[test]
    fn gated_activations_match_candle() {
        let (g, u) = (random(100, 6), random(100, 7));
        let (gt, ut) = (tensor(&g, &[100]), tensor(&u, &[100]));
        let mut silu = g.clone();
        silu_mul(&mut silu, &u);
        let want = (candle_nn::ops::silu(&gt).expect("silu") * &ut).expect("mul");
        close(&silu, &flat(want), 1e-6);
        let mut gelu = g.clone();
        gelu_mul(&mut gelu, &u);
        let want = (gt.gelu().expect("gelu") * &ut).expect("mul");
        close(&gelu, &flat(want), 1e-6);
    }

    /// A prompt's worth of values, shared out over the pool, gives the bits of small serial calls.
    #[test]
    fn row_wise_work_on_the_pool_equals_serial_calls() {
        let n = 576;
        let len = (super::super::pool::ROWS_PARALLEL_MIN / n + 5) * n;
        let (x, w, y) = (random(len, 11), random(n, 12), random(len, 13));
        type Piece<'a> = &'a dyn Fn(&mut [f32], &[f32], usize);
        let serial = |f: Piece<'_>| -> Vec<f32> {
            let mut out = x.clone();
            for (i, c) in out.chunks_mut(10 * n).enumerate() {
                f(c, &y[i * 10 * n..], i * 10 * n);
            }
            out
        };
        let bits = |v: &[f32]| -> Vec<u32> { v.iter().map(|f| f.to_bits()).collect() };
        let mut all = x.clone();
        silu_mul(&mut all, &y);
        assert_eq!(bits(&all), bits(&serial(&|c, u, _| silu_mul(c, u))));
        let mut all = x.clone();
        add_in_place(&mut all, &y);
        assert_eq!(bits(&all), bits(&serial(&|c, u, _| add_in_place(c, u))));
        let mut all = x.clone();
        rms_norm_in_place(&mut all, &w, 1e-5);
        assert_eq!(
            bits(&all),
            bits(&serial(&|c, _, _| rms_norm_in_place(c, &w, 1e-5)))
        );
        let mut all = vec![0.0; len];
        rms_norm(&x, &w, 1e-5, &mut all);
        let one = serial(&|c, _, at| rms_norm(&x[at..at + c.len()], &w, 1e-5, c));
        assert_eq!(bits(&all), bits(&one));
    }

    #[test]
    fn f16_rounding_matches_candle_casts() {
        let mut x = random(150, 8);
        x[0] = 65519.0; // Just below the f16 overflow threshold.
        x[1] = 1e-8; // Subnormal in f16.
        x[2] = 1.0 + 1.0 / 2048.0; // Halfway between two f16 values: ties to even (1.0).
        x[3] = 1.0 + 3.0 / 2048.0; // Halfway again: ties to even, upwards this time.
        x[4] = 65520.0; // Rounds to infinity.
        x[5] = -0.0;
        x[149] = 1.0 + 1.0 / 2048.0; // The same tie in the scalar tail.
        let want = tensor(&x, &[150])
            .to_dtype(DType::F16)
            .and_then(|t| t.to_dtype(DType::F32))
            .expect("cast");
        round_to_f16(&mut x);
        assert_eq!(x, flat(want));
    }
}
