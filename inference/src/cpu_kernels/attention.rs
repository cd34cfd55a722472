//! Attention of one new query token per sequence (a decode step) over that sequence's cached keys and
//! values, in one pass per head instead of a dozen small tensor ops per sequence and layer.
//!
//! The cache is read in place through [`KvView`] (candle's cache tensors are strided views of a growing
//! buffer), so nothing is copied. Grouped-query: query head `h` reads kv head `h / (heads / kv_heads)`.

/// A `[kv_heads, tokens, head_dim]` f32 tensor as strided memory (head_dim elements contiguous).
#[derive(Debug, Clone, Copy)]
pub struct KvView<'a> {
    /// The underlying buffer.
    pub data: &'a [f32],
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
    fn row(&self, head: usize, token: usize, head_dim: usize) -> &[f32] {
        let start = self.offset + head * self.head_stride + token * self.token_stride;
        &self.data[start..start + head_dim]
    }
}

/// `out[h] = softmax(q[h] · Kᵀ / √head_dim) · V` over tokens `first..` of the views, for every query head
/// `h`; `q` and `out` are `[heads, head_dim]`.
pub fn decode_attention(
    q: &[f32],
    k: KvView<'_>,
    v: KvView<'_>,
    (kv_heads, head_dim): (usize, usize),
    first: usize,
    out: &mut [f32],
) {
    assert_eq!(q.len(), out.len());
    assert!(k.tokens == v.tokens && first < k.tokens);
    let heads = q.len() / head_dim;
    let rep = heads / kv_heads;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let mut scores = vec![0f32; k.tokens - first];
    for h in 0..heads {
        let g = h / rep;
        let qh = &q[h * head_dim..(h + 1) * head_dim];
        let mut max = f32::NEG_INFINITY;
        for (s, t) in scores.iter_mut().zip(first..) {
            let kr = k.row(g, t, head_dim);
            *s = qh.iter().zip(kr).map(|(a, b)| a * b).sum::<f32>() * scale;
            max = max.max(*s);
        }
        let mut total = 0f32;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            total += *s;
        }
        let oh = &mut out[h * head_dim..(h + 1) * head_dim];
        oh.fill(0.0);
        for (s, t) in scores.iter().zip(first..) {
            let p = s / total;
            for (o, x) in oh.iter_mut().zip(v.row(g, t, head_dim)) {
                *o += p * x;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// Against the textbook formula on dense arrays, reading the cache through a strided view with spare
    /// capacity (as candle's cache buffers have), with a window start.
    #[test]
    fn decode_attention_matches_the_dense_formula() {
        let mut rng = StdRng::seed_from_u64(5);
        let (heads, kv_heads, hd, tokens, cap) = (6, 2, 8, 11, 16);
        let q: Vec<f32> = (0..heads * hd)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let buf = |rng: &mut StdRng| -> Vec<f32> {
            (0..kv_heads * cap * hd)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect()
        };
        let (kb, vb) = (buf(&mut rng), buf(&mut rng));
        let view = |data| KvView {
            data,
            offset: 0,
            head_stride: cap * hd,
            token_stride: hd,
            tokens,
        };
        for first in [0, 4] {
            let mut out = vec![0f32; heads * hd];
            decode_attention(&q, view(&kb), view(&vb), (kv_heads, hd), first, &mut out);
            for h in 0..heads {
                let g = h / (heads / kv_heads);
                let at = |b: &[f32], t: usize, i: usize| b[g * cap * hd + t * hd + i];
                let s: Vec<f32> = (first..tokens)
                    .map(|t| {
                        (0..hd).map(|i| q[h * hd + i] * at(&kb, t, i)).sum::<f32>()
                            / (hd as f32).sqrt()
                    })
                    .collect();
                let z: f32 = s.iter().map(|x| x.exp()).sum();
                for i in 0..hd {
                    let want: f32 = (first..tokens)
                        .map(|t| s[t - first].exp() / z * at(&vb, t, i))
                        .sum();
                    let got = out[h * hd + i];
                    assert!(
                        (got - want).abs() < 1e-5,
                        "h{h} i{i} first{first}: {got} vs {want}"
                    );
                }
            }
        }
    }
}
