//! Named access to a model's weights, from safetensors files (Hugging Face layout, sharded or not) or from
//! one GGUF file. The model asks for a [`Weight`] role; this module maps it to the layout's tensor name.

use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::quantized::{QMatMul, gguf_file};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

/// Why weights could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// A file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A tensor the architecture needs is absent.
    #[error("weight `{0}` is missing from the checkpoint")]
    Missing(String),
    /// candle failed to parse or convert a tensor.
    #[error("cannot load weight `{name}`: {source}")]
    Tensor {
        /// The tensor name.
        name: String,
        /// The cause.
        #[source]
        source: candle_core::Error,
    },
}

/// A weight the Llama forward pass needs; `layer` indexes decoder layers.
#[derive(Debug, Clone, Copy)]
pub enum Weight {
    /// Token embedding matrix.
    Embed,
    /// Final RMS norm.
    FinalNorm,
    /// Output projection (absent when tied to the embeddings).
    LmHead,
    /// Pre-attention RMS norm.
    AttnNorm(usize),
    /// Query projection.
    Q(usize),
    /// Key projection.
    K(usize),
    /// Value projection.
    V(usize),
    /// Attention output projection.
    O(usize),
    /// Pre-MLP RMS norm.
    FfnNorm(usize),
    /// MLP gate projection.
    Gate(usize),
    /// MLP up projection.
    Up(usize),
    /// MLP down projection.
    Down(usize),
    /// Per-head query RMS norm (Gemma 3).
    QNorm(usize),
    /// Per-head key RMS norm (Gemma 3).
    KNorm(usize),
    /// RMS norm after attention, before the residual add (Gemma 3).
    PostAttnNorm(usize),
    /// RMS norm after the MLP, before the residual add (Gemma 3).
    PostFfnNorm(usize),
}

impl Weight {
    fn hf_name(self) -> String {
        let l = |i: usize, s: &str| format!("model.layers.{i}.{s}.weight");
        match self {
            Weight::Embed => "model.embed_tokens.weight".into(),
            Weight::FinalNorm => "model.norm.weight".into(),
            Weight::LmHead => "lm_head.weight".into(),
            Weight::AttnNorm(i) => l(i, "input_layernorm"),
            Weight::Q(i) => l(i, "self_attn.q_proj"),
            Weight::K(i) => l(i, "self_attn.k_proj"),
            Weight::V(i) => l(i, "self_attn.v_proj"),
            Weight::O(i) => l(i, "self_attn.o_proj"),
            Weight::FfnNorm(i) => l(i, "post_attention_layernorm"),
            Weight::Gate(i) => l(i, "mlp.gate_proj"),
            Weight::Up(i) => l(i, "mlp.up_proj"),
            Weight::Down(i) => l(i, "mlp.down_proj"),
            Weight::QNorm(i) => l(i, "self_attn.q_norm"),
            Weight::KNorm(i) => l(i, "self_attn.k_norm"),
            Weight::PostAttnNorm(i) => l(i, "post_attention_norm"),
            Weight::PostFfnNorm(i) => l(i, "post_feedforward_layernorm"),
        }
    }

    fn gguf_name(self) -> String {
        let l = |i: usize, s: &str| format!("blk.{i}.{s}.weight");
        match self {
            Weight::Embed => "token_embd.weight".into(),
            Weight::FinalNorm => "output_norm.weight".into(),
            Weight::LmHead => "output.weight".into(),
            Weight::AttnNorm(i) => l(i, "attn_norm"),
            Weight::Q(i) => l(i, "attn_q"),
            Weight::K(i) => l(i, "attn_k"),
            Weight::V(i) => l(i, "attn_v"),
            Weight::O(i) => l(i, "attn_output"),
            Weight::FfnNorm(i) => l(i, "ffn_norm"),
            Weight::Gate(i) => l(i, "ffn_gate"),
            Weight::Up(i) => l(i, "ffn_up"),
            Weight::Down(i) => l(i, "ffn_down"),
            Weight::QNorm(i) => l(i, "attn_q_norm"),
            Weight::KNorm(i) => l(i, "attn_k_norm"),
            Weight::PostAttnNorm(i) => l(i, "post_attention_norm"),
            Weight::PostFfnNorm(i) => l(i, "post_ffw_norm"),
        }
    }
}

/// An opened checkpoint.
pub enum WeightStore {
    /// Hugging Face safetensors (one file or shards).
    Safetensors(MmapedSafetensors),
    /// A GGUF file and its parsed header.
    Gguf {
        /// The open file.
        file: File,
        /// Header, metadata and tensor index.
        content: gguf_file::Content,
    },
}

impl WeightStore {
    /// Memory-maps safetensors files.
    pub fn open_safetensors(paths: &[PathBuf]) -> Result<Self, WeightsError> {
        // SAFETY: the files are only read, and the model directory is verified and not modified while served.
        let st =
            unsafe { MmapedSafetensors::multi(paths) }.map_err(|source| WeightsError::Tensor {
                name: format!("{paths:?}"),
                source,
            })?;
        Ok(Self::Safetensors(st))
    }

    /// Opens a GGUF file and reads its header.
    pub fn open_gguf(path: &Path) -> Result<Self, WeightsError> {
        let io = |source| WeightsError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(io)?;
        let content =
            gguf_file::Content::read(&mut file).map_err(|source| WeightsError::Tensor {
                name: path.display().to_string(),
                source,
            })?;
        Ok(Self::Gguf { file, content })
    }

    fn name(&self, w: Weight) -> String {
        match self {
            Self::Safetensors(_) => w.hf_name(),
            Self::Gguf { .. } => w.gguf_name(),
        }
    }

    /// Whether the checkpoint holds this weight.
    pub fn has(&self, w: Weight) -> bool {
        let name = self.name(w);
        match self {
            Self::Safetensors(st) => st.get(&name).is_ok(),
            Self::Gguf { content, .. } => content.tensor_infos.contains_key(&name),
        }
    }

    /// Shape of a weight, as the model sees it (rows = output features).
    pub fn dims(&self, w: Weight) -> Result<Vec<usize>, WeightsError> {
        let name = self.name(w);
        match self {
            Self::Safetensors(st) => st
                .get(&name)
                .map(|v| v.shape().to_vec())
                .map_err(|_| WeightsError::Missing(name)),
            Self::Gguf { content, .. } => content
                .tensor_infos
                .get(&name)
                .map(|i| i.shape.dims().to_vec())
                .ok_or(WeightsError::Missing(name)),
        }
    }

    /// Loads a weight as a dense f32 tensor (norms, embeddings).
    pub fn dense(&mut self, w: Weight, device: &Device) -> Result<Tensor, WeightsError> {
        let name = self.name(w);
        let err = |source| WeightsError::Tensor {
            name: name.clone(),
            source,
        };
        match self {
            Self::Safetensors(st) => {
                if st.get(&name).is_err() {
                    return Err(WeightsError::Missing(name));
                }
                st.load(&name, device)
                    .and_then(|t| t.to_dtype(DType::F32))
                    .map_err(err)
            }
            Self::Gguf { file, content } => {
                if !content.tensor_infos.contains_key(&name) {
                    return Err(WeightsError::Missing(name));
                }
                content
                    .tensor(file, &name, device)
                    .and_then(|q| q.dequantize(device))
                    .map_err(err)
            }
        }
    }

    /// Loads a projection matrix, keeping GGUF quantization (Q4_0, Q4_1, Q8_0, Q4_K, …) as it is.
    pub fn matmul(&mut self, w: Weight, device: &Device) -> Result<QMatMul, WeightsError> {
        let name = self.name(w);
        let err = |source| WeightsError::Tensor {
            name: name.clone(),
            source,
        };
        match self {
            Self::Safetensors(_) => Ok(QMatMul::Tensor(self.dense(w, device)?)),
            Self::Gguf { file, content } => {
                if !content.tensor_infos.contains_key(&name) {
                    return Err(WeightsError::Missing(name));
                }
                content
                    .tensor(file, &name, device)
                    .and_then(QMatMul::from_qtensor)
                    .map_err(err)
            }
        }
    }
}
