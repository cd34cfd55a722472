//! The Llama-family decoder, run over a batch of sequences that sit at different positions.
//!
//! All tokens of a step (prompt chunks of new sequences and the one new token of each decoding sequence)
//! are flattened into one `[1, N, hidden]` activation, so every projection reads its weights once per
//! step. Only attention is per sequence: each one attends over its own [`SeqCache`].

use candle_core::quantized::QMatMul;
use candle_core::{D, DType, Device, Module, Result, Tensor};

use crate::config::LlamaConfig;
use crate::kv_cache::SeqCache;
use crate::weights::{Weight, WeightStore, WeightsError};

struct Layer {
    attn_norm: Tensor,
    q: QMatMul,
    k: QMatMul,
    v: QMatMul,
    o: QMatMul,
    ffn_norm: Tensor,
    gate: QMatMul,
    up: QMatMul,
    down: QMatMul,
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
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: QMatMul,
    cos: Tensor,
    sin: Tensor,
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
            layers.push(Layer {
                attn_norm: store.dense(Weight::AttnNorm(i), device)?,
                q: store.matmul(Weight::Q(i), device)?,
                k: store.matmul(Weight::K(i), device)?,
                v: store.matmul(Weight::V(i), device)?,
                o: store.matmul(Weight::O(i), device)?,
                ffn_norm: store.dense(Weight::FfnNorm(i), device)?,
                gate: store.matmul(Weight::Gate(i), device)?,
                up: store.matmul(Weight::Up(i), device)?,
                down: store.matmul(Weight::Down(i), device)?,
            });
        }
        let embed = store.dense(Weight::Embed, device)?;
        let lm_head = if !cfg.tie_word_embeddings && store.has(Weight::LmHead) {
            store.matmul(Weight::LmHead, device)?
        } else {
            QMatMul::Tensor(embed.clone())
        };
        let norm = store.dense(Weight::FinalNorm, device)?;
        let (cos, sin) = rope_tables(&cfg, device).map_err(|source| WeightsError::Tensor {
            name: "rope tables".into(),
            source,
        })?;
        Ok(Self {
            cfg,
            embed,
            layers,
            norm,
            lm_head,
            cos,
            sin,
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
        let cos = self.cos.index_select(&pos, 0)?;
        let sin = self.sin.index_select(&pos, 0)?;
        let mut x = self.embed.index_select(&ids, 0)?.unsqueeze(0)?;
        for (li, layer) in self.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, self.cfg.rms_norm_eps as f32)?;
            let attn = self.attention(li, layer, &h, &cos, &sin, batch, &spans)?;
            x = (x + attn)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, self.cfg.rms_norm_eps as f32)?;
            let ffn = (candle_nn::ops::silu(&layer.gate.forward(&h)?)? * layer.up.forward(&h)?)?;
            x = (x + layer.down.forward(&ffn)?)?;
        }
        let last: Vec<u32> = spans.iter().map(|&(o, t)| (o + t - 1) as u32).collect();
        let last = Tensor::from_vec(last, spans.len(), &self.device)?;
        let x = x.squeeze(0)?.index_select(&last, 0)?;
        let x = candle_nn::ops::rms_norm(&x, &self.norm, self.cfg.rms_norm_eps as f32)?;
        self.lm_head.forward(&x)
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        li: usize,
        layer: &Layer,
        h: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        batch: &mut [SeqStep<'_>],
        spans: &[(usize, usize)],
    ) -> Result<Tensor> {
        let c = &self.cfg;
        let n = h.dim(1)?;
        let heads = |t: Tensor, nh: usize| {
            t.reshape((1, n, nh, c.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = self
            .rope(&heads(layer.q.forward(h)?, c.num_heads)?, cos, sin)?
            .squeeze(0)?;
        let k = self
            .rope(&heads(layer.k.forward(h)?, c.num_kv_heads)?, cos, sin)?
            .squeeze(0)?;
        let v = heads(layer.v.forward(h)?, c.num_kv_heads)?.squeeze(0)?;
        let mut outs = Vec::with_capacity(batch.len());
        for (seq, &(off, len)) in batch.iter_mut().zip(spans) {
            let qi = q.narrow(1, off, len)?;
            let ki = k.narrow(1, off, len)?.contiguous()?;
            let vi = v.narrow(1, off, len)?.contiguous()?;
            let (kall, vall) = seq.cache.append(li, &ki, &vi)?;
            outs.push(self.attend(&qi, &kall, &vall)?);
        }
        let out = Tensor::cat(&outs, 0)?.unsqueeze(0)?;
        layer.o.forward(&out)
    }

    /// Grouped-query attention of one sequence: `q [heads, t, hd]` over `k, v [kv_heads, L, hd]`;
    /// returns `[t, heads * hd]`. The `t` queries are the last `t` positions (causal within them).
    fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let c = &self.cfg;
        let (_, t, hd) = q.dims3()?;
        let total = k.dim(1)?;
        let rep = c.num_heads / c.num_kv_heads;
        let q = q.contiguous()?.reshape((c.num_kv_heads, rep * t, hd))?;
        let scores = (q.matmul(&k.t()?)? / (hd as f64).sqrt())?;
        let scores = if t > 1 {
            let mask = causal_mask(t, total, &self.device)?;
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

    fn rope(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        if self.cfg.rope_interleaved {
            candle_nn::rotary_emb::rope_i(x, cos, sin)
        } else {
            candle_nn::rotary_emb::rope(x, cos, sin)
        }
    }
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

/// `[t, total]` additive mask: query `i` (at position `total - t + i`) sees keys up to its own position.
fn causal_mask(t: usize, total: usize, device: &Device) -> Result<Tensor> {
    let past = total - t;
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if j <= past + i {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Tensor::from_vec(mask, (t, total), device)
}

/// Cosine and sine tables `[max_positions, head_dim / 2]`.
fn rope_tables(cfg: &LlamaConfig, device: &Device) -> Result<(Tensor, Tensor)> {
    let inv = cfg.rope_inv_freq();
    let half = inv.len();
    let inv = Tensor::from_vec(inv, (1, half), device)?;
    let max = cfg.max_position_embeddings;
    let t = Tensor::arange(0u32, max as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((max, 1))?;
    let freqs = t.broadcast_mul(&inv)?;
    Ok((freqs.cos()?.contiguous()?, freqs.sin()?.contiguous()?))
}

/// Index of the largest logit in the last dimension of a `[vocab]` row.
pub fn argmax(logits: &Tensor) -> Result<u32> {
    logits.argmax(D::Minus1)?.to_scalar::<u32>()
}
