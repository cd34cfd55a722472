//! Command-line interface: `serve`, `verify` and `manifest`. `main.rs` only parses and calls [`run`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::loader;
use crate::manifest::{self, VerifyError};
use crate::metrics::Metrics;
use crate::sampling::SamplingParams;
use crate::scheduler::{self, GenEvent, GenerateRequest, SchedulerConfig};
use crate::server::auth::ApiKey;
use crate::server::faults::{FaultArgs, FaultPlan};
use crate::server::{self, AppState, Engine};

/// Anshin model server.
#[derive(Parser, Debug)]
#[command(name = "anshin-inference", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the OpenAI-compatible API.
    Serve(ServeArgs),
    /// Check every file of a model against a manifest; exit 0 when all match, 1 on the first mismatch,
    /// 2 when the manifest cannot be read.
    Verify {
        /// Model directory or GGUF file; manifest paths are relative to the directory (or the file's).
        #[arg(long)]
        model: PathBuf,
        /// JSON manifest: a list of {path, sha256: "sha256:<hex>", size}, or {"files": [...]}.
        #[arg(long)]
        manifest: PathBuf,
    },
    /// Print a manifest (JSON) for a model directory's files, or for one GGUF file.
    Manifest {
        /// Model directory or GGUF file.
        #[arg(long)]
        model: PathBuf,
    },
}

/// Flags of `serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Model directory (Hugging Face layout) or GGUF file.
    #[arg(long, env = "ANSHIN_MODEL")]
    pub model: PathBuf,
    /// Manifest to verify the model against before loading; the server refuses to start on a mismatch.
    #[arg(long, env = "ANSHIN_MODEL_MANIFEST")]
    pub manifest: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:8000", env = "ANSHIN_LISTEN")]
    pub listen: SocketAddr,
    /// Model name reported by /v1/models and in responses (default: the model's file or directory name).
    #[arg(long)]
    pub model_id: Option<String>,
    /// Sequences decoded together at most.
    #[arg(long, default_value_t = 16)]
    pub max_batch: usize,
    /// Requests that may wait for a batch slot; more get 429.
    #[arg(long, default_value_t = 64)]
    pub max_waiting: usize,
    /// Total KV cache memory for all sequences, in MiB.
    #[arg(long, default_value_t = 512)]
    pub kv_cache_mib: usize,
    /// Prompt tokens fed per sequence per step (longer prompts are prefilled over several steps).
    #[arg(long, default_value_t = 256)]
    pub prefill_chunk: usize,
    /// Free finished requests' KV caches at once instead of keeping them (within the KV budget) for
    /// later prompts that begin the same way, such as the next turn of a chat.
    #[arg(long)]
    pub no_prefix_cache: bool,
    /// Context length to serve (default and maximum: the model's own).
    #[arg(long)]
    pub max_context: Option<usize>,
    /// `max_tokens` for requests that give none.
    #[arg(long, default_value_t = 256)]
    pub default_max_tokens: usize,
    /// How long to let in-flight requests finish after SIGTERM, e.g. `30s`, `500ms`, `2m`.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// File holding the API key (surrounding whitespace ignored). When set, `/v1/*` and `/metrics` need
    /// `Authorization: Bearer <key>`, and only such requests may choose a cache scope. The server
    /// refuses to start if the file is missing or empty. Read once at start-up.
    #[arg(long, env = "ANSHIN_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Test-only fault injection (refused without `--enable-fault-injection`).
    #[command(flatten)]
    pub faults: FaultArgs,
}

/// Parses a duration such as `30s`, `500ms`, `2m` or `1h 30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration like 30s, 500ms or 2m: {e}"))
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            // Refused like a usage error (exit 2, as clap does), before anything starts.
            let faults = match args.faults.plan() {
                Ok(plan) => plan,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            rt.block_on(serve(args, faults))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { model, manifest } => Ok(verify(&model, &manifest)),
        Command::Manifest { model } => {
            let root = manifest::model_root(&model);
            let files = if model.is_dir() {
                list_files(&model)?
            } else {
                vec![file_name(&model)]
            };
            let m = manifest::build_manifest(&root, &files)?;
            println!("{}", serde_json::to_string_pretty(&m)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn verify(model: &Path, manifest_path: &Path) -> ExitCode {
    let entries = match manifest::read_manifest(manifest_path) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("ERROR: {e}");
            return ExitCode::from(2);
        }
    };
    match manifest::verify(&manifest::model_root(model), &entries) {
        Ok(()) => {
            println!(
                "OK: {} files match {}",
                entries.len(),
                manifest_path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e @ VerifyError::Manifest { .. }) => {
            eprintln!("ERROR: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            println!("MISMATCH: {e}");
            ExitCode::from(1)
        }
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn list_files(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut files: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    Ok(files)
}

/// `serve`: read the API key, listen at once, load and warm up in the background, drain on SIGTERM;
/// an error when the engine stops for good. `faults` (from [`FaultArgs::plan`]) are injected into
/// answers when given.
pub async fn serve(args: ServeArgs, faults: Option<FaultPlan>) -> anyhow::Result<()> {
    let api_key = args
        .api_key_file
        .as_deref()
        .map(ApiKey::from_file)
        .transpose()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let model_id = args
        .model_id
        .clone()
        .unwrap_or_else(|| file_name(&args.model).trim_end_matches(".gguf").to_owned());
    let mut state = AppState::new(&model_id, Metrics::new());
    let requires_key = api_key.is_some();
    if let Some(key) = api_key {
        state = state.with_api_key(key);
    }
    if let Some(plan) = faults {
        tracing::warn!(
            error_rate = plan.error_rate,
            token_delay_ms = plan.token_delay.as_millis() as u64,
            phone_number = plan.phone_number,
            "fault injection is enabled: this server fails on purpose and is for tests only"
        );
        state = state.with_faults(plan);
    }
    tracing::info!(addr = %args.listen, model = %args.model.display(), requires_key, "listening; loading the model");
    let server = tokio::spawn(server::run(
        listener,
        state.clone(),
        shutdown_signal(),
        args.drain_timeout,
    ));
    let engine = tokio::task::spawn_blocking({
        let (args, metrics) = (args.clone(), state.metrics.clone());
        move || start_engine(&args, metrics)
    })
    .await??;
    warm_up(&engine).await?;
    state.set_engine(engine);
    tracing::info!(model_id = %model_id, "ready");
    server.await??;
    Ok(())
}

/// Loads the model (verifying it first) and starts the scheduler.
pub fn start_engine(args: &ServeArgs, metrics: Metrics) -> anyhow::Result<Engine> {
    let device = crate::device::from_env()?;
    let loaded = loader::load(&args.model, args.manifest.as_deref(), &device)
        .with_context(|| format!("loading model {}", args.model.display()))?;
    let cfg = loaded.model.config();
    let max_context = args
        .max_context
        .unwrap_or(cfg.max_position_embeddings)
        .min(cfg.max_position_embeddings);
    let value_bytes = crate::kv_cache::bytes_per_value(&device);
    let kv_budget_tokens = args.kv_cache_mib * (1 << 20) / cfg.kv_bytes_per_token(value_bytes);
    tracing::info!(
        layers = cfg.num_layers,
        hidden = cfg.hidden_size,
        max_context,
        kv_budget_tokens,
        "model loaded"
    );
    let tokenizer = Arc::new(loaded.tokenizer);
    let sched = SchedulerConfig {
        max_waiting: args.max_waiting,
        max_batch: args.max_batch.max(1),
        kv_budget_tokens,
        prefill_chunk: args.prefill_chunk.max(1),
        max_context,
        prefix_cache: !args.no_prefix_cache,
    };
    let handle = scheduler::spawn(loaded.model, tokenizer.clone(), sched, metrics);
    Ok(Engine {
        handle: Arc::new(handle),
        tokenizer,
        template: loaded.template,
        default_max_tokens: args.default_max_tokens,
    })
}

/// One short greedy generation, so the first real request does not pay for first-use costs.
pub async fn warm_up(engine: &Engine) -> anyhow::Result<()> {
    let prompt = engine.tokenizer.encode_plain("warm-up")?;
    let req = GenerateRequest {
        prompt,
        max_tokens: 2,
        sampling: SamplingParams::default(),
        stop: vec![],
        ignore_eos: true,
        cache_scope: 0,
    };
    let mut rx = engine.handle.submit(req)?;
    while let Some(ev) = rx.recv().await {
        match ev {
            GenEvent::Delta(_) => {}
            GenEvent::Done(_) => return Ok(()),
            GenEvent::Failed(e) => anyhow::bail!("warm-up generation failed: {e}"),
        }
    }
    anyhow::bail!("warm-up generation ended without a result")
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = term => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_bad_ones_say_what_is_expected() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        for bad in ["30", "soon", "", "99999999999999999999999h"] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.contains("like 30s, 500ms or 2m"), "{err}");
        }
    }
}
