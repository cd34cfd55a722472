//! Streaming detokenization cost per generated token: decoding the whole output again (what each step
//! did before `detok.rs`) against one incremental step, at 64, 512 and 2000 output tokens of clinical
//! text. Prints one JSON line per length.
//!
//! `cargo run --release -p anshin-inference --example detok_bench -- MODEL`

use std::time::Instant;

use anshin_inference::detok::Detokenizer;

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: detok_bench MODEL"))?;
    let tok =
        anshin_inference::loader::load(path.as_ref(), None, &candle_core::Device::Cpu)?.tokenizer;
    let text =
        "患者は65歳男性で、3日前からの発熱と湿性咳嗽を主訴に来院した。 The patient has fever. ";
    let ids = tok.encode(&text.repeat(120))?;
    for n in [64usize, 512, 2000].into_iter().filter(|&n| n <= ids.len()) {
        let ids = &ids[..n];
        let reps = 100;
        let t = Instant::now();
        for _ in 0..reps {
            std::hint::black_box(tok.decode(ids)?);
        }
        let whole = t.elapsed().as_secs_f64() / reps as f64;
        let mut d = Detokenizer::new();
        let t = Instant::now();
        for k in 1..=n {
            d.update(&tok, &ids[..k])?;
        }
        let step = t.elapsed().as_secs_f64() / n as f64;
        println!(
            "{{\"output_tokens\": {n}, \"whole_decode_us\": {:.1}, \"incremental_step_us\": {:.2}}}",
            whole * 1e6,
            step * 1e6
        );
    }
    Ok(())
}
