//! Llama-family hyper-parameters, read from a Hugging Face `config.json` or from GGUF metadata.
//!
//! Both sources end in the same [`LlamaConfig`], so the forward pass never asks where a model came from.
//! One layout difference is kept explicit: GGUF files converted by llama.cpp store the query/key weights
//! permuted for interleaved rotary embeddings, so [`LlamaConfig::rope_interleaved`] is set for them.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;
use serde::Deserialize;

/// Why a model's configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `config.json` is not valid JSON of the expected shape.
    #[error("config.json is invalid: {0}")]
    Json(#[from] serde_json::Error),
    /// A required GGUF metadata key is missing or has the wrong type.
    #[error("GGUF metadata key `{0}` is missing or has the wrong type")]
    GgufKey(String),
    /// The architecture is not one this server runs.
    #[error("architecture `{0}` is not supported (supported: llama and Llama-family checkpoints)")]
    Architecture(String),
    /// The numbers do not fit together (for example heads that do not divide the hidden size).
    #[error("inconsistent model configuration: {0}")]
    Inconsistent(String),
}

/// RoPE frequency scaling, as in `rope_scaling` of a Hugging Face config.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Positions divided by `factor` (`"type": "linear"`).
    Linear {
        /// Position divisor.
        factor: f32,
    },
    /// Llama 3 wavelength-dependent scaling (`"rope_type": "llama3"`).
    Llama3 {
        /// Scaling factor for long wavelengths.
        factor: f32,
        /// Low-frequency boundary factor.
        low_freq_factor: f32,
        /// High-frequency boundary factor.
        high_freq_factor: f32,
        /// Context length the model was pretrained with.
        original_max_position_embeddings: usize,
    },
}

/// Decoder family: Llama (and Mistral-style checkpoints), or Gemma 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// RMSNorm → attention → RMSNorm → SwiGLU.
    Llama,
    /// Gemma 3: scaled embeddings, per-head q/k norms, post-attention and post-MLP norms, GELU MLP,
    /// sliding-window attention on local layers with their own RoPE base.
    Gemma3,
}

/// The hyper-parameters of a Llama-family decoder.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Vocabulary size (rows of the embedding matrix).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_layers: usize,
    /// Number of query heads.
    pub num_heads: usize,
    /// Number of key/value heads (GQA when smaller than `num_heads`).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Epsilon of the RMS norms.
    pub rms_norm_eps: f64,
    /// RoPE base frequency.
    pub rope_theta: f32,
    /// RoPE scaling variant.
    pub rope_scaling: RopeScaling,
    /// Whether rotary embeddings rotate interleaved pairs (GGUF) or halves (Hugging Face).
    pub rope_interleaved: bool,
    /// Longest context the model supports.
    pub max_position_embeddings: usize,
    /// Whether the output projection reuses the token embeddings.
    pub tie_word_embeddings: bool,
    /// Decoder family.
    pub arch: Arch,
    /// Keys visible to local (sliding-window) layers.
    pub sliding_window: Option<usize>,
    /// Every n-th layer is global (attends to the whole context); the others are local. 0: all global.
    pub global_every: usize,
    /// RoPE base of local layers.
    pub rope_local_theta: f32,
}

#[derive(Deserialize)]
struct HfConfig {
    #[serde(default)]
    architectures: Vec<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    rope_theta: f32,
    rope_scaling: Option<HfRopeScaling>,
    #[serde(default = "default_max_pos")]
    max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
}

#[derive(Deserialize)]
struct HfRopeScaling {
    #[serde(alias = "type")]
    rope_type: String,
    #[serde(default = "one")]
    factor: f32,
    #[serde(default = "one")]
    low_freq_factor: f32,
    #[serde(default = "four")]
    high_freq_factor: f32,
    #[serde(default = "default_max_pos")]
    original_max_position_embeddings: usize,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f32 {
    10_000.0
}
fn default_max_pos() -> usize {
    2048
}
fn one() -> f32 {
    1.0
}
fn four() -> f32 {
    4.0
}

impl LlamaConfig {
    /// Parses a Hugging Face `config.json`.
    pub fn from_hf_json(text: &str) -> Result<Self, ConfigError> {
        let c: HfConfig = serde_json::from_str(text)?;
        if let Some(arch) = c.architectures.iter().find(|a| !is_llama_family(a)) {
            return Err(ConfigError::Architecture(arch.clone()));
        }
        let rope_scaling = match c.rope_scaling {
            None => RopeScaling::None,
            Some(s) => match s.rope_type.as_str() {
                "linear" => RopeScaling::Linear { factor: s.factor },
                "llama3" => RopeScaling::Llama3 {
                    factor: s.factor,
                    low_freq_factor: s.low_freq_factor,
                    high_freq_factor: s.high_freq_factor,
                    original_max_position_embeddings: s.original_max_position_embeddings,
                },
                "default" => RopeScaling::None,
                other => {
                    return Err(ConfigError::Inconsistent(format!(
                        "rope_scaling type `{other}` is not supported (linear, llama3)"
                    )));
                }
            },
        };
        let cfg = Self {
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            intermediate_size: c.intermediate_size,
            num_layers: c.num_hidden_layers,
            num_heads: c.num_attention_heads,
            num_kv_heads: c.num_key_value_heads.unwrap_or(c.num_attention_heads),
            head_dim: c
                .head_dim
                .unwrap_or(c.hidden_size / c.num_attention_heads.max(1)),
            rms_norm_eps: c.rms_norm_eps,
            rope_theta: c.rope_theta,
            rope_scaling,
            rope_interleaved: false,
            max_position_embeddings: c.max_position_embeddings,
            tie_word_embeddings: c.tie_word_embeddings,
            arch: Arch::Llama,
            sliding_window: None,
            global_every: 0,
            rope_local_theta: c.rope_theta,
        };
        cfg.validate()
    }

    /// Reads `llama.*` or `gemma3.*` GGUF metadata; `vocab_size` comes from the embedding tensor.
    pub fn from_gguf(md: &HashMap<String, Value>, vocab_size: usize) -> Result<Self, ConfigError> {
        let arch = md
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .ok_or_else(|| ConfigError::GgufKey("general.architecture".into()))?;
        let kind = match arch.as_str() {
            "llama" => Arch::Llama,
            "gemma3" => Arch::Gemma3,
            _ => return Err(ConfigError::Architecture(arch.clone())),
        };
        let u = |k: &str| gguf_usize(md, &format!("{arch}.{k}"));
        let num_heads = u("attention.head_count")?;
        let hidden_size = u("embedding_length")?;
        let head_dim = u("attention.key_length")
            .or_else(|_| u("rope.dimension_count"))
            .unwrap_or(hidden_size / num_heads.max(1));
        let rope_theta = gguf_f32(md, &format!("{arch}.rope.freq_base")).unwrap_or(10_000.0);
        let gemma = kind == Arch::Gemma3;
        let cfg = Self {
            vocab_size,
            hidden_size,
            intermediate_size: u("feed_forward_length")?,
            num_layers: u("block_count")?,
            num_heads,
            num_kv_heads: u("attention.head_count_kv").unwrap_or(num_heads),
            head_dim,
            rms_norm_eps: gguf_f32(md, &format!("{arch}.attention.layer_norm_rms_epsilon"))? as f64,
            rope_theta,
            rope_scaling: RopeScaling::None,
            // llama.cpp permutes Llama q/k for interleaved RoPE; Gemma uses the NeoX (halves) layout.
            rope_interleaved: !gemma,
            max_position_embeddings: u("context_length").unwrap_or(2048),
            tie_word_embeddings: gemma,
            arch: kind,
            sliding_window: if gemma {
                u("attention.sliding_window").ok()
            } else {
                None
            },
            // Gemma 3: five local layers, then one global (llama.cpp hard-codes the same pattern).
            global_every: if gemma { 6 } else { 0 },
            rope_local_theta: if gemma { 10_000.0 } else { rope_theta },
        };
        cfg.validate()
    }

    /// Whether layer `i` attends over a sliding window (and uses the local RoPE base).
    pub fn is_local_layer(&self, i: usize) -> bool {
        self.sliding_window.is_some()
            && self.global_every > 0
            && !(i + 1).is_multiple_of(self.global_every)
    }

    fn validate(self) -> Result<Self, ConfigError> {
        if self.num_heads == 0
            || self.num_kv_heads == 0
            || !self.num_heads.is_multiple_of(self.num_kv_heads)
        {
            return Err(ConfigError::Inconsistent(format!(
                "{} query heads cannot be grouped over {} key/value heads",
                self.num_heads, self.num_kv_heads
            )));
        }
        if !self.head_dim.is_multiple_of(2) || self.head_dim == 0 {
            return Err(ConfigError::Inconsistent(format!(
                "head_dim {} must be even",
                self.head_dim
            )));
        }
        Ok(self)
    }

    /// Bytes of KV cache one token occupies (keys and values, all layers) with `element_bytes` per value:
    /// [`crate::kv_cache::bytes_per_value`] gives it for a device.
    pub fn kv_bytes_per_token(&self, element_bytes: usize) -> usize {
        2 * self.num_layers * self.num_kv_heads * self.head_dim * element_bytes
    }

    /// Inverse frequencies of the rotary embedding for base `theta`, after scaling.
    pub fn rope_inv_freq(&self, theta: f32) -> Vec<f32> {
        let d = self.head_dim;
        let base: Vec<f32> = (0..d / 2)
            .map(|i| 1.0 / theta.powf(2.0 * i as f32 / d as f32))
            .collect();
        match &self.rope_scaling {
            RopeScaling::None => base,
            RopeScaling::Linear { factor } => base.iter().map(|f| f / factor).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                let old = *original_max_position_embeddings as f32;
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                base.iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f32::consts::PI / f;
                        if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / factor
                        } else {
                            let smooth = (old / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        }
    }
}

fn is_llama_family(arch: &str) -> bool {
    matches!(arch, "LlamaForCausalLM" | "MistralForCausalLM")
}

fn gguf_usize(md: &HashMap<String, Value>, key: &str) -> Result<usize, ConfigError> {
    let v = md
        .get(key)
        .ok_or_else(|| ConfigError::GgufKey(key.into()))?;
    v.to_u32()
        .map(|x| x as usize)
        .or_else(|_| v.to_u64().map(|x| x as usize))
        .or_else(|_| v.to_i32().map(|x| x.max(0) as usize))
        .map_err(|_| ConfigError::GgufKey(key.into()))
}

fn gguf_f32(md: &HashMap<String, Value>, key: &str) -> Result<f32, ConfigError> {
    let v = md
        .get(key)
        .ok_or_else(|| ConfigError::GgufKey(key.into()))?;
    v.to_f32()
        .or_else(|_| v.to_f64().map(|x| x as f32))
        .map_err(|_| ConfigError::GgufKey(key.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HF: &str = r#"{"architectures":["LlamaForCausalLM"],"vocab_size":100,"hidden_size":64,
        "intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,
        "rms_norm_eps":1e-5,"rope_theta":10000.0,"max_position_embeddings":256,
        "rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,
        "original_max_position_embeddings":64}}"#;

    #[test]
    fn hf_config_reads_gqa_and_llama3_scaling() {
        let c = LlamaConfig::from_hf_json(HF).expect("valid config");
        assert_eq!((c.num_heads, c.num_kv_heads, c.head_dim), (4, 2, 16));
        assert!(matches!(c.rope_scaling, RopeScaling::Llama3 { .. }));
        let plain = LlamaConfig {
            rope_scaling: RopeScaling::None,
            ..c.clone()
        }
        .rope_inv_freq(c.rope_theta);
        let scaled = c.rope_inv_freq(c.rope_theta);
        assert_eq!(plain[0], scaled[0], "high frequencies are kept");
        assert!(scaled[7] < plain[7], "low frequencies are scaled down");
    }

    #[test]
    fn hf_config_rejects_unknown_architecture() {
        let text = HF.replace("LlamaForCausalLM", "BertModel");
        assert!(matches!(
            LlamaConfig::from_hf_json(&text),
            Err(ConfigError::Architecture(_))
        ));
    }
}
