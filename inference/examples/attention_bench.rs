//! Attention timing alone, as one decode step reads it: S sequences (one query token each, C cached
//! tokens) on SmolLM2-135M's shape (30 layers, 9 query heads over 3 kv heads, 64 wide), every layer's
//! cache a buffer of its own in the host cache's `[tokens, kv_heads, head_dim]` f16 layout, so that
//! beyond a few hundred tokens the keys and values come from memory as in the server. Prints the fastest
//! and the median µs per step (all layers), and the cache bytes a step reads; for before/after checks
//! of `cpu_kernels::attention`.
//!
//! `cargo run --release -p anshin-inference --example attention_bench [STREAMS] [CONTEXT] [STEPS]`

use std::time::Instant;

use anshin_inference::cpu_kernels::attention::{KvView, Query, attention};
use half::f16;

const LAYERS: usize = 30;
const HEADS: usize = 9;
const KV_HEADS: usize = 3;
const HEAD_DIM: usize = 64;

fn view(data: &[f16], tokens: usize) -> KvView<'_> {
    KvView {
        data,
        offset: 0,
        head_stride: HEAD_DIM,
        token_stride: KV_HEADS * HEAD_DIM,
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
    let (streams, context, steps) = (arg(1, 16), arg(2, 80), arg(3, 50));
    let width = KV_HEADS * HEAD_DIM;
    let fill = |seed: usize| -> Vec<f16> {
        (0..context * width)
            .map(|i| f16::from_f32(((i * 7919 + seed * 31) % 1000) as f32 / 1000.0 - 0.5))
            .collect()
    };
    // caches[layer][sequence] = (keys, values).
    let caches: Vec<Vec<(Vec<f16>, Vec<f16>)>> = (0..LAYERS)
        .map(|l| {
            (0..streams)
                .map(|s| (fill(l * 1000 + s), fill(l * 1000 + s + 500)))
                .collect()
        })
        .collect();
    let q: Vec<f32> = (0..streams * HEADS * HEAD_DIM)
        .map(|i| ((i * 31 % 97) as f32 - 48.0) / 50.0)
        .collect();
    let mut out = vec![0f32; q.len()];
    let mut us: Vec<f64> = (0..steps)
        .map(|_| {
            let t = Instant::now();
            for layer in &caches {
                let queries: Vec<Query<'_>> = layer
                    .iter()
                    .map(|(k, v)| Query {
                        k: view(k, context),
                        v: view(v, context),
                        keys: 0..context,
                    })
                    .collect();
                attention(&q, &queries, (KV_HEADS, HEAD_DIM), &mut out);
            }
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    us.sort_by(f64::total_cmp);
    let bytes = LAYERS * streams * context * width * 2 * 2;
    println!(
        "{{\"streams\": {streams}, \"context\": {context}, \"layers\": {LAYERS}, \"cache_mb_per_step\": {:.1}, \"min_us\": {:.0}, \"median_us\": {:.0}}}",
        bytes as f64 / 1e6,
        us[0],
        us[steps / 2]
    );
}
