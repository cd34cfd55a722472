//! Causal attention of new query tokens over their sequences' cached keys and values, read in place: one
//! pass per query token and head instead of candle's masks, matmuls and softmax per sequence. The same
//! kernel serves a decode step (one query per sequence, seeing the whole cache) and a prompt chunk (many
//! queries of one sequence, each seeing the keys up to its own position).
//!
//! The cache is read through [`KvView`] (strided f16: the host cache stores `[tokens, kv_heads,
//! head_dim]`), so nothing is copied; keys and values are widened to f32 as they are read. Grouped-query: query head
//! `h` reads kv head `h / (heads / kv_heads)`. Query tokens run in parallel on the kernel thread pool
//! ([`super::pool`]) when there is enough work to pay for it.

use std::ops::Range;
use std::sync::Mutex;

use half::f16;

/// A `[kv_heads, tokens, head_dim]` f16 tensor as strided memory (head_dim elements contiguous).
#[derive(Debug, Clone, Copy)]
pub struct KvView<'a> {
    /// The underlying buffer.
    pub data: &'a [f16],
    /// Index of element `[0, 0, 0]`.
    pub offset: usize,
    /// Elements between kv heads.
    pub head_stride: usize,
    /// Elements between tokens.
    pub token_stride: usize,
    /// Tokens in the view.
    pub tokens: usize,
}

impl KvView<'_> {
    fn row(&self, head: usize, token: usize, head_dim: usize) -> &[f16] {
        let start = self.offset + head * self.head_stride + token * self.token_stride;
        &self.data[start..start + head_dim]
    }
}

/// One query token of [`attention`]: the cache it reads and the cached tokens it sees.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    /// Keys of the query's sequence.
    pub k: KvView<'a>,
    /// Values of the query's sequence.
    pub v: KvView<'a>,
    /// The cached tokens this query attends to (causal, and windowed on local layers).
    pub keys: Range<usize>,
}

/// Head-key products below which [`attention`] stays on the calling thread (a few microseconds of work;
/// the pool's workers are spinning between the projections of a step, so handing out work is cheap).
const PARALLEL_MIN_WORK: usize = 2048;

/// Tasks per pool thread, so that the claiming of tasks evens out causal prompts (later tokens see more
/// keys).
const TASKS_PER_THREAD: usize = 4;

/// `out[t] = softmax(q[t] · Kᵀ / √head_dim) · V` over `queries[t].keys`, per head, for every query token
/// `t`; `q` and `out` are `[tokens, heads * head_dim]`. The (token, head) pairs are split into contiguous
/// runs that the tasks of [`super::pool`] take, so even one decode token spreads its heads over threads.
pub fn attention(q: &[f32], queries: &[Query<'_>], dims: (usize, usize), out: &mut [f32]) {
    assert_eq!(q.len(), out.len());
    if queries.is_empty() {
        return;
    }
    let hd = dims.1;
    let width = q.len() / queries.len();
    let heads = width / hd;
    let units = queries.len() * heads;
    let work: usize = queries.iter().map(|x| x.keys.len()).sum::<usize>() * heads;
    let tasks = if work >= PARALLEL_MIN_WORK {
        units.min(super::pool::threads() * TASKS_PER_THREAD)
    } else {
        1
    };
    let per_task = units.div_ceil(tasks);
    // One lock per task's output heads: never contended, it only hands each task its part of `out`.
    let blocks: Vec<Mutex<&mut [f32]>> = out.chunks_mut(per_task * hd).map(Mutex::new).collect();
    super::pool::for_each(blocks.len(), &|b| {
        let mut o = blocks[b].lock().unwrap_or_else(|e| e.into_inner());
        let (first, last) = (b * per_task, ((b + 1) * per_task).min(units));
        let mut scores = Vec::new();
        let mut u = first;
        while u < last {
            let (t, h) = (u / heads, u % heads);
            let hs = h..heads.min(h + last - u);
            let x = &queries[t];
            let ot = &mut o[(u - first) * hd..(u - first + hs.len()) * hd];
            let qt = &q[t * width..(t + 1) * width];
            u += hs.len();
            attend(qt, x.k, x.v, dims, x.keys.clone(), hs, &mut scores, ot);
        }
    });
}

/// One query token over `keys` of the views, for query heads `heads`: `q` is the token's
/// `[all heads, head_dim]` row, `out` the `[heads.len(), head_dim]` results.
#[allow(clippy::too_many_arguments)]
pub fn attend(
    q: &[f32],
    k: KvView<'_>,
    v: KvView<'_>,
    dims: (usize, usize),
    keys: Range<usize>,
    heads: Range<usize>,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    assert_eq!(heads.len() * dims.1, out.len());
    assert!(heads.end * dims.1 <= q.len());
    assert!(k.tokens == v.tokens && keys.start < keys.end && keys.end <= k.tokens);
    #[cfg(target_arch = "x86_64")]
    if dims.1.is_multiple_of(8)
        && is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
    {
        // SAFETY: the CPU has AVX2, FMA and F16C, the head width is a multiple of 8 (both checked just above),
        // and the views hold `keys` (asserted above).
        unsafe { super::attention_avx2::attend(q, k, v, dims, keys, heads, scores, out) };
        return;
    }
    attend_body(q, k, v, dims, keys, heads, scores, out);
}

/// The portable body of [`attend`].
#[allow(clippy::too_many_arguments)]
fn attend_body(
    q: &[f32],
    k: KvView<'_>,
    v: KvView<'_>,
    (kv_heads, head_dim): (usize, usize),
    keys: Range<usize>,
    heads: Range<usize>,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let rep = q.len() / head_dim / kv_heads;
    let scale = 1.0 / (head_dim as f32).sqrt();
    scores.clear();
    scores.resize(keys.len(), 0.0);
    for (i, h) in heads.enumerate() {
        let g = h / rep;
        let qh = &q[h * head_dim..(h + 1) * head_dim];
        let mut max = f32::NEG_INFINITY;
        for (s, t) in scores.iter_mut().zip(keys.clone()) {
            *s = dot(qh, k.row(g, t, head_dim)) * scale;
            max = max.max(*s);
        }
        let mut total = 0f32;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            total += *s;
        }
        normalize(scores, total);
        let oh = &mut out[i * head_dim..(i + 1) * head_dim];
        oh.fill(0.0);
        for (s, t) in scores.iter().zip(keys.clone()) {
            axpy(oh, *s, v.row(g, t, head_dim));
        }
    }
}

/// `p[i] = p[i] / total`.
pub(super) fn normalize(p: &mut [f32], total: f32) {
    let inv = 1.0 / total;
    p.iter_mut().for_each(|x| *x *= inv);
}

/// Dot product in sixteen lanes (so the compiler can vectorize it).
fn dot(a: &[f32], b: &[f16]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y.to_f32())
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..16 {
            acc[l] += x[l] * y[l].to_f32();
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `y += a · x`.
fn axpy(y: &mut [f32], a: f32, x: &[f16]) {
    for (o, v) in y.iter_mut().zip(x) {
        *o += a * v.to_f32();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// Against the textbook formula on dense arrays, reading the cache through a strided view with spare
    /// capacity (as candle's cache buffers have), with a window start, for one and for several queries.
    #[test]
    fn attention_matches_the_dense_formula() {
        // 24: the AVX2 kernel where the CPU has it (three of its eight-lane chunks); 6: the portable one.
        for hd in [24, 6] {
            attention_matches_the_dense_formula_for(hd);
        }
    }

    fn attention_matches_the_dense_formula_for(hd: usize) {
        let mut rng = StdRng::seed_from_u64(5);
        let (heads, kv_heads, tokens, cap) = (6, 2, 11, 16);
        let mut random =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
        let half = |x: Vec<f32>| -> Vec<f16> { x.into_iter().map(f16::from_f32).collect() };
        let (kb, vb) = (
            half(random(kv_heads * cap * hd)),
            half(random(kv_heads * cap * hd)),
        );
        let view = |data| KvView {
            data,
            offset: 0,
            head_stride: cap * hd,
            token_stride: hd,
            tokens,
        };
        let ranges = [0..tokens, 4..tokens, 0..1, 3..7];
        let q = random(ranges.len() * heads * hd);
        let queries: Vec<Query<'_>> = ranges
            .iter()
            .map(|r| Query {
                k: view(&kb),
                v: view(&vb),
                keys: r.clone(),
            })
            .collect();
        let mut out = vec![0f32; q.len()];
        attention(&q, &queries, (kv_heads, hd), &mut out);
        for (n, keys) in ranges.iter().enumerate() {
            for h in 0..heads {
                let g = h / (heads / kv_heads);
                let at = |b: &[f16], t: usize, i: usize| b[g * cap * hd + t * hd + i].to_f32();
                let qi = |i: usize| q[(n * heads + h) * hd + i];
                let s: Vec<f32> = keys
                    .clone()
                    .map(|t| {
                        (0..hd).map(|i| qi(i) * at(&kb, t, i)).sum::<f32>() / (hd as f32).sqrt()
                    })
                    .collect();
                let z: f32 = s.iter().map(|x| x.exp()).sum();
                for i in 0..hd {
                    let want: f32 = keys
                        .clone()
                        .map(|t| s[t - keys.start].exp() / z * at(&vb, t, i))
                        .sum();
                    let got = out[(n * heads + h) * hd + i];
                    assert!((got - want).abs() < 1e-5, "q{n} h{h} i{i}: {got} vs {want}");
                }
            }
        }
    }
}
