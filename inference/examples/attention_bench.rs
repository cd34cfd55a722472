//! Attention timing alone: one decode step of S sequences (one query token each, C cached tokens) on
//! SmolLM2-135M's head shape (9 query heads over 3 kv heads, 64 wide), and one prompt chunk. The fastest
//! and the median µs per call; for before/after checks of `cpu_kernels::attention`.
//!
//! `cargo run --release -p anshin-inference --example attention_bench [STREAMS] [CONTEXT] [REPEATS]`

use std::time::Instant;

use anshin_inference::cpu_kernels::attention::{KvView, Query, attention};
use half::f16;

fn view(data: &[f16], tokens: usize, cap: usize, hd: usize) -> KvView<'_> {
    KvView {
        data,
        offset: 0,
        head_stride: cap * hd,
        token_stride: hd,
        tokens,
    }
}

fn main() {
    let arg = |i: usize, d: usize| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(d)
    };
    let (streams, context, repeats) = (arg(1, 16), arg(2, 80), arg(3, 2000));
    let (heads, kv_heads, hd) = (9, 3, 64);
    let cap = context.max(256);
    let cache: Vec<Vec<f16>> = (0..streams)
        .map(|s| {
            (0..kv_heads * cap * hd)
                .map(|i| f16::from_f32(((i * 7919 + s * 31) % 1000) as f32 / 1000.0 - 0.5))
                .collect()
        })
        .collect();
    let decode: Vec<Query<'_>> = cache
        .iter()
        .map(|c| Query {
            k: view(c, context, cap, hd),
            v: view(c, context, cap, hd),
            keys: 0..context,
        })
        .collect();
    let prompt: Vec<Query<'_>> = (1..=context)
        .map(|end| Query {
            k: view(&cache[0], context, cap, hd),
            v: view(&cache[0], context, cap, hd),
            keys: 0..end,
        })
        .collect();
    for (name, queries) in [("decode", &decode), ("prompt", &prompt)] {
        let q: Vec<f32> = (0..queries.len() * heads * hd)
            .map(|i| ((i * 31 % 97) as f32 - 48.0) / 50.0)
            .collect();
        let mut out = vec![0f32; q.len()];
        let n = (repeats * 16 / queries.len()).max(10);
        let mut us: Vec<f64> = (0..n)
            .map(|_| {
                let t = Instant::now();
                attention(&q, queries, (kv_heads, hd), &mut out);
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        us.sort_by(f64::total_cmp);
        println!(
            "{name}: {} queries × {context} keys: min {:.1} µs, median {:.1} µs",
            queries.len(),
            us[0],
            us[n / 2]
        );
    }
}
