//! The key/value cache of one sequence: one growable buffer per layer, written in place.
//!
//! A layer's buffer is either a plain host vector of `[tokens, kv_heads * head_dim]` f16 rows (the CPU path
//! of [`crate::model`] rounds keys and values to f16, as llama.cpp's default cache does, writes them
//! straight into it and attends over it in place; f16 halves the memory attention reads per step) or a candle
//! [`KvCache`] of `[kv_heads, tokens, head_dim]` tensors (the candle path, used on GPUs); the first append
//! decides. Buffers grow in blocks of [`BLOCK_TOKENS`] so that a decode step appends without copying the
//! past. The scheduler accounts for the memory of all caches together (see `scheduler::KvBudget`).

use candle_core::{Result, Tensor};
use candle_nn::kv_cache::KvCache;
use half::f16;
use half::slice::HalfFloatSliceExt;

use crate::cpu_kernels::attention::KvView;

/// Tokens by which a cache buffer grows when it is full.
pub const BLOCK_TOKENS: usize = 64;

/// Bytes one cached key or value element takes for a model on `device`: f16 host rows on the CPU, f32
/// candle tensors elsewhere (for the KV budget, see [`crate::config::LlamaConfig::kv_bytes_per_token`]).
pub fn bytes_per_value(device: &candle_core::Device) -> usize {
    if device.is_cpu() {
        std::mem::size_of::<f16>()
    } else {
        std::mem::size_of::<f32>()
    }
}

/// Keys and values of every layer for one sequence.
pub struct SeqCache {
    layers: Vec<LayerCache>,
}

enum LayerCache {
    Empty,
    Host(HostKv),
    Candle(KvCache),
}

/// Keys and values as `[tokens, width]` f16 rows, `width = kv_heads * head_dim`.
struct HostKv {
    width: usize,
    k: Vec<f16>,
    v: Vec<f16>,
}

impl HostKv {
    fn new(width: usize) -> Self {
        Self {
            width,
            k: Vec::new(),
            v: Vec::new(),
        }
    }

    fn tokens(&self) -> usize {
        self.k.len() / self.width
    }

    fn reserve(&mut self, values: usize) {
        let need = self.k.len() + values;
        if need > self.k.capacity() {
            let block = BLOCK_TOKENS * self.width;
            let extra = need.div_ceil(block) * block - self.k.len();
            self.k.reserve_exact(extra);
            self.v.reserve_exact(extra);
        }
    }

    fn append(&mut self, k: &[f32], v: &[f32]) {
        self.reserve(k.len());
        for (buf, rows) in [(&mut self.k, k), (&mut self.v, v)] {
            let at = buf.len();
            buf.resize(at + rows.len(), f16::ZERO);
            buf[at..].convert_from_f32_slice(rows);
        }
    }

    fn view<'a>(&self, data: &'a [f16], head_dim: usize) -> KvView<'a> {
        KvView {
            data,
            offset: 0,
            head_stride: head_dim,
            token_stride: self.width,
            tokens: self.tokens(),
        }
    }
}

impl SeqCache {
    /// An empty cache for a model with `num_layers` layers.
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: (0..num_layers).map(|_| LayerCache::Empty).collect(),
        }
    }

    /// Tokens already cached (the position of the next token).
    pub fn len(&self) -> usize {
        match self.layers.first() {
            Some(LayerCache::Host(h)) => h.tokens(),
            Some(LayerCache::Candle(c)) => c.current_seq_len(),
            Some(LayerCache::Empty) | None => 0,
        }
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `k`, `v` (`[kv_heads, new_tokens, head_dim]` tensors) to `layer`; returns all keys and
    /// values so far.
    pub fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let slot = self.layer_mut(layer)?;
        if let LayerCache::Empty = slot {
            *slot = LayerCache::Candle(KvCache::new(1, BLOCK_TOKENS));
        }
        match slot {
            LayerCache::Candle(cache) => cache.append(k, v),
            _ => candle_core::bail!("layer {layer} caches host rows, not tensors"),
        }
    }

    /// Appends `k`, `v` rows (`[new_tokens, width]`, already rounded to f16 precision, so storing them
    /// as f16 loses nothing) to `layer`'s host buffer.
    pub fn append_rows(&mut self, layer: usize, width: usize, k: &[f32], v: &[f32]) -> Result<()> {
        if k.len() != v.len() || width == 0 || !k.len().is_multiple_of(width) {
            candle_core::bail!(
                "key/value rows of {} and {} values for width {width}",
                k.len(),
                v.len()
            );
        }
        let slot = self.layer_mut(layer)?;
        if let LayerCache::Empty = slot {
            *slot = LayerCache::Host(HostKv::new(width));
        }
        match slot {
            LayerCache::Host(h) if h.width == width => {
                h.append(k, v);
                Ok(())
            }
            _ => candle_core::bail!("layer {layer} does not cache host rows of width {width}"),
        }
    }

    /// Whether this cache holds host rows (or nothing yet), the kind [`Self::copy_prefix_from`] copies.
    pub fn holds_host_rows(&self) -> bool {
        self.layers
            .iter()
            .all(|l| matches!(l, LayerCache::Empty | LayerCache::Host(_)))
    }

    /// Extends this cache to `upto` tokens with `donor`'s rows `self.len()..upto` in every layer, for a
    /// sequence whose first `upto` tokens are the donor's (see [`crate::prefix`]). Returns false, changing
    /// nothing, when the donor has fewer tokens, either cache holds candle tensors, or the layers differ.
    pub fn copy_prefix_from(&mut self, donor: &SeqCache, upto: usize) -> bool {
        let from = self.len();
        let fits = self.layers.len() == donor.layers.len()
            && upto > from
            && self
                .layers
                .iter()
                .zip(&donor.layers)
                .all(|pair| match pair {
                    (LayerCache::Empty, LayerCache::Host(d)) => from == 0 && d.tokens() >= upto,
                    (LayerCache::Host(h), LayerCache::Host(d)) => {
                        h.width == d.width && h.tokens() == from && d.tokens() >= upto
                    }
                    _ => false,
                });
        if !fits {
            return false;
        }
        for (mine, theirs) in self.layers.iter_mut().zip(&donor.layers) {
            let LayerCache::Host(d) = theirs else {
                continue; // unreachable: checked above
            };
            if let LayerCache::Empty = mine {
                *mine = LayerCache::Host(HostKv::new(d.width));
            }
            if let LayerCache::Host(h) = mine {
                let (a, b) = (from * d.width, upto * d.width);
                h.reserve(b - a);
                h.k.extend_from_slice(&d.k[a..b]);
                h.v.extend_from_slice(&d.v[a..b]);
            }
        }
        true
    }

    /// Keys and values of `layer`'s host buffer as views with heads `head_dim` wide.
    pub fn host_views(&self, layer: usize, head_dim: usize) -> Result<(KvView<'_>, KvView<'_>)> {
        match self.layers.get(layer) {
            Some(LayerCache::Host(h)) => Ok((h.view(&h.k, head_dim), h.view(&h.v, head_dim))),
            _ => candle_core::bail!("layer {layer} has no host key/value rows"),
        }
    }

    fn layer_mut(&mut self, layer: usize) -> Result<&mut LayerCache> {
        match self.layers.get_mut(layer) {
            Some(slot) => Ok(slot),
            None => candle_core::bail!("layer {layer} out of range for this cache"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_rows_grow_in_blocks_and_read_back_per_head() {
        let mut c = SeqCache::new(2);
        let (width, hd) = (4, 2);
        let k: Vec<f32> = (0..3 * width).map(|i| i as f32).collect();
        let f = |x: &[f16]| -> Vec<f32> { x.iter().map(|h| h.to_f32()).collect() };
        let v: Vec<f32> = k.iter().map(|x| -x).collect();
        c.append_rows(0, width, &k, &v).expect("append");
        c.append_rows(0, width, &k[..width], &v[..width])
            .expect("append");
        assert_eq!(c.len(), 4);
        let (kv, vv) = c.host_views(0, hd).expect("views");
        assert_eq!(kv.tokens, 4);
        // Token 1, head 1 is elements 6..8 of the rows; token 3 repeats token 0.
        assert_eq!(
            f(&kv.data[kv.token_stride + kv.head_stride..][..hd]),
            [6.0, 7.0]
        );
        assert_eq!(f(&vv.data[3 * vv.token_stride..][..hd]), [-0.0, -1.0]);
        assert!(c.append_rows(0, 3, &k[..3], &v[..3]).is_err());
        assert!(c.host_views(1, hd).is_err());
    }

    fn rows(tokens: usize, width: usize, seed: f32) -> Vec<f32> {
        (0..tokens * width).map(|i| seed + i as f32).collect()
    }

    #[test]
    fn a_prefix_copy_equals_appending_the_same_rows() {
        let (width, hd, layers) = (4, 2, 2);
        let mut donor = SeqCache::new(layers);
        let mut computed = SeqCache::new(layers);
        for l in 0..layers {
            let (k, v) = (rows(5, width, l as f32), rows(5, width, -(l as f32)));
            donor.append_rows(l, width, &k, &v).expect("append");
            let n = 3 * width;
            computed
                .append_rows(l, width, &k[..n], &v[..n])
                .expect("append");
        }
        // In two steps (0..2, then 2..3), as a sequence following a donor mid-prefill does.
        let mut copied = SeqCache::new(layers);
        assert!(copied.holds_host_rows());
        assert!(copied.copy_prefix_from(&donor, 2));
        assert!(copied.copy_prefix_from(&donor, 3));
        assert_eq!(copied.len(), 3);
        for l in 0..layers {
            let (a, b) = (copied.host_views(l, hd), computed.host_views(l, hd));
            let ((ak, av), (bk, bv)) = (a.expect("views"), b.expect("views"));
            assert_eq!((ak.data, av.data), (bk.data, bv.data), "layer {l}");
        }
        // More than the donor has, or a start that is not this cache's length, changes nothing.
        assert!(!copied.copy_prefix_from(&donor, 6));
        assert!(!copied.copy_prefix_from(&donor, 3));
        let mut other_model = SeqCache::new(layers + 1);
        assert!(!other_model.copy_prefix_from(&donor, 2));
        assert!(other_model.is_empty());
    }
}
