//! Finds a model on disk and loads it: checks digests (when a manifest is given), then builds the config,
//! weights, tokenizer and chat template for either layout:
//! - Hugging Face: a directory with `config.json`, `*.safetensors` (or a sharded index), `tokenizer.json`
//!   and optionally `tokenizer_config.json` (chat template, special tokens);
//! - GGUF: a `.gguf` file (or a directory holding exactly one), with an optional `tokenizer.json` and
//!   `tokenizer_config.json` beside it; otherwise the tokenizer and template come from GGUF metadata.

use std::path::{Path, PathBuf};

use candle_core::Device;
use serde_json::Value as Json;

use crate::chat_template::{CHATML, ChatTemplate, TemplateError};
use crate::config::{ConfigError, LlamaConfig};
use crate::manifest::{self, VerifyError};
use crate::model::Llama;
use crate::tokenizer::{TextTokenizer, TokenizerError};
use crate::weights::{Weight, WeightStore, WeightsError};

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The files do not match the manifest; the server must not start.
    #[error("model files do not match the manifest: {0}")]
    Verify(#[from] VerifyError),
    /// The path is neither a Hugging Face directory nor a GGUF file.
    #[error("{0}: expected a directory with config.json or a .gguf file")]
    Layout(PathBuf),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Weights are missing or unreadable.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// The tokenizer is invalid.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The chat template does not compile.
    #[error(transparent)]
    Template(#[from] TemplateError),
}

/// Everything the server needs from a model directory.
pub struct LoadedModel {
    /// The network.
    pub model: Llama,
    /// Its tokenizer.
    pub tokenizer: TextTokenizer,
    /// Its chat template.
    pub template: ChatTemplate,
}

/// Verifies `path` against `manifest_path` (if any), then loads it onto `device`.
pub fn load(
    path: &Path,
    manifest_path: Option<&Path>,
    device: &Device,
) -> Result<LoadedModel, LoadError> {
    if let Some(m) = manifest_path {
        let entries = manifest::read_manifest(m)?;
        manifest::verify(&manifest::model_root(path), &entries)?;
        tracing::info!(files = entries.len(), "model files match the manifest");
    }
    match find_gguf(path)? {
        Some(gguf) => load_gguf(&gguf, device),
        None if path.join("config.json").is_file() => load_hf(path, device),
        None => Err(LoadError::Layout(path.to_path_buf())),
    }
}

fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn find_gguf(path: &Path) -> Result<Option<PathBuf>, LoadError> {
    if path.is_file() {
        return Ok(path
            .extension()
            .is_some_and(|e| e == "gguf")
            .then(|| path.to_path_buf()));
    }
    if path.join("config.json").is_file() {
        return Ok(None);
    }
    let entries = std::fs::read_dir(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let ggufs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    Ok(if ggufs.len() == 1 {
        ggufs.into_iter().next()
    } else {
        None
    })
}

fn load_hf(dir: &Path, device: &Device) -> Result<LoadedModel, LoadError> {
    let cfg = LlamaConfig::from_hf_json(&read(&dir.join("config.json"))?)?;
    let mut store = WeightStore::open_safetensors(&safetensors_files(dir)?)?;
    let model = Llama::load(cfg, &mut store, device)?;
    let tok_cfg = read_tokenizer_config(dir)?;
    let (bos, eos) = (
        special(&tok_cfg, "bos_token"),
        special(&tok_cfg, "eos_token"),
    );
    let tokenizer = TextTokenizer::from_json(&read(&dir.join("tokenizer.json"))?, bos, eos)?;
    let template = template_from(&tok_cfg, None, &tokenizer)?;
    Ok(LoadedModel {
        model,
        tokenizer,
        template,
    })
}

fn load_gguf(file: &Path, device: &Device) -> Result<LoadedModel, LoadError> {
    let dir = manifest::model_root(file);
    let mut store = WeightStore::open_gguf(file)?;
    let WeightStore::Gguf { content, .. } = &store else {
        return Err(LoadError::Layout(file.to_path_buf()));
    };
    let md = content.metadata.clone();
    let vocab = store.dims(Weight::Embed)?.first().copied().unwrap_or(0);
    let cfg = LlamaConfig::from_gguf(&md, vocab)?;
    let model = Llama::load(cfg, &mut store, device)?;
    let tok_cfg = read_tokenizer_config(&dir)?;
    let tokenizer = if dir.join("tokenizer.json").is_file() {
        let (bos, eos) = (
            special(&tok_cfg, "bos_token"),
            special(&tok_cfg, "eos_token"),
        );
        TextTokenizer::from_json(&read(&dir.join("tokenizer.json"))?, bos, eos)?
    } else {
        TextTokenizer::from_gguf(&md)?
    };
    let gguf_template = md
        .get("tokenizer.chat_template")
        .and_then(|v| v.to_string().ok())
        .cloned();
    let template = template_from(&tok_cfg, gguf_template, &tokenizer)?;
    Ok(LoadedModel {
        model,
        tokenizer,
        template,
    })
}

fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let json: Json = serde_json::from_str(&read(&index)?).map_err(|e| LoadError::Io {
            path: index.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        let mut files: Vec<PathBuf> = json["weight_map"]
            .as_object()
            .map(|m| {
                m.values()
                    .filter_map(|v| v.as_str())
                    .map(|f| dir.join(f))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files.dedup();
        return Ok(files);
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        Ok(vec![single])
    } else {
        Err(LoadError::Layout(dir.to_path_buf()))
    }
}

fn read_tokenizer_config(dir: &Path) -> Result<Json, LoadError> {
    let p = dir.join("tokenizer_config.json");
    if !p.is_file() {
        return Ok(Json::Null);
    }
    serde_json::from_str(&read(&p)?).map_err(|e| LoadError::Io {
        path: p,
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

/// A special token from tokenizer_config.json: a string or `{"content": …}`.
fn special(cfg: &Json, key: &str) -> Option<String> {
    match &cfg[key] {
        Json::String(s) => Some(s.clone()),
        Json::Object(o) => o.get("content").and_then(|c| c.as_str()).map(str::to_owned),
        _ => None,
    }
}

/// The chat template: tokenizer_config.json (a string, or a list of named templates where `default`
/// wins), then GGUF metadata, then ChatML.
fn template_from(
    cfg: &Json,
    gguf: Option<String>,
    tok: &TextTokenizer,
) -> Result<ChatTemplate, LoadError> {
    let from_cfg = match &cfg["chat_template"] {
        Json::String(s) => Some(s.clone()),
        Json::Array(list) => list
            .iter()
            .find(|t| t["name"] == "default")
            .or_else(|| list.first())
            .and_then(|t| t["template"].as_str())
            .map(str::to_owned),
        _ => None,
    };
    let source = from_cfg.or(gguf).unwrap_or_else(|| CHATML.to_owned());
    Ok(ChatTemplate::new(
        &source,
        tok.bos_token.as_deref(),
        tok.eos_token.as_deref(),
    )?)
}
