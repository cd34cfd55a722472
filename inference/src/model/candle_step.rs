//! The forward step as candle tensor ops: the path on GPUs, and the reference the CPU path
//! ([`super::host_step`]) is tested against (so it uses none of the CPU kernels that path runs).

use candle_core::{DType, Device, Result, Tensor};

use super::{Layer, Llama, Rope, SeqStep, flatten};
use crate::config::Arch;

impl Llama {
    /// [`Llama::forward`] as candle tensor ops.
    pub(super) fn forward_tensors(&self, batch: &mut [SeqStep<'_>]) -> Result<Tensor> {
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
        let mut outs = Vec::with_capacity(batch.len());
        for (seq, &(off, len)) in batch.iter_mut().zip(spans) {
            let qi = q.narrow(1, off, len)?;
            let ki = k.narrow(1, off, len)?.contiguous()?;
            let vi = v.narrow(1, off, len)?.contiguous()?;
            let (kall, vall) = seq.cache.append(li, &ki, &vi)?;
            outs.push(attend(
                &qi,
                &kall,
                &vall,
                (c.num_heads, c.num_kv_heads),
                window,
            )?);
        }
        let out = Tensor::cat(&outs, 0)?.unsqueeze(0)?;
        layer.o.forward(&out)
    }

    fn rope(&self, x: &Tensor, r: &Rope) -> Result<Tensor> {
        if self.cfg.rope_interleaved {
            candle_nn::rotary_emb::rope_i(x, &r.cos, &r.sin)
        } else {
            candle_nn::rotary_emb::rope(x, &r.cos, &r.sin)
        }
    }
}

/// Grouped-query attention of one sequence: `q [heads, t, hd]` over `k, v [kv_heads, L, hd]`;
/// returns `[t, heads * hd]`. The `t` queries are the last `t` positions (causal within them); with a
/// `window`, a query sees only keys less than `window` positions back.
pub(super) fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    (num_heads, num_kv_heads): (usize, usize),
    window: Option<usize>,
) -> Result<Tensor> {
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
    let rep = num_heads / num_kv_heads;
    let q = q.contiguous()?.reshape((num_kv_heads, rep * t, hd))?;
    let scores = (q.matmul(&k.t()?)? / (hd as f64).sqrt())?;
    let scores = if t > 1 {
        let mask = attention_mask(t, total, window, q.device())?;
        scores
            .reshape((num_kv_heads, rep, t, total))?
            .broadcast_add(&mask)?
            .reshape((num_kv_heads, rep * t, total))?
    } else {
        scores
    };
    let probs = candle_nn::ops::softmax_last_dim(&scores)?;
    let out = probs.matmul(&v.contiguous()?)?; // [kv_heads, rep * t, hd]
    out.reshape((num_heads, t, hd))?
        .transpose(0, 1)?
        .reshape((t, num_heads * hd))
}

fn f16_precision(t: &Tensor) -> Result<Tensor> {
    t.to_dtype(DType::F16)?.to_dtype(DType::F32)
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
