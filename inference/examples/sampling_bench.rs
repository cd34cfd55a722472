//! Sampling timing alone: µs per token to pick from SmolLM2's 49 152 logits, greedy and with
//! temperature / top-p / top-k as chat clients send them. Logits are drawn like a language model's: a
//! broad low mass and a few dozen likely tokens. For before/after checks of `sampling.rs`.
//!
//! `cargo run --release -p anshin-inference --example sampling_bench [REPEATS]`

use std::time::Instant;

use anshin_inference::sampling::{Sampler, SamplingParams};
use rand::{Rng, SeedableRng, rngs::StdRng};

fn main() {
    let repeats: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(300);
    let mut rng = StdRng::seed_from_u64(1);
    let rows: Vec<Vec<f32>> = (0..16)
        .map(|_| {
            let mut l: Vec<f32> = (0..49_152).map(|_| rng.random_range(-8.0..4.0)).collect();
            for _ in 0..40 {
                let i = rng.random_range(0..l.len());
                l[i] = rng.random_range(8.0..14.0);
            }
            l
        })
        .collect();
    let cases = [
        ("greedy", 0.0, 1.0, 0),
        ("temperature 0.7, top_p 0.9", 0.7, 0.9, 0),
        ("temperature 1.0, top_p 1.0", 1.0, 1.0, 0),
        ("temperature 0.7, top_k 40", 0.7, 1.0, 40),
    ];
    for (name, temperature, top_p, top_k) in cases {
        let mut s = Sampler::new(SamplingParams {
            temperature,
            top_p,
            top_k,
            seed: Some(7),
        });
        let mut us: Vec<f64> = (0..repeats)
            .map(|i| {
                let t = Instant::now();
                std::hint::black_box(s.sample(&rows[i % rows.len()]));
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        us.sort_by(f64::total_cmp);
        println!(
            "{name:>28}: min {:>7.1} µs, median {:>7.1} µs per token",
            us[0],
            us[repeats / 2]
        );
    }
}
