//! The key/value cache of one sequence: one growable buffer per layer, written in place.
//!
//! Buffers grow in blocks of [`BLOCK_TOKENS`] so that a decode step appends without copying the past.
//! The scheduler accounts for the memory of all caches together (see `scheduler::KvBudget`).

use candle_core::{Result, Tensor};
use candle_nn::kv_cache::KvCache;

/// Tokens by which a cache buffer grows when it is full.
pub const BLOCK_TOKENS: usize = 64;

/// Keys and values of every layer for one sequence; layout per layer `[kv_heads, tokens, head_dim]`.
pub struct SeqCache {
    layers: Vec<KvCache>,
}

impl SeqCache {
    /// An empty cache for a model with `num_layers` layers.
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: (0..num_layers)
                .map(|_| KvCache::new(1, BLOCK_TOKENS))
                .collect(),
        }
    }

    /// Tokens already cached (the position of the next token).
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, |l| l.current_seq_len())
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `k`, `v` (`[kv_heads, new_tokens, head_dim]`) to `layer`; returns all keys and values so far.
    pub fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        match self.layers.get_mut(layer) {
            Some(cache) => cache.append(k, v),
            None => candle_core::bail!("layer {layer} out of range for this cache"),
        }
    }
}
