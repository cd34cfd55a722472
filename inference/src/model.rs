//! The Llama-family decoder, run over a batch of sequences that sit at different positions.
//!
//! All tokens of a step (prompt chunks of new sequences and the one new token of each decoding sequence)
//! are flattened into one `[1, N, hidden]` activation, so every projection reads its weights once per
//! step. Only attention is per sequence: each one attends over its own [`SeqCache`].
//!
//! Gemma 3 runs through the same code with its extra pieces switched on by [`Arch::Gemma3`]: scaled
//! embeddings, per-head q/k norms, post-attention and post-MLP norms, GELU, and sliding-window local layers
//! with their own RoPE tables.

use candle_core::quantized::QMatMul;
use candle_core::{D, DType, Device, Result, Tensor};

use crate::config::{Arch, LlamaConfig};
use crate::cpu_kernels::attention::{self, KvView};
use crate::kv_cache::SeqCache;
use crate::projection::Projection;
use crate::weights::{Weight, WeightStore, WeightsError};

struct Layer {
    attn_norm: Tensor,
    q: Projection,
    k: Projection,
    v: Projection,
    o: Projection,
    ffn_norm: Tensor,
    gate: Projection,
    up: Projection,
    down: Projection,
    gemma: Option<GemmaNorms>,
}

/// The extra norms of a Gemma 3 layer.
struct GemmaNorms {
    q: Tensor,
    k: Tensor,
    post_attn: Tensor,
    post_ffn: Tensor,
}

struct Rope {
    cos: Tensor,
    sin: Tensor,
}

/// One sequence's share of a forward step: the new tokens and the cache they extend.
pub struct SeqStep<'a> {
    /// Tokens to feed (the whole prompt on the first step, one token when decoding).
    pub tokens: &'a [u32],
    /// The sequence's cache; its length is the position of `tokens[0]`.
    pub cache: &'a mut SeqCache,
}

/// A loaded Llama-family model.
pub struct Llama {
    cfg: LlamaConfig,
    embed: QMatMul,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Projection,
    global_rope: Rope,
    local_rope: Rope,
    device: Device,
}

impl Llama {
    /// Builds the model from a checkpoint; the output projection falls back to the embeddings when tied.
    pub fn load(
        cfg: LlamaConfig,
        store: &mut WeightStore,
        device: &Device,
    ) -> std::result::Result<Self, WeightsError> {
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            layers.push(load_layer(&cfg, store, i, device)?);
        }
        let embed = store.matmul(Weight::Embed, device)?;
        let lm_head = if !cfg.tie_word_embeddings && store.has(Weight::LmHead) {
            projection(store, Weight::LmHead, device)?
        } else {
            packed(embed.clone(), "token embeddings", device)?
        };
        let norm = store.dense(Weight::FinalNorm, device)?;
        let tables = |theta| {
            rope_tables(&cfg, theta, device).map_err(|source| WeightsError::Tensor {
                name: "rope tables".into(),
                source,
            })
        };
        let global_rope = tables(cfg.rope_theta)?;
        let local_rope = tables(cfg.rope_local_theta)?;
        Ok(Self {
            cfg,
            embed,
            layers,
            norm,
            lm_head,
            global_rope,
            local_rope,
            device: device.clone(),
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// Runs one step for every sequence in `batch`; returns logits `[batch, vocab]` of each sequence's
    /// last new token. Each cache grows by its sequence's token count.
    pub fn forward(&self, batch: &mut [SeqStep<'_>]) -> Result<Tensor> {
        let (ids, positions, spans) = flatten(batch);
        if ids.is_empty() {
            candle_core::bail!("forward called with no tokens");
        }
        let n = ids.len();
        let ids = Tensor::from_vec(ids, n, &self.device)?;
        let pos = Tensor::from_vec(positions, n, &self.device)?;
        let select = |r: &Rope| -> Result<Rope> {
            Ok(Rope {
                cos: r.cos.index_select(&pos, 0)?,
                sin: r.sin.index_select(&pos, 0)?,
            })
        };
        let (global, local) = (select(&self.global_rope)?, select(&self.local_rope)?);
        let mut x = self.embed.embedding(&ids)?.unsqueeze(0)?;
        if self.cfg.arch == Arch::Gemma3 {
            x = (x * (self.cfg.hidden_size as f64).sqrt())?;
        }
        let eps = self.cfg.rms_norm_eps as f32;
        for (li, layer) in self.layers.iter().enumerate() {
            let rope = if self.cfg.is_local_layer(li) {
                &local
            } else {
                &global
            };
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, eps)?;
            let mut attn = self.attention(li, layer, &h, rope, batch, &spans)?;
            if let Some(g) = &layer.gemma {
                attn = candle_nn::ops::rms_norm(&attn, &g.post_attn, eps)?;
            }
            x = (x + attn)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, eps)?;
            let gate = layer.gate.forward(&h)?;
            let act = match self.cfg.arch {
                Arch::Llama => candle_nn::ops::silu(&gate)?,
                Arch::Gemma3 => gate.gelu()?,
            };
            let mut ffn = layer.down.forward(&(act * layer.up.forward(&h)?)?)?;
            if let Some(g) = &layer.gemma {
                ffn = candle_nn::ops::rms_norm(&ffn, &g.post_ffn, eps)?;
            }
            x = (x + ffn)?;
        }
        let last: Vec<u32> = spans.iter().map(|&(o, t)| (o + t - 1) as u32).collect();
        let last = Tensor::from_vec(last, spans.len(), &self.device)?;
        let x = x.squeeze(0)?.index_select(&last, 0)?;
        let x = candle_nn::ops::rms_norm(&x, &self.norm, self.cfg.rms_norm_eps as f32)?;
        self.lm_head.forward(&x)
    }

    fn attention(
        &self,
        li: usize,
        layer: &Layer,
        h: &Tensor,
        rope: &Rope,
        batch: &mut [SeqStep<'_>],
        spans: &[(usize, usize)],
    ) -> Result<Tensor> {
        let c = &self.cfg;
        let n = h.dim(1)?;
        let eps = c.rms_norm_eps as f32;
        let heads = |t: Tensor, nh: usize, norm: Option<&Tensor>| -> Result<Tensor> {
            let t = t
                .reshape((1, n, nh, c.head_dim))?
                .transpose(1, 2)?
                .contiguous()?;
            match norm {
                Some(w) => candle_nn::ops::rms_norm(&t, w, eps),
                None => Ok(t),
            }
        };
        let (qn, kn) = match &layer.gemma {
            Some(g) => (Some(&g.q), Some(&g.k)),
            None => (None, None),
        };
        let q = self
            .rope(&heads(layer.q.forward(h)?, c.num_heads, qn)?, rope)?
            .squeeze(0)?;
        let k = self
            .rope(&heads(layer.k.forward(h)?, c.num_kv_heads, kn)?, rope)?
            .squeeze(0)?;
        let v = heads(layer.v.forward(h)?, c.num_kv_heads, None)?.squeeze(0)?;
        // The cache keeps keys and values at f16 precision, as llama.cpp's default f16 cache does: the
        // golden test holds our logits to llama.cpp's, and this rounding is a visible part of its numerics.
        let (k, v) = (f16_precision(&k)?, f16_precision(&v)?);
        let window = if c.is_local_layer(li) {
            c.sliding_window
        } else {
            None
        };
        if self.device.is_cpu() && spans.iter().all(|&(_, len)| len == 1) {
            let out = self.decode_attention(li, &q, &k, &v, batch, spans, window)?;
            return layer.o.forward(&out);
        }
        let mut outs = Vec::with_capacity(batch.len());
        for (seq, &(off, len)) in batch.iter_mut().zip(spans) {
            let qi = q.narrow(1, off, len)?;
            let ki = k.narrow(1, off, len)?.contiguous()?;
            let vi = v.narrow(1, off, len)?.contiguous()?;
            let (kall, vall) = seq.cache.append(li, &ki, &vi)?;
            outs.push(self.attend(&qi, &kall, &vall, window)?);
        }
        let out = Tensor::cat(&outs, 0)?.unsqueeze(0)?;
        layer.o.forward(&out)
    }

    /// A decode step on the CPU (one new token per sequence): appends each sequence's key and value to its
    /// cache, then attends with [`cpu_kernels::attention`] reading the cache in place; returns
    /// `[1, sequences, heads * hd]`. Same result as [`Self::attend`] with far fewer tensor ops.
    #[allow(clippy::too_many_arguments)]
    fn decode_attention(
        &self,
        li: usize,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        batch: &mut [SeqStep<'_>],
        spans: &[(usize, usize)],
        window: Option<usize>,
    ) -> Result<Tensor> {
        let c = &self.cfg;
        let width = c.num_heads * c.head_dim;
        let q = q.transpose(0, 1)?.flatten_all()?.to_vec1::<f32>()?; // [tokens, heads, hd]
        let mut out = vec![0f32; spans.len() * width];
        for ((seq, &(off, _)), o) in batch.iter_mut().zip(spans).zip(out.chunks_exact_mut(width)) {
            let ki = k.narrow(1, off, 1)?.contiguous()?;
            let vi = v.narrow(1, off, 1)?.contiguous()?;
            let (kall, vall) = seq.cache.append(li, &ki, &vi)?;
            let first = window.map_or(0, |w| kall.dims()[1].saturating_sub(w));
            let qi = &q[off * width..(off + 1) * width];
            with_kv_view(&kall, |kv| {
                with_kv_view(&vall, |vv| {
                    attention::decode_attention(qi, kv, vv, (c.num_kv_heads, c.head_dim), first, o)
                })
            })??;
        }
        Tensor::from_vec(out, (1, spans.len(), width), &self.device)
    }

    /// Grouped-query attention of one sequence: `q [heads, t, hd]` over `k, v [kv_heads, L, hd]`;
    /// returns `[t, heads * hd]`. The `t` queries are the last `t` positions (causal within them); with a
    /// `window`, a query sees only keys less than `window` positions back.
    fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, window: Option<usize>) -> Result<Tensor> {
        let c = &self.cfg;
        let (_, t, hd) = q.dims3()?;
        let (k, v) = match window {
            // One query: only the last `window` keys matter.
            Some(w) if t == 1 && k.dim(1)? > w => {
                let total = k.dim(1)?;
                (k.narrow(1, total - w, w)?, v.narrow(1, total - w, w)?)
            }
            _ => (k.clone(), v.clone()),
        };
        let total = k.dim(1)?;
        let rep = c.num_heads / c.num_kv_heads;
        let q = q.contiguous()?.reshape((c.num_kv_heads, rep * t, hd))?;
        let scores = (q.matmul(&k.t()?)? / (hd as f64).sqrt())?;
        let scores = if t > 1 {
            let mask = attention_mask(t, total, window, &self.device)?;
            scores
                .reshape((c.num_kv_heads, rep, t, total))?
                .broadcast_add(&mask)?
                .reshape((c.num_kv_heads, rep * t, total))?
        } else {
            scores
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs.matmul(&v.contiguous()?)?; // [kv_heads, rep * t, hd]
        out.reshape((c.num_heads, t, hd))?
            .transpose(0, 1)?
            .reshape((t, c.num_heads * hd))
    }

    fn rope(&self, x: &Tensor, r: &Rope) -> Result<Tensor> {
        if self.cfg.rope_interleaved {
            candle_nn::rotary_emb::rope_i(x, &r.cos, &r.sin)
        } else {
            candle_nn::rotary_emb::rope(x, &r.cos, &r.sin)
        }
    }
}

fn load_layer(
    cfg: &LlamaConfig,
    store: &mut WeightStore,
    i: usize,
    device: &Device,
) -> std::result::Result<Layer, WeightsError> {
    let gemma = match cfg.arch {
        Arch::Llama => None,
        Arch::Gemma3 => Some(GemmaNorms {
            q: store.dense(Weight::QNorm(i), device)?,
            k: store.dense(Weight::KNorm(i), device)?,
            post_attn: store.dense(Weight::PostAttnNorm(i), device)?,
            post_ffn: store.dense(Weight::PostFfnNorm(i), device)?,
        }),
    };
    Ok(Layer {
        attn_norm: store.dense(Weight::AttnNorm(i), device)?,
        q: projection(store, Weight::Q(i), device)?,
        k: projection(store, Weight::K(i), device)?,
        v: projection(store, Weight::V(i), device)?,
        o: projection(store, Weight::O(i), device)?,
        ffn_norm: store.dense(Weight::FfnNorm(i), device)?,
        gate: projection(store, Weight::Gate(i), device)?,
        up: projection(store, Weight::Up(i), device)?,
        down: projection(store, Weight::Down(i), device)?,
        gemma,
    })
}

fn projection(
    store: &mut WeightStore,
    w: Weight,
    device: &Device,
) -> std::result::Result<Projection, WeightsError> {
    packed(store.matmul(w, device)?, &format!("{w:?}"), device)
}

fn packed(
    w: QMatMul,
    name: &str,
    device: &Device,
) -> std::result::Result<Projection, WeightsError> {
    Projection::new(w, device).map_err(|source| WeightsError::Tensor {
        name: name.into(),
        source,
    })
}

/// Runs `f` on a CPU `[kv_heads, tokens, head_dim]` f32 tensor's memory, in place.
fn with_kv_view<R>(t: &Tensor, f: impl FnOnce(KvView<'_>) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("decode attention runs on CPU tensors only");
    };
    let (stride, dims) = (layout.stride(), layout.dims());
    if dims.len() != 3 || stride[2] != 1 {
        candle_core::bail!(
            "decode attention needs [kv_heads, tokens, head_dim] with contiguous rows"
        );
    }
    Ok(f(KvView {
        data: cpu.as_slice::<f32>()?,
        offset: layout.start_offset(),
        head_stride: stride[0],
        token_stride: stride[1],
        tokens: dims[1],
    }))
}

fn f16_precision(t: &Tensor) -> Result<Tensor> {
    t.to_dtype(DType::F16)?.to_dtype(DType::F32)
}

/// Token ids, their positions, and each sequence's `(offset, length)` in the flattened step.
fn flatten(batch: &[SeqStep<'_>]) -> (Vec<u32>, Vec<u32>, Vec<(usize, usize)>) {
    let mut ids = Vec::new();
    let mut positions = Vec::new();
    let mut spans = Vec::with_capacity(batch.len());
    for seq in batch {
        let start = seq.cache.len();
        spans.push((ids.len(), seq.tokens.len()));
        ids.extend_from_slice(seq.tokens);
        positions.extend((start..start + seq.tokens.len()).map(|p| p as u32));
    }
    (ids, positions, spans)
}

/// `[t, total]` additive mask: query `i` (at position `total - t + i`) sees keys up to its own position,
/// and with a `window` only keys less than `window` positions back.
fn attention_mask(
    t: usize,
    total: usize,
    window: Option<usize>,
    device: &Device,
) -> Result<Tensor> {
    let past = total - t;
    let w = window.unwrap_or(usize::MAX);
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| {
            (0..total).map(move |j| {
                let q = past + i;
                if j <= q && q - j < w {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Tensor::from_vec(mask, (t, total), device)
}

/// Cosine and sine tables `[max_positions, head_dim / 2]` for RoPE base `theta`.
fn rope_tables(cfg: &LlamaConfig, theta: f32, device: &Device) -> Result<Rope> {
    let inv = cfg.rope_inv_freq(theta);
    let half = inv.len();
    let inv = Tensor::from_vec(inv, (1, half), device)?;
    let max = cfg.max_position_embeddings;
    let t = Tensor::arange(0u32, max as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((max, 1))?;
    let freqs = t.broadcast_mul(&inv)?;
    Ok(Rope {
        cos: freqs.cos()?.contiguous()?,
        sin: freqs.sin()?.contiguous()?,
    })
}

/// Index of the largest logit in the last dimension of a `[vocab]` row.
pub fn argmax(logits: &Tensor) -> Result<u32> {
    logits.argmax(D::Minus1)?.to_scalar::<u32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_is_causal_and_respects_the_sliding_window() {
        let m = attention_mask(2, 4, Some(2), &Device::Cpu)
            .and_then(|m| m.to_vec2::<f32>())
            .expect("mask");
        let inf = f32::NEG_INFINITY;
        // Queries at positions 2 and 3; each sees itself and one key back.
        assert_eq!(m, vec![vec![inf, 0.0, 0.0, inf], vec![inf, inf, 0.0, 0.0]]);
        let full = attention_mask(2, 4, None, &Device::Cpu)
            .and_then(|m| m.to_vec2::<f32>())
            .expect("mask");
        assert_eq!(
            full,
            vec![vec![0.0, 0.0, 0.0, inf], vec![0.0, 0.0, 0.0, 0.0]]
        );
    }
}
