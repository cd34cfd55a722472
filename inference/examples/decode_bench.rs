//! Batched decode steps alone, in process: `STREAMS` sequences each prefilled with a 32-token prompt,
//! then 64 decode steps of all of them together (contexts 32 to 96, as in the HTTP benchmark's
//! 16-stream runs), repeated `ROUNDS` times on fresh caches. Prints the step times' percentiles and
//! the throughput. For before/after checks of what a 16-stream decode step costs (`forward_bench`
//! mixes it with prefill and single-stream decode); run the two builds in turns, since this machine's
//! 2-thread step times move between regimes run to run.
//!
//! `cargo run --release -p anshin-inference --example decode_bench -- MODEL.gguf [STREAMS] [ROUNDS]`

use std::time::Instant;

use anshin_inference::kv_cache::SeqCache;
use anshin_inference::model::{Llama, SeqStep};

/// Decode steps per round.
const STEPS: usize = 64;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .ok_or_else(|| anyhow::anyhow!("usage: decode_bench MODEL [STREAMS] [ROUNDS]"))?;
    let arg = |i: usize, d: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (streams, rounds) = (arg(2, 16), arg(3, 5).max(1));
    let device = anshin_inference::device::from_env()?;
    let m = anshin_inference::loader::load(path.as_ref(), None, &device)?.model;
    let layers = m.config().num_layers;
    let prompt: Vec<u32> = (0..32u32).map(|i| 100 + i % 1000).collect();
    let mut steps_ms = Vec::with_capacity(rounds * STEPS);
    // One logits buffer for every step, as the scheduler keeps one.
    let mut logits = Vec::new();
    for _ in 0..rounds {
        let mut caches: Vec<SeqCache> = (0..streams).map(|_| SeqCache::new(layers)).collect();
        for c in caches.iter_mut() {
            step(&m, &mut [(&prompt[..], c)], &mut logits)?;
        }
        for _ in 0..STEPS {
            let mut batch: Vec<(&[u32], &mut SeqCache)> =
                caches.iter_mut().map(|c| (&[198u32][..], c)).collect();
            let t = Instant::now();
            step(&m, &mut batch, &mut logits)?;
            steps_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let total_s: f64 = steps_ms.iter().sum::<f64>() / 1e3;
    steps_ms.sort_by(f64::total_cmp);
    let pct = |p: f64| steps_ms[((steps_ms.len() - 1) as f64 * p).round() as usize];
    println!(
        "{{\"threads\": {}, \"streams\": {streams}, \"steps\": {}, \"step_ms_p10\": {:.2}, \"step_ms_p50\": {:.2}, \"step_ms_p90\": {:.2}, \"tok_s\": {:.1}}}",
        rayon::current_num_threads(),
        steps_ms.len(),
        pct(0.1),
        pct(0.5),
        pct(0.9),
        (steps_ms.len() * streams) as f64 / total_s
    );
    Ok(())
}

fn step(
    m: &Llama,
    seqs: &mut [(&[u32], &mut SeqCache)],
    logits: &mut Vec<f32>,
) -> anyhow::Result<()> {
    let mut batch: Vec<SeqStep<'_>> = seqs
        .iter_mut()
        .map(|(tokens, cache)| SeqStep { tokens, cache })
        .collect();
    m.forward_into(&mut batch, logits)?;
    Ok(())
}
