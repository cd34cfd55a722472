//! The tiny fixture model in every layout gives the same greedy tokens, and batching never changes them.

use anshin_inference::fixture;
use anshin_inference::kv_cache::SeqCache;
use anshin_inference::loader::{self, LoadedModel};
use anshin_inference::model::{Llama, SeqStep};
use anshin_inference::sampling::greedy;
use candle_core::Device;
use candle_core::quantized::GgmlDType;

fn greedy_tokens(model: &Llama, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut cache = SeqCache::new(model.config().num_layers);
    let mut out = Vec::new();
    let mut input = prompt.to_vec();
    for _ in 0..n {
        let logits = model
            .forward(&mut [SeqStep {
                tokens: &input,
                cache: &mut cache,
            }])
            .expect("forward");
        let row = logits.to_vec2::<f32>().expect("logits")[0].clone();
        let t = greedy(&row);
        out.push(t);
        input = vec![t];
    }
    out
}

fn load(path: &std::path::Path) -> LoadedModel {
    loader::load(path, None, &Device::Cpu).expect("fixture loads")
}

const PROMPT: &str = "患者は三日前から発熱と咳嗽を認める。";

#[test]
fn hf_single_sharded_and_gguf_f32_give_the_same_greedy_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let single = load(&fixture::write_hf(&dir.path().join("single"), false).expect("hf"));
    let sharded = load(&fixture::write_hf(&dir.path().join("sharded"), true).expect("sharded"));
    let gguf = load(&fixture::write_gguf(&dir.path().join("gguf"), GgmlDType::F32).expect("gguf"));
    let prompt = single.tokenizer.encode(PROMPT).expect("encode");
    assert_eq!(
        prompt,
        gguf.tokenizer.encode(PROMPT).expect("encode"),
        "GGUF-built tokenizer differs"
    );
    let a = greedy_tokens(&single.model, &prompt, 24);
    assert_eq!(a, greedy_tokens(&sharded.model, &prompt, 24));
    assert_eq!(
        a,
        greedy_tokens(&gguf.model, &prompt, 24),
        "GGUF (interleaved RoPE) diverges from HF"
    );
    let distinct: std::collections::HashSet<_> = a.iter().collect();
    assert!(distinct.len() > 3, "fixture output is degenerate: {a:?}");
}

#[test]
fn quantized_gguf_loads_and_decodes_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    for dtype in [GgmlDType::Q8_0, GgmlDType::Q4_0, GgmlDType::Q4_1] {
        let m = load(
            &fixture::write_gguf(&dir.path().join(format!("{dtype:?}")), dtype).expect("gguf"),
        );
        let prompt = m.tokenizer.encode(PROMPT).expect("encode");
        let toks = greedy_tokens(&m.model, &prompt, 8);
        assert_eq!(toks.len(), 8);
        assert!(
            m.tokenizer
                .decode(&prompt)
                .expect("decode")
                .contains("発熱")
        );
    }
}

#[test]
fn batched_forward_matches_one_sequence_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    for path in [
        fixture::write_hf(&dir.path().join("hf"), false).expect("hf"),
        fixture::write_gguf(&dir.path().join("q8"), GgmlDType::Q8_0).expect("gguf"),
    ] {
        let m = load(&path);
        // Twelve prompts: from 6 sequences per kernel thread the CPU path runs the batch in parts, one
        // per thread (`model::split`), so this also holds the split to one-at-a-time decoding.
        let prompts: Vec<Vec<u32>> = [
            "頭痛があります。",
            "血圧 142/88 mmHg、脈拍 96 回/分",
            "Take one tablet",
            "発熱 38.2℃、咳嗽あり",
            "既往歴：高血圧、糖尿病",
            "アムロジピン 5mg 1日1回",
            "Patient reports chest pain",
            "腹痛と嘔気が続いています。",
            "HbA1c 7.2%",
            "明日の外来を予約したい",
            "処方箋の再発行について",
            "SpO2 94% on room air",
        ]
        .iter()
        .map(|p| m.tokenizer.encode(p).expect("encode"))
        .collect();
        let alone: Vec<Vec<u32>> = prompts
            .iter()
            .map(|p| greedy_tokens(&m.model, p, 12))
            .collect();
        let together = batched_greedy(&m.model, &prompts, 12);
        assert_eq!(alone, together, "{}", path.display());
    }
}

/// Greedy decoding of all prompts in one batch, prompts of different lengths prefilled together.
fn batched_greedy(model: &Llama, prompts: &[Vec<u32>], n: usize) -> Vec<Vec<u32>> {
    let mut caches: Vec<SeqCache> = prompts
        .iter()
        .map(|_| SeqCache::new(model.config().num_layers))
        .collect();
    let mut inputs: Vec<Vec<u32>> = prompts.to_vec();
    let mut outs = vec![Vec::new(); prompts.len()];
    for _ in 0..n {
        let mut batch: Vec<SeqStep<'_>> = inputs
            .iter()
            .zip(caches.iter_mut())
            .map(|(t, c)| SeqStep {
                tokens: t,
                cache: c,
            })
            .collect();
        let rows = model
            .forward(&mut batch)
            .expect("forward")
            .to_vec2::<f32>()
            .expect("logits");
        for (i, row) in rows.iter().enumerate() {
            let t = greedy(row);
            outs[i].push(t);
            inputs[i] = vec![t];
        }
    }
    outs
}

/// Logits of the model's CPU path and of its candle tensor-op path (the GPU path) over a prompt in two
/// chunks and decode steps; with f32 weights nothing is quantized to int8, so they agree up to the f16
/// rounding of queries that only the CPU path does (as llama.cpp does).
fn largest_path_difference(model: &Llama, prompt: &[u32]) -> f32 {
    let layers = model.config().num_layers;
    let (mut host, mut tensors) = (SeqCache::new(layers), SeqCache::new(layers));
    let (head, tail) = prompt.split_at(prompt.len() / 2);
    let mut inputs = vec![head.to_vec(), tail.to_vec()];
    let mut worst = 0f32;
    for step in 0..6 {
        let input = inputs[step].clone();
        let row = |l: candle_core::Tensor| l.to_vec2::<f32>().expect("logits").swap_remove(0);
        let a = row(model
            .forward(&mut [SeqStep {
                tokens: &input,
                cache: &mut host,
            }])
            .expect("cpu path"));
        let b = row(model
            .forward_with_tensor_ops(&mut [SeqStep {
                tokens: &input,
                cache: &mut tensors,
            }])
            .expect("tensor ops"));
        worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(worst, f32::max);
        if step >= 1 {
            inputs.push(vec![greedy(&a)]);
        }
    }
    worst
}

#[test]
fn cpu_path_matches_tensor_ops_on_f32_weights_in_both_rope_layouts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hf = load(&fixture::write_hf(&dir.path().join("hf"), false).expect("hf"));
    let gguf = load(&fixture::write_gguf(&dir.path().join("gguf"), GgmlDType::F32).expect("gguf"));
    let prompt = hf.tokenizer.encode(PROMPT).expect("encode");
    for (name, m) in [("hf", &hf), ("gguf", &gguf)] {
        let worst = largest_path_difference(&m.model, &prompt);
        assert!(worst < 1e-2, "{name}: logits differ by up to {worst}");
    }
}
