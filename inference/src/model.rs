//! The Llama-family decoder, run over a batch of sequences that sit at different positions.
//!
//! All tokens of a step (prompt chunks of new sequences and the one new token of each decoding sequence)
//! are flattened into one `[1, N, hidden]` activation, so every projection reads its weights once per
//! step. Only attention is per sequence: each one attends over its own [`SeqCache`].
//!
//! Gemma 3 runs through the same code with its extra pieces switched on by [`Arch::Gemma3`]: scaled
//! embeddings, per-head q/k norms, post-attention and post-MLP norms, GELU, and sliding-window local layers
//! with their own RoPE tables.
//!
//! On the CPU a step runs in [`host_step`] over plain f32 buffers with [`crate::cpu_kernels`] (no tensor
//! per op, keys and values written straight into the cache); elsewhere it runs in [`candle_step`] as
//! candle tensor ops.

mod candle_step;
mod host_step;
mod split;

use candle_core::quantized::QMatMul;
use candle_core::{D, DType, Device, Result, Tensor};

use crate::config::{Arch, LlamaConfig};
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
    host: Option<host_step::HostParams>,
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
        let host = match device.is_cpu() {
            true => Some(
                host_step::HostParams::new(&layers, &norm, &global_rope, &local_rope).map_err(
                    |source| WeightsError::Tensor {
                        name: "norm weights and rope tables".into(),
                        source,
                    },
                )?,
            ),
            false => None,
        };
        Ok(Self {
            cfg,
            embed,
            layers,
            norm,
            lm_head,
            global_rope,
            local_rope,
            host,
            device: device.clone(),
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// Whether [`Self::forward`] keeps keys and values as host rows (the CPU path), which sequences can
    /// share (see [`crate::prefix`]).
    pub fn caches_host_rows(&self) -> bool {
        self.host.is_some()
    }

    /// Runs one step for every sequence in `batch`; returns logits `[batch, vocab]` of each sequence's
    /// last new token. Each cache grows by its sequence's token count.
    pub fn forward(&self, batch: &mut [SeqStep<'_>]) -> Result<Tensor> {
        match &self.host {
            Some(host) => {
                let mut logits = Vec::new();
                let vocab = host_step::forward_into(self, host, batch, &mut logits)?;
                let rows = logits.len() / vocab.max(1);
                Tensor::from_vec(logits, (rows, vocab), &self.device)
            }
            None => self.forward_tensors(batch),
        }
    }

    /// [`Self::forward`] with the logits written to `logits` as `[batch, vocab]` rows (resized to fit);
    /// returns `vocab`. A caller that passes the same buffer every step (the scheduler) spares the
    /// allocation, zeroing and copy of a vocabulary-wide row per sequence that a tensor costs (at 16
    /// streams, 3 MB of each per step on the scheduler thread while the kernel threads wait).
    pub fn forward_into(&self, batch: &mut [SeqStep<'_>], logits: &mut Vec<f32>) -> Result<usize> {
        match &self.host {
            Some(host) => host_step::forward_into(self, host, batch, logits),
            None => {
                let t = self.forward_tensors(batch)?;
                let (_, vocab) = t.dims2()?;
                *logits = t.flatten_all()?.to_vec1::<f32>()?;
                Ok(vocab)
            }
        }
    }

    /// [`Self::forward`] through candle tensor ops, as on a GPU, whatever the device: the reference the
    /// CPU path is tested against. A cache must be used with one of the two paths only.
    pub fn forward_with_tensor_ops(&self, batch: &mut [SeqStep<'_>]) -> Result<Tensor> {
        self.forward_tensors(batch)
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
