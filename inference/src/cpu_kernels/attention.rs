//! Causal attention of new query tokens over their sequences' cached keys and values, read in place,
//! instead of candle's masks, matmuls and softmax per sequence. The same kernel serves a decode step (one
//! query per sequence, seeing the whole cache) and a prompt chunk (many queries of one sequence, each
//! seeing the keys up to its own position).
//!
//! The cache is read through [`KvView`] (strided f16: the host cache stores `[tokens, kv_heads,
//! head_dim]`), so nothing is copied; keys and values are widened to f32 as they are read. Grouped-query:
//! query head `h` reads kv head `h / (heads / kv_heads)`. The work is cut into items of a few query tokens
//! × the query heads of one kv head, which read each cache row once between them ([`attention`]), and the
//! items run in parallel on the kernel thread pool ([`super::pool`]) when there is enough work to pay for
//! it.

use std::ops::Range;

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

/// Query tokens of one sequence that one task takes together, with all the query heads of one kv head.
const QUERY_BLOCK: usize = 4;

/// Keys per block of a task's loops: every query vector of the task goes through a block before the next
/// block is read, so a key or value row comes from memory once per task and from L1 for the others
/// (64 rows of a 64-wide f16 head are 8 KiB).
const KEY_BLOCK: usize = 64;

/// The unit of work of one task: query tokens `tokens` (of one sequence: they read the same cache) and
/// query heads `heads` (of one kv head).
#[derive(Debug, Clone, PartialEq)]
struct Item {
    tokens: Range<usize>,
    heads: Range<usize>,
}

/// `out[t] = softmax(q[t] · Kᵀ / √head_dim) · V` over `queries[t].keys`, per head, for every query token
/// `t`; `q` and `out` are `[tokens, heads * head_dim]`.
///
/// Grouped-query heads and neighbouring tokens of one sequence read the same keys and values, so a task
/// takes up to [`QUERY_BLOCK`] tokens × the query heads of one kv head and runs them over the cache a
/// [`KEY_BLOCK`] at a time: the rows come from memory once for all of them. Each query vector's scores,
/// softmax and weighted sum are the same operations in the same order as for a query alone, so the result
/// does not depend on the grouping (bit for bit; test). When that gives too few tasks for the pool (one
/// decode token), every (token, head) is a task of its own.
pub fn attention(q: &[f32], queries: &[Query<'_>], dims: (usize, usize), out: &mut [f32]) {
    let tasks_wanted = super::pool::threads() * TASKS_PER_THREAD;
    let items = plan(queries, q.len(), dims, (QUERY_BLOCK, tasks_wanted));
    run(q, queries, dims, &items, out);
}

/// Splits the query vectors into [`Item`]s: blocks of up to `block` tokens that share a cache × the
/// heads of each kv head, or single (token, head) items when that gives fewer than `wanted`.
fn plan(
    queries: &[Query<'_>],
    q_len: usize,
    (kv_heads, head_dim): (usize, usize),
    (block, wanted): (usize, usize),
) -> Vec<Item> {
    if queries.is_empty() {
        return Vec::new();
    }
    let heads = q_len / queries.len() / head_dim;
    let rep = heads / kv_heads;
    let mut blocks = Vec::new();
    let mut t = 0;
    while t < queries.len() {
        let mut end = t + 1;
        while end < queries.len() && end - t < block && same_cache(&queries[t], &queries[end]) {
            end += 1;
        }
        blocks.push(t..end);
        t = end;
    }
    if blocks.len() * kv_heads >= wanted {
        let per_group = |b: Range<usize>| {
            (0..kv_heads).map(move |g| Item {
                tokens: b.clone(),
                heads: g * rep..(g + 1) * rep,
            })
        };
        return blocks.into_iter().flat_map(per_group).collect();
    }
    let single = |t: usize| {
        (0..heads).map(move |h| Item {
            tokens: t..t + 1,
            heads: h..h + 1,
        })
    };
    (0..queries.len()).flat_map(single).collect()
}

fn same_cache(a: &Query<'_>, b: &Query<'_>) -> bool {
    let view = |x: &KvView<'_>| (x.data.as_ptr(), x.offset, x.head_stride, x.token_stride);
    view(&a.k) == view(&b.k) && view(&a.v) == view(&b.v)
}

/// Output pointer shared by the tasks of one call; each task writes only its own tokens' heads.
#[derive(Clone, Copy)]
struct Out(*mut f32);

// SAFETY: tasks write disjoint elements (their items' (token, head) rows) and the caller waits for all.
unsafe impl Sync for Out {}

fn run(q: &[f32], queries: &[Query<'_>], dims: (usize, usize), items: &[Item], out: &mut [f32]) {
    assert_eq!(q.len(), out.len());
    if queries.is_empty() {
        return;
    }
    let width = q.len() / queries.len();
    for x in queries {
        assert!(x.k.tokens == x.v.tokens && x.keys.start < x.keys.end && x.keys.end <= x.k.tokens);
    }
    for item in items {
        assert!(item.tokens.end <= queries.len() && item.heads.end * dims.1 <= width);
    }
    let heads = width / dims.1;
    let work: usize = queries.iter().map(|x| x.keys.len()).sum::<usize>() * heads;
    let dst = Out(out.as_mut_ptr());
    let kernels = Kernels::pick(dims.1);
    let task = |i: usize| {
        let mut scores = Vec::new();
        // SAFETY: items cover disjoint (token, head) rows of `out` (by construction in `plan`; each
        // item's rows are inside `out`, asserted above), and `out` outlives the call.
        unsafe { run_item(q, queries, dims, kernels, &items[i], &mut scores, dst) };
    };
    if work >= PARALLEL_MIN_WORK {
        super::pool::for_each(items.len(), &task);
    } else {
        (0..items.len()).for_each(task);
    }
}

/// One item: scores of every query vector a key block at a time, softmax per vector, then the weighted
/// sums a value block at a time.
///
/// SAFETY: `out` points to `[queries.len(), width]` floats of which no one else writes this item's rows.
unsafe fn run_item(
    q: &[f32],
    queries: &[Query<'_>],
    (kv_heads, hd): (usize, usize),
    k: Kernels,
    item: &Item,
    scores: &mut Vec<f32>,
    out: Out,
) {
    let width = q.len() / queries.len();
    let rep = width / hd / kv_heads;
    let g = item.heads.start / rep;
    let scale = 1.0 / (hd as f32).sqrt();
    let vectors: Vec<(usize, usize)> = item
        .tokens
        .clone()
        .flat_map(|t| item.heads.clone().map(move |h| (t, h)))
        .collect();
    let longest = item
        .tokens
        .clone()
        .map(|t| queries[t].keys.len())
        .max()
        .unwrap_or(0);
    scores.clear();
    scores.resize(vectors.len() * longest, 0.0);
    let blocks = longest.div_ceil(KEY_BLOCK);
    // `(vector index, keys of this block, their offset in the vector's scores)`.
    let block_of = |j: usize| {
        vectors.iter().enumerate().filter_map(move |(m, &(t, _))| {
            let r = &queries[t].keys;
            let lo = r.start + j * KEY_BLOCK;
            (lo < r.end).then(|| {
                (
                    m,
                    lo..(lo + KEY_BLOCK).min(r.end),
                    m * longest + j * KEY_BLOCK,
                )
            })
        })
    };
    for j in 0..blocks {
        for (m, keys, at) in block_of(j) {
            let (t, h) = vectors[m];
            let qh = &q[t * width + h * hd..][..hd];
            let s = &mut scores[at..at + keys.len()];
            k.score(qh, queries[t].k, g, keys, scale, s);
        }
    }
    for (m, &(t, _)) in vectors.iter().enumerate() {
        k.softmax(&mut scores[m * longest..][..queries[t].keys.len()]);
    }
    let row = |m: usize| {
        let (t, h) = vectors[m];
        // SAFETY: row (t, h) of `out` is this item's alone (see above); nothing else borrows it here.
        unsafe { std::slice::from_raw_parts_mut(out.0.add(t * width + h * hd), hd) }
    };
    for m in 0..vectors.len() {
        row(m).fill(0.0);
    }
    for j in 0..blocks {
        for (m, keys, at) in block_of(j) {
            let t = vectors[m].0;
            k.accumulate(
                &scores[at..at + keys.len()],
                queries[t].v,
                g,
                keys.start,
                row(m),
            );
        }
    }
}

/// The three loops of attention, vectorized where the CPU allows (AVX2 + FMA + F16C and a head width
/// that is a multiple of 8), portable otherwise.
#[derive(Clone, Copy)]
enum Kernels {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Kernels {
    fn pick(head_dim: usize) -> Self {
        #[cfg(target_arch = "x86_64")]
        if head_dim.is_multiple_of(8)
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
        {
            return Self::Avx2;
        }
        let _ = head_dim;
        Self::Portable
    }

    /// `s[i] = q · k[keys.start + i] · scale` for kv head `g`.
    fn score(
        self,
        q: &[f32],
        k: KvView<'_>,
        g: usize,
        keys: Range<usize>,
        scale: f32,
        s: &mut [f32],
    ) {
        assert!(keys.end <= k.tokens && s.len() == keys.len());
        match self {
            // SAFETY: `pick` checked the features and the head width; the view holds `keys`.
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => unsafe { super::attention_avx2::score(q, k, g, keys, scale, s) },
            Self::Portable => {
                for (x, t) in s.iter_mut().zip(keys) {
                    *x = dot(q, k.row(g, t, q.len())) * scale;
                }
            }
        }
    }

    /// `s = softmax(s)`.
    fn softmax(self, s: &mut [f32]) {
        let total = match self {
            // SAFETY: `pick` checked the features.
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => unsafe { super::attention_avx2::exp_in_place(s) },
            Self::Portable => {
                let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut total = 0f32;
                for x in s.iter_mut() {
                    *x = (*x - max).exp();
                    total += *x;
                }
                total
            }
        };
        normalize(s, total);
    }

    /// `out += Σ_i p[i] · v[first + i]` for kv head `g`.
    fn accumulate(self, p: &[f32], v: KvView<'_>, g: usize, first: usize, out: &mut [f32]) {
        assert!(!p.is_empty() && first + p.len() <= v.tokens);
        match self {
            // SAFETY: `pick` checked the features and the head width; the view holds the rows.
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => unsafe { super::attention_avx2::accumulate(p, v, g, first, out) },
            Self::Portable => {
                for (i, &w) in p.iter().enumerate() {
                    axpy(out, w, v.row(g, first + i, out.len()));
                }
            }
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

    fn view(data: &[f16], tokens: usize, hd: usize, cap: usize) -> KvView<'_> {
        KvView {
            data,
            offset: 0,
            head_stride: cap * hd,
            token_stride: hd,
            tokens,
        }
    }

    #[test]
    fn items_group_tokens_of_one_cache_and_heads_of_one_kv_head() {
        let (a, b) = (vec![f16::ZERO; 64], vec![f16::ZERO; 64]);
        let q = |data, end| Query {
            k: view(data, 8, 2, 8),
            v: view(data, 8, 2, 8),
            keys: 0..end,
        };
        // Five prompt tokens of one sequence, then one decode token of another; 6 heads over 2 kv heads.
        let queries: Vec<_> = (1..=5).map(|e| q(&a, e)).chain([q(&b, 8)]).collect();
        let items = plan(&queries, 6 * 6 * 2, (2, 2), (4, 0));
        let item = |t: Range<usize>, h: Range<usize>| Item {
            tokens: t,
            heads: h,
        };
        let want = [
            item(0..4, 0..3),
            item(0..4, 3..6),
            item(4..5, 0..3),
            item(4..5, 3..6),
            item(5..6, 0..3),
            item(5..6, 3..6),
        ];
        assert_eq!(items, want);
        // Fewer items than the pool wants: one per token and head.
        let items = plan(&queries, 6 * 6 * 2, (2, 2), (4, 7));
        assert_eq!(items.len(), 36);
        assert_eq!(items[7], item(1..2, 1..2));
    }

    /// The grouping into items changes the order of memory reads, never a result.
    #[test]
    fn grouped_items_give_the_same_bits_as_one_item_per_query_vector() {
        for hd in [64, 6] {
            let mut rng = StdRng::seed_from_u64(11);
            let (heads, kv_heads, tokens, cap) = (6, 2, 150, 160);
            let mut random = |n: usize| -> Vec<f16> {
                (0..n)
                    .map(|_| f16::from_f32(rng.random_range(-1.0..1.0)))
                    .collect()
            };
            let (kb, vb) = (random(kv_heads * cap * hd), random(kv_heads * cap * hd));
            let q: Vec<f32> = random(7 * heads * hd).iter().map(|x| x.to_f32()).collect();
            // A causal prompt chunk of 6 tokens, one of them windowed, and a decode token of another view.
            let other = view(&kb[hd..], 100, hd, cap);
            let mut queries: Vec<Query<'_>> = (tokens - 5..=tokens)
                .map(|end| Query {
                    k: view(&kb, tokens, hd, cap),
                    v: view(&vb, tokens, hd, cap),
                    keys: if end == tokens - 2 { 70..end } else { 0..end },
                })
                .collect();
            queries.push(Query {
                k: other,
                v: other,
                keys: 0..100,
            });
            let dims = (kv_heads, hd);
            let (mut grouped, mut alone) = (vec![0f32; q.len()], vec![0f32; q.len()]);
            let g = plan(&queries, q.len(), dims, (QUERY_BLOCK, 0));
            let a = plan(&queries, q.len(), dims, (1, usize::MAX));
            assert!(g.len() < a.len());
            run(&q, &queries, dims, &g, &mut grouped);
            run(&q, &queries, dims, &a, &mut alone);
            let bits = |v: &[f32]| -> Vec<u32> { v.iter().map(|x| x.to_bits()).collect() };
            assert_eq!(bits(&grouped), bits(&alone), "head width {hd}");
        }
    }

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
