//! In-process forward-pass timing, without HTTP: prefill of a long prompt, single-stream decode, and
//! batched decode of N streams, and one step that prefills N short prompts together. For profiling (`perf record -g`) and quick before/after checks; the
//! comparison with llama.cpp is `inference/scripts/bench.sh`.
//!
//! `cargo run --release -p anshin-inference --example forward_bench -- MODEL.gguf [PROMPT_TOKENS] [DECODE] [STREAMS]`
//! (on the GPU when built with `--features cuda`; `ANSHIN_DEVICE=cpu` keeps it on the CPU).

use std::time::Instant;

use anshin_inference::kv_cache::SeqCache;
use anshin_inference::model::{Llama, SeqStep};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .ok_or_else(|| anyhow::anyhow!("usage: forward_bench MODEL [P] [D] [S]"))?;
    let arg = |i: usize, d: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (prompt_len, decode, streams) = (arg(2, 256), arg(3, 64), arg(4, 16));
    let device = anshin_inference::device::from_env()?;
    let m = anshin_inference::loader::load(path.as_ref(), None, &device)?.model;
    let layers = m.config().num_layers;
    let prompt: Vec<u32> = (0..prompt_len as u32).map(|i| 100 + i % 1000).collect();

    let mut cache = SeqCache::new(layers);
    let t = Instant::now();
    step(&m, &mut [(&prompt[..], &mut cache)])?;
    let prefill = prompt_len as f64 / t.elapsed().as_secs_f64();

    let t = Instant::now();
    for _ in 0..decode {
        step(&m, &mut [(&[198u32][..], &mut cache)])?;
    }
    let single = decode as f64 / t.elapsed().as_secs_f64();

    let mut caches: Vec<SeqCache> = (0..streams).map(|_| SeqCache::new(layers)).collect();
    for c in caches.iter_mut() {
        step(&m, &mut [(&prompt[..32], c)])?;
    }
    let t = Instant::now();
    for _ in 0..decode {
        let mut batch: Vec<(&[u32], &mut SeqCache)> =
            caches.iter_mut().map(|c| (&[198u32][..], c)).collect();
        step(&m, &mut batch)?;
    }
    let batched = (decode * streams) as f64 / t.elapsed().as_secs_f64();

    // Short distinct prompts arriving together (the benchmark's 16 clinical prompts of ≈ 45 tokens): one
    // step prefills them all; the best of three, each on fresh caches.
    let short = 45;
    let prompts: Vec<Vec<u32>> = (0..streams as u32)
        .map(|s| {
            (0..short as u32)
                .map(|i| 100 + (i * 7 + s * 13) % 1000)
                .collect()
        })
        .collect();
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let mut caches: Vec<SeqCache> = (0..streams).map(|_| SeqCache::new(layers)).collect();
        let mut batch: Vec<(&[u32], &mut SeqCache)> = prompts
            .iter()
            .zip(caches.iter_mut())
            .map(|(p, c)| (&p[..], c))
            .collect();
        let t = Instant::now();
        step(&m, &mut batch)?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    let batched_prefill = (short * streams) as f64 / best;
    println!(
        "{{\"device\": \"{}\", \"threads\": {}, \"prefill_tok_s\": {prefill:.1}, \"decode_tok_s\": {single:.1}, \"streams\": {streams}, \"batched_decode_tok_s\": {batched:.1}, \"batched_prefill_45_tok_s\": {batched_prefill:.1}}}",
        if device.is_cpu() { "cpu" } else { "cuda" },
        rayon::current_num_threads()
    );
    Ok(())
}

fn step(m: &Llama, seqs: &mut [(&[u32], &mut SeqCache)]) -> anyhow::Result<()> {
    let mut batch: Vec<SeqStep<'_>> = seqs
        .iter_mut()
        .map(|(tokens, cache)| SeqStep { tokens, cache })
        .collect();
    m.forward(&mut batch)?.to_vec2::<f32>()?;
    Ok(())
}
