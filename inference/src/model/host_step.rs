//! The forward step on the CPU over plain f32 buffers: the step's tokens are rows of one `[tokens, width]`
//! buffer per stage, reused through all layers, and every op between the projections is a
//! [`crate::cpu_kernels::elementwise`] loop instead of a candle op allocating a tensor. New keys and values
//! are normed, rotated and rounded in the projection's buffer and appended straight to each sequence's
//! host cache; [`attention::attention`] then reads the caches in place for all query tokens at once.
//!
//! It computes what [`Llama::forward_tensors`] computes, op for op (the tests compare the two).

use candle_core::{DType, Device, Result, Tensor};

use super::{Layer, Llama, Rope, SeqStep, flatten, split};
use crate::config::Arch;
use crate::cpu_kernels::attention::{self, Query};
use crate::cpu_kernels::elementwise as ew;
use crate::cpu_kernels::matmul::{PackedMatrix, matmul_many};
use crate::projection::Projection;

/// The norm weights and RoPE tables of a model as host vectors.
pub(crate) struct HostParams {
    layers: Vec<LayerNorms>,
    norm: Vec<f32>,
    global: RopeTable,
    local: RopeTable,
}

struct LayerNorms {
    attn: Vec<f32>,
    ffn: Vec<f32>,
    gemma: Option<GemmaNorms>,
}

struct GemmaNorms {
    q: Vec<f32>,
    k: Vec<f32>,
    post_attn: Vec<f32>,
    post_ffn: Vec<f32>,
}

/// Cosines and sines `[positions, half]`.
struct RopeTable {
    cos: Vec<f32>,
    sin: Vec<f32>,
    half: usize,
}

impl RopeTable {
    fn new(r: &Rope) -> Result<Self> {
        Ok(Self {
            cos: host(&r.cos)?,
            sin: host(&r.sin)?,
            half: r.cos.dim(1)?,
        })
    }

    fn at(&self, pos: usize) -> Result<(&[f32], &[f32])> {
        let span = pos * self.half..(pos + 1) * self.half;
        match (self.cos.get(span.clone()), self.sin.get(span)) {
            (Some(c), Some(s)) => Ok((c, s)),
            _ => candle_core::bail!("position {pos} is beyond the model's RoPE table"),
        }
    }
}

impl HostParams {
    /// Copies the weights the CPU path reads as slices.
    pub(super) fn new(
        layers: &[Layer],
        norm: &Tensor,
        global: &Rope,
        local: &Rope,
    ) -> Result<Self> {
        let layers = layers
            .iter()
            .map(|l| {
                let gemma = match &l.gemma {
                    Some(g) => Some(GemmaNorms {
                        q: host(&g.q)?,
                        k: host(&g.k)?,
                        post_attn: host(&g.post_attn)?,
                        post_ffn: host(&g.post_ffn)?,
                    }),
                    None => None,
                };
                Ok(LayerNorms {
                    attn: host(&l.attn_norm)?,
                    ffn: host(&l.ffn_norm)?,
                    gemma,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            layers,
            norm: host(norm)?,
            global: RopeTable::new(global)?,
            local: RopeTable::new(local)?,
        })
    }
}

fn host(t: &Tensor) -> Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
}

/// Buffers of one step, `[tokens, width]` each, reused by every layer.
#[derive(Default)]
struct Scratch {
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    out: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
}

/// [`Llama::forward_into`] on the CPU: the logits of each sequence's last new token into `logits`
/// (`[sequences, vocab]`); returns `vocab`. A batch of many sequences goes through the layers in
/// parts, one per kernel thread ([`split`]); the output projection takes all the rows together.
pub(super) fn forward_into(
    m: &Llama,
    p: &HostParams,
    batch: &mut [SeqStep<'_>],
    logits: &mut Vec<f32>,
) -> Result<usize> {
    if batch.is_empty() {
        candle_core::bail!("forward called with no sequences");
    }
    let last = split::run(batch, |part| last_hidden(m, p, part))?;
    project(&m.lm_head, &last, batch.len(), logits)?;
    Ok(logits.len() / batch.len())
}

/// The final-normed hidden state of each sequence's last new token, `[sequences, hidden]`.
fn last_hidden(m: &Llama, p: &HostParams, batch: &mut [SeqStep<'_>]) -> Result<Vec<f32>> {
    let (ids, positions, spans) = flatten(batch);
    if ids.is_empty() {
        candle_core::bail!("forward called with no tokens");
    }
    let c = &m.cfg;
    let n = ids.len();
    let eps = c.rms_norm_eps as f32;
    let mut x = m
        .embed
        .embedding(&Tensor::from_vec(ids, n, &m.device)?)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    if c.arch == Arch::Gemma3 {
        let scale = (c.hidden_size as f64).sqrt() as f32;
        x.iter_mut().for_each(|v| *v *= scale);
    }
    let mut s = Scratch::default();
    s.h.resize(x.len(), 0.0);
    for (li, layer) in m.layers.iter().enumerate() {
        let norms = &p.layers[li];
        ew::rms_norm(&x, &norms.attn, eps, &mut s.h);
        attention(m, p, li, &mut s, &positions, batch, &spans)?;
        if let Some(g) = &norms.gemma {
            ew::rms_norm_in_place(&mut s.out, &g.post_attn, eps);
        }
        ew::add_in_place(&mut x, &s.out);
        ew::rms_norm(&x, &norms.ffn, eps, &mut s.h);
        project_many(
            &[&layer.gate, &layer.up],
            &s.h,
            n,
            &mut [&mut s.gate, &mut s.up],
        )?;
        match c.arch {
            Arch::Llama => ew::silu_mul(&mut s.gate, &s.up),
            Arch::Gemma3 => ew::gelu_mul(&mut s.gate, &s.up),
        }
        project(&layer.down, &s.gate, n, &mut s.out)?;
        if let Some(g) = &norms.gemma {
            ew::rms_norm_in_place(&mut s.out, &g.post_ffn, eps);
        }
        ew::add_in_place(&mut x, &s.out);
    }
    let hidden = c.hidden_size;
    let mut last = Vec::with_capacity(spans.len() * hidden);
    for &(off, len) in &spans {
        last.extend_from_slice(&x[(off + len - 1) * hidden..(off + len) * hidden]);
    }
    ew::rms_norm_in_place(&mut last, &p.norm, eps);
    Ok(last)
}

/// Self-attention of layer `li` from the normed input `s.h` to the output projection's `s.out`.
fn attention(
    m: &Llama,
    p: &HostParams,
    li: usize,
    s: &mut Scratch,
    positions: &[u32],
    batch: &mut [SeqStep<'_>],
    spans: &[(usize, usize)],
) -> Result<()> {
    let (c, layer) = (&m.cfg, &m.layers[li]);
    let (n, hd) = (positions.len(), c.head_dim);
    let (qw, kvw) = (c.num_heads * hd, c.num_kv_heads * hd);
    project_many(
        &[&layer.q, &layer.k, &layer.v],
        &s.h,
        n,
        &mut [&mut s.q, &mut s.k, &mut s.v],
    )?;
    let local = c.is_local_layer(li);
    let table = if local { &p.local } else { &p.global };
    let eps = c.rms_norm_eps as f32;
    let rows = s.q.chunks_exact_mut(qw).zip(s.k.chunks_exact_mut(kvw));
    for ((q, k), &pos) in rows.zip(positions) {
        if let Some(g) = &p.layers[li].gemma {
            ew::rms_norm_in_place(q, &g.q, eps);
            ew::rms_norm_in_place(k, &g.k, eps);
        }
        let (cos, sin) = table.at(pos as usize)?;
        ew::rope(q, cos, sin, c.rope_interleaved);
        ew::rope(k, cos, sin, c.rope_interleaved);
    }
    // The cache keeps keys and values at f16 precision, as llama.cpp's default f16 cache does, and queries
    // are rounded to f16 as llama.cpp rounds them for its f16 `K·q` product: the golden test holds our
    // logits to llama.cpp's, and this rounding is a visible part of its numerics.
    ew::round_to_f16(&mut s.q);
    ew::round_to_f16(&mut s.k);
    ew::round_to_f16(&mut s.v);
    for (seq, &(off, len)) in batch.iter_mut().zip(spans) {
        let rows = off * kvw..(off + len) * kvw;
        seq.cache
            .append_rows(li, kvw, &s.k[rows.clone()], &s.v[rows])?;
    }
    let window = if local { c.sliding_window } else { None };
    let mut queries = Vec::with_capacity(n);
    for (seq, &(_, len)) in batch.iter().zip(spans) {
        let (k, v) = seq.cache.host_views(li, hd)?;
        for end in k.tokens + 1 - len..=k.tokens {
            let start = window.map_or(0, |w| end.saturating_sub(w));
            queries.push(Query {
                k,
                v,
                keys: start..end,
            });
        }
    }
    s.attn.resize(n * qw, 0.0);
    attention::attention(&s.q, &queries, (c.num_kv_heads, hd), &mut s.attn);
    project(&layer.o, &s.attn, n, &mut s.out)
}

/// `out = x · Wᵀ` for `tokens` rows of `x`: our packed kernels straight on the slices, or candle's
/// QMatMul through tensors for the weight types they do not cover.
fn project(w: &Projection, x: &[f32], tokens: usize, out: &mut Vec<f32>) -> Result<()> {
    match w {
        Projection::Packed(pm) => {
            out.resize(tokens * pm.rows(), 0.0);
            pm.matmul(x, out);
        }
        Projection::Candle(_) => {
            let xt = Tensor::from_slice(x, (tokens, x.len() / tokens), &Device::Cpu)?;
            let y = w.forward(&xt)?.flatten_all()?.to_vec1::<f32>()?;
            out.clear();
            out.extend_from_slice(&y);
        }
    }
    Ok(())
}

/// [`project`] for several projections of the same input: one quantization of `x` and one parallel
/// section for all of them when our kernels run them all, else one after another.
fn project_many(
    ws: &[&Projection],
    x: &[f32],
    tokens: usize,
    outs: &mut [&mut Vec<f32>],
) -> Result<()> {
    let packed: Vec<&PackedMatrix> = ws
        .iter()
        .filter_map(|w| match w {
            Projection::Packed(pm) => Some(pm.as_ref()),
            Projection::Candle(_) => None,
        })
        .collect();
    if packed.len() < ws.len() {
        for (w, out) in ws.iter().zip(outs.iter_mut()) {
            project(w, x, tokens, out)?;
        }
        return Ok(());
    }
    let mut dsts: Vec<&mut [f32]> = outs
        .iter_mut()
        .zip(&packed)
        .map(|(out, pm)| {
            out.resize(tokens * pm.rows(), 0.0);
            out.as_mut_slice()
        })
        .collect();
    matmul_many(&packed, x, &mut dsts);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::candle_step::attend;
    use super::*;
    use crate::kv_cache::SeqCache;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// A prompt chunk after a cached past, read from the host cache, against candle's masked attention
    /// over `[kv_heads, tokens, hd]` tensors: causal, grouped-query (3 query heads per kv head), with and
    /// without a sliding window shorter than the chunk.
    #[test]
    fn prompt_attention_matches_candle_with_gqa_and_windows() {
        // Enough queries and keys for the kernel to split them over the thread pool.
        let (heads, kv_heads, hd, past, t) = (6, 2, 16, 40, 90);
        let (kvw, qw, total) = (kv_heads * hd, heads * hd, past + t);
        let mut rng = StdRng::seed_from_u64(11);
        let mut random =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-2.0..2.0)).collect() };
        let (mut k, mut v, q) = (random(total * kvw), random(total * kvw), random(t * qw));
        // The host cache stores f16: give both sides the same f16-precision keys and values.
        ew::round_to_f16(&mut k);
        ew::round_to_f16(&mut v);
        let mut cache = SeqCache::new(1);
        cache
            .append_rows(0, kvw, &k[..past * kvw], &v[..past * kvw])
            .expect("past");
        cache
            .append_rows(0, kvw, &k[past * kvw..], &v[past * kvw..])
            .expect("chunk");
        let (kv, vv) = cache.host_views(0, hd).expect("views");
        // Candle's layout: [heads, tokens, hd] from our [tokens, heads * hd] rows.
        let tensor = |x: &[f32], rows: usize, nh: usize| {
            Tensor::from_slice(x, (rows, nh, hd), &Device::Cpu)
                .and_then(|x| x.transpose(0, 1)?.contiguous())
                .expect("tensor")
        };
        let (qt, kt, vt) = (
            tensor(&q, t, heads),
            tensor(&k, total, kv_heads),
            tensor(&v, total, kv_heads),
        );
        for window in [None, Some(3), Some(50)] {
            let want = attend(&qt, &kt, &vt, (heads, kv_heads), window)
                .and_then(|x| x.flatten_all()?.to_vec1::<f32>())
                .expect("candle");
            let queries: Vec<Query<'_>> = (past + 1..=total)
                .map(|end| Query {
                    k: kv,
                    v: vv,
                    keys: window.map_or(0, |w| end.saturating_sub(w))..end,
                })
                .collect();
            let mut got = vec![0f32; t * qw];
            attention::attention(&q, &queries, (kv_heads, hd), &mut got);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!((g - w).abs() < 1e-5, "window {window:?} [{i}]: {g} vs {w}");
            }
        }
    }
}
