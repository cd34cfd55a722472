//! A tiny Llama model for tests and examples, written to disk in both layouts from the same random
//! weights (fixed seed): a Hugging Face directory (optionally sharded) and a GGUF file (F32 or quantized).
//! Its tokenizer is a small byte-level BPE trained with `tokenizers` on Japanese clinical sentences.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainer};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

/// Japanese clinical sentences the fixture tokenizer is trained on.
pub const CORPUS: &[&str] = &[
    "患者は六十五歳の男性で、三日前から発熱と咳嗽を認める。",
    "既往歴として高血圧症と二型糖尿病があり、アムロジピンとメトホルミンを内服中。",
    "血液検査ではCRP 8.2 mg/dL、白血球数 12,300/μLと炎症反応の上昇を認めた。",
    "胸部X線写真で右下肺野に浸潤影を認め、市中肺炎と診断した。",
    "セフトリアキソン点滴静注を開始し、解熱傾向を確認した。",
    "頭痛、嘔気、めまいの訴えがあり、頭部CTを施行したが出血は認めなかった。",
    "アレルギー歴：ペニシリン系抗菌薬で発疹。",
    "血圧 142/88 mmHg、脈拍 96 回/分、体温 38.4 度、SpO2 95%。",
    "腹部は平坦・軟で、圧痛は認めない。腸蠕動音は正常。",
    "退院後は外来で経過観察とし、二週間後に再診予定。",
    "The patient reports chest pain and shortness of breath.",
    "Take one tablet twice a day after meals.",
];

/// Special tokens of the fixture tokenizer (ChatML markers).
pub const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// Why a fixture could not be written.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// Tokenizer training failed.
    #[error("training the fixture tokenizer: {0}")]
    Tokenizer(String),
    /// Tensor construction or serialisation failed.
    #[error("writing fixture tensors: {0}")]
    Tensor(#[from] candle_core::Error),
    /// Writing a file failed.
    #[error("writing fixture files: {0}")]
    Io(#[from] std::io::Error),
}

const HIDDEN: usize = 64;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = 16;
const FFN: usize = 128;
const LAYERS: usize = 2;
const MAX_POS: usize = 4096;

/// Trains the fixture tokenizer (deterministic for a fixed corpus).
pub fn train_tokenizer() -> Result<Tokenizer, FixtureError> {
    let err = |e: tokenizers::Error| FixtureError::Tokenizer(e.to_string());
    let specials: Vec<AddedToken> = SPECIALS
        .iter()
        .map(|s| AddedToken::from(*s, true))
        .collect();
    let trainer = BpeTrainer::builder()
        .vocab_size(600)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect::<HashSet<char>>())
        .build();
    let mut tok = Tokenizer::new(BPE::default());
    tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tok.with_decoder(Some(ByteLevel::new(false, true, true)));
    let mut trainer = TrainerWrapper::BpeTrainer(trainer);
    tok.train(&mut trainer, CORPUS.iter()).map_err(err)?;
    Ok(tok)
}

/// Deterministic pseudo-random weights of the tiny model, in Hugging Face names and orientation.
fn weights(vocab: usize, seed: u64) -> Result<HashMap<String, Tensor>, FixtureError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let dev = Device::Cpu;
    let mut mat = |rows: usize, cols: usize, scale: f32| -> Result<Tensor, FixtureError> {
        let v: Vec<f32> = (0..rows * cols)
            .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale)
            .collect();
        Ok(Tensor::from_vec(v, (rows, cols), &dev)?)
    };
    let mut w = HashMap::new();
    w.insert(
        "model.embed_tokens.weight".to_owned(),
        mat(vocab, HIDDEN, 1.0)?,
    );
    w.insert("lm_head.weight".to_owned(), mat(vocab, HIDDEN, 0.3)?);
    w.insert(
        "model.norm.weight".to_owned(),
        (mat(1, HIDDEN, 0.1)?.squeeze(0)? + 1.0)?,
    );
    let proj = 1.0 / (HIDDEN as f32).sqrt() * 1.7;
    for i in 0..LAYERS {
        let l = |s: &str| format!("model.layers.{i}.{s}.weight");
        w.insert(
            l("input_layernorm"),
            (mat(1, HIDDEN, 0.1)?.squeeze(0)? + 1.0)?,
        );
        w.insert(
            l("post_attention_layernorm"),
            (mat(1, HIDDEN, 0.1)?.squeeze(0)? + 1.0)?,
        );
        w.insert(l("self_attn.q_proj"), mat(HEADS * HEAD_DIM, HIDDEN, proj)?);
        w.insert(
            l("self_attn.k_proj"),
            mat(KV_HEADS * HEAD_DIM, HIDDEN, proj)?,
        );
        w.insert(
            l("self_attn.v_proj"),
            mat(KV_HEADS * HEAD_DIM, HIDDEN, proj)?,
        );
        w.insert(l("self_attn.o_proj"), mat(HIDDEN, HEADS * HEAD_DIM, proj)?);
        w.insert(l("mlp.gate_proj"), mat(FFN, HIDDEN, proj)?);
        w.insert(l("mlp.up_proj"), mat(FFN, HIDDEN, proj)?);
        w.insert(
            l("mlp.down_proj"),
            mat(HIDDEN, FFN, 1.0 / (FFN as f32).sqrt() * 1.7)?,
        );
    }
    Ok(w)
}

fn chat_template() -> &'static str {
    "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content.strip() + '<|im_end|>\\n' }}{% endfor %}\
{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
}

/// Writes the Hugging Face layout into `dir` (two shards and an index when `sharded`).
pub fn write_hf(dir: &Path, sharded: bool) -> Result<PathBuf, FixtureError> {
    std::fs::create_dir_all(dir)?;
    let tok = train_tokenizer()?;
    let vocab = tok.get_vocab_size(true);
    let w = weights(vocab, 42)?;
    let config = json!({
        "architectures": ["LlamaForCausalLM"], "vocab_size": vocab, "hidden_size": HIDDEN,
        "intermediate_size": FFN, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "max_position_embeddings": MAX_POS, "tie_word_embeddings": false
    });
    std::fs::write(dir.join("config.json"), config.to_string())?;
    let tok_json = tok
        .to_string(false)
        .map_err(|e| FixtureError::Tokenizer(e.to_string()))?;
    std::fs::write(dir.join("tokenizer.json"), tok_json)?;
    let tok_cfg =
        json!({"chat_template": chat_template(), "bos_token": null, "eos_token": "<|im_end|>"});
    std::fs::write(dir.join("tokenizer_config.json"), tok_cfg.to_string())?;
    if !sharded {
        candle_core::safetensors::save(&w, dir.join("model.safetensors"))?;
        return Ok(dir.to_path_buf());
    }
    let (mut a, mut b) = (HashMap::new(), HashMap::new());
    let mut map = serde_json::Map::new();
    for (name, t) in w {
        let shard = if name.contains("layers.1.") || name.starts_with("lm_head") {
            2
        } else {
            1
        };
        let file = format!("model-0000{shard}-of-00002.safetensors");
        map.insert(name.clone(), json!(file));
        if shard == 1 {
            a.insert(name, t)
        } else {
            b.insert(name, t)
        };
    }
    candle_core::safetensors::save(&a, dir.join("model-00001-of-00002.safetensors"))?;
    candle_core::safetensors::save(&b, dir.join("model-00002-of-00002.safetensors"))?;
    let index = json!({"metadata": {}, "weight_map": map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string())?;
    Ok(dir.to_path_buf())
}

/// Writes the same model as one GGUF file `dir/tiny.gguf`, projections stored as `dtype`, with the
/// tokenizer in GGUF metadata (no tokenizer.json beside it).
pub fn write_gguf(dir: &Path, dtype: GgmlDType) -> Result<PathBuf, FixtureError> {
    std::fs::create_dir_all(dir)?;
    let tok = train_tokenizer()?;
    let vocab = tok.get_vocab_size(true);
    let w = weights(vocab, 42)?;
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for (name, t) in &w {
        let (gguf_name, t) = gguf_tensor(name, t)?;
        let dt = if t.rank() == 1 { GgmlDType::F32 } else { dtype };
        tensors.push((gguf_name, QTensor::quantize(&t, dt)?));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let md = gguf_metadata(&tok)?;
    let md_refs: Vec<(&str, &gguf_file::Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let path = dir.join("tiny.gguf");
    let mut f = std::fs::File::create(&path)?;
    gguf_file::write(&mut f, &md_refs, &t_refs)?;
    Ok(path)
}

/// GGUF name of a Hugging Face weight; query/key rows are permuted for interleaved RoPE, as
/// llama.cpp's converter does.
fn gguf_tensor(name: &str, t: &Tensor) -> Result<(String, Tensor), FixtureError> {
    let rest = name.strip_prefix("model.").unwrap_or(name);
    let mapped = match rest {
        "embed_tokens.weight" => "token_embd.weight".to_owned(),
        "norm.weight" => "output_norm.weight".to_owned(),
        "lm_head.weight" => "output.weight".to_owned(),
        _ => {
            let parts: Vec<&str> = rest.splitn(3, '.').collect();
            let (i, what) = (
                parts.get(1).copied().unwrap_or("0"),
                parts.get(2).copied().unwrap_or(""),
            );
            let short = match what {
                "input_layernorm.weight" => "attn_norm",
                "post_attention_layernorm.weight" => "ffn_norm",
                "self_attn.q_proj.weight" => "attn_q",
                "self_attn.k_proj.weight" => "attn_k",
                "self_attn.v_proj.weight" => "attn_v",
                "self_attn.o_proj.weight" => "attn_output",
                "mlp.gate_proj.weight" => "ffn_gate",
                "mlp.up_proj.weight" => "ffn_up",
                _ => "ffn_down",
            };
            format!("blk.{i}.{short}.weight")
        }
    };
    let heads = if mapped.ends_with("attn_q.weight") {
        Some(HEADS)
    } else if mapped.ends_with("attn_k.weight") {
        Some(KV_HEADS)
    } else {
        None
    };
    let t = match heads {
        Some(h) => {
            let (rows, cols) = t.dims2()?;
            t.reshape((h, 2, rows / h / 2, cols))?
                .transpose(1, 2)?
                .reshape((rows, cols))?
                .contiguous()?
        }
        None => t.clone(),
    };
    Ok((mapped, t))
}

fn gguf_metadata(tok: &Tokenizer) -> Result<Vec<(String, gguf_file::Value)>, FixtureError> {
    use gguf_file::Value as V;
    let def: serde_json::Value = serde_json::from_str(
        &tok.to_string(false)
            .map_err(|e| FixtureError::Tokenizer(e.to_string()))?,
    )
    .map_err(|e| FixtureError::Tokenizer(e.to_string()))?;
    let mut tokens: Vec<(String, u32)> = tok.get_vocab(true).into_iter().collect();
    tokens.sort_by_key(|t| t.1);
    let merges: Vec<V> = def["model"]["merges"]
        .as_array()
        .map(|m| m.iter().filter_map(merge_string).map(V::String).collect())
        .unwrap_or_default();
    let types: Vec<V> = tokens
        .iter()
        .map(|(t, _)| V::I32(if SPECIALS.contains(&t.as_str()) { 3 } else { 1 }))
        .collect();
    let id = |s: &str| V::U32(tok.token_to_id(s).unwrap_or(0));
    let u = |x: usize| V::U32(x as u32);
    Ok(vec![
        ("general.architecture".into(), V::String("llama".into())),
        ("general.name".into(), V::String("anshin-tiny".into())),
        ("llama.context_length".into(), u(MAX_POS)),
        ("llama.embedding_length".into(), u(HIDDEN)),
        ("llama.feed_forward_length".into(), u(FFN)),
        ("llama.block_count".into(), u(LAYERS)),
        ("llama.attention.head_count".into(), u(HEADS)),
        ("llama.attention.head_count_kv".into(), u(KV_HEADS)),
        ("llama.rope.dimension_count".into(), u(HEAD_DIM)),
        ("llama.rope.freq_base".into(), V::F32(10000.0)),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            V::F32(1e-5),
        ),
        ("tokenizer.ggml.model".into(), V::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), V::String("gpt-2".into())),
        (
            "tokenizer.ggml.tokens".into(),
            V::Array(tokens.into_iter().map(|t| V::String(t.0)).collect()),
        ),
        ("tokenizer.ggml.merges".into(), V::Array(merges)),
        ("tokenizer.ggml.token_type".into(), V::Array(types)),
        ("tokenizer.ggml.eos_token_id".into(), id("<|im_end|>")),
        ("tokenizer.ggml.bos_token_id".into(), id("<|endoftext|>")),
        (
            "tokenizer.chat_template".into(),
            V::String(chat_template().into()),
        ),
    ])
}

/// A merge as GGUF stores it (`"a b"`), from either JSON form `tokenizers` writes.
fn merge_string(m: &serde_json::Value) -> Option<String> {
    match m {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(p) => {
            Some(format!("{} {}", p.first()?.as_str()?, p.get(1)?.as_str()?))
        }
        _ => None,
    }
}
