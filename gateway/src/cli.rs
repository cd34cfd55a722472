//! Command line: `serve`, `verify` (an audit chain) and `hash-key`. `main.rs` only parses and calls
//! [`main`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::audit::{AuditLog, FsyncPolicy, Sink, verify_file};
use crate::keys::{fingerprint, hash_key};
use crate::metrics::Metrics;
use crate::server::{Gateway, GatewayOptions};
use crate::table::SharedTable;

/// Anshin gateway.
#[derive(Parser, Debug)]
#[command(name = "anshin-gateway", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the OpenAI-compatible endpoint.
    Serve(Box<ServeArgs>),
    /// Verify an audit log's hash chain; exit 0 when intact, 1 at the first broken record.
    Verify {
        /// The audit log (JSON lines).
        path: PathBuf,
    },
    /// Read an API key from stdin; print its sha256 (for the routing file) and fingerprint.
    HashKey,
}

/// Flags of `serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:8080", env = "ANSHIN_GATEWAY_LISTEN")]
    pub listen: SocketAddr,
    /// Routing file (YAML: tenants, keys, endpoints, peers), hot-reloaded on change.
    #[arg(
        long,
        env = "ANSHIN_GATEWAY_ROUTING_FILE",
        required_unless_present = "kube",
        conflicts_with = "kube"
    )]
    pub routing_file: Option<PathBuf>,
    /// Read the routing table, tenants and keys from the Kubernetes API instead of a file.
    #[arg(long)]
    pub kube: bool,
    /// Namespace to watch with `--kube` (default: all namespaces).
    #[arg(long)]
    pub kube_namespace: Option<String>,
    /// Peer region gateways (`http://host:port`, comma separated) used with `--kube`.
    #[arg(long, value_delimiter = ',')]
    pub peers: Vec<String>,
    /// Audit log file, or `-` for stdout.
    #[arg(long, default_value = "-", env = "ANSHIN_GATEWAY_AUDIT_LOG")]
    pub audit_log: String,
    /// Export traces over OTLP/HTTP to this collector (base URL, e.g. `http://127.0.0.1:4318`; spans go
    /// to `<url>/v1/traces`). Off when unset. The service name is `OTEL_SERVICE_NAME` or `anshin-gateway`.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// When to fsync the audit log: `always`, `never`, or an interval such as `200ms` or `1s`.
    #[arg(long, default_value = "always", value_parser = parse_fsync)]
    pub audit_fsync: FsyncPolicy,
    /// Largest request body in bytes (larger → 413).
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Backend connect timeout.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// How long to wait for a backend's headers or first streamed bytes.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub response_timeout: Duration,
    /// Interval of active backend health checks.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub health_interval: Duration,
    /// How often the routing file is checked for changes.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub reload_interval: Duration,
}

/// Parses a duration such as `30s`, `500ms`, `2m` or `1h 30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration like 30s, 500ms or 2m: {e}"))
}

fn parse_fsync(s: &str) -> Result<FsyncPolicy, String> {
    match s {
        "always" => Ok(FsyncPolicy::Always),
        "never" => Ok(FsyncPolicy::Never),
        other => parse_duration(other).map(FsyncPolicy::Interval),
    }
}

/// Runs a parsed command line.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(args) => {
            let telemetry = match crate::telemetry::init(args.otlp_endpoint.as_deref()) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("ERROR: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = tokio::runtime::Runtime::new()
                .context("starting the tokio runtime")
                .and_then(|rt| rt.block_on(serve(*args)));
            telemetry.shutdown();
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ERROR: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Verify { path } => match verify_file(&path) {
            Ok(n) => {
                println!("OK: {n} records, chain intact ({})", path.display());
                ExitCode::SUCCESS
            }
            Err(b) => {
                println!("BROKEN: {} at {b}", path.display());
                ExitCode::FAILURE
            }
        },
        Command::HashKey => {
            let mut key = String::new();
            if std::io::stdin().read_line(&mut key).is_err() {
                eprintln!("ERROR: could not read the key from stdin");
                return ExitCode::FAILURE;
            }
            let h = hash_key(key.trim_end_matches(['\n', '\r']));
            println!(
                "sha256: {}\nfingerprint: {}",
                hex::encode(h),
                fingerprint(&h)
            );
            ExitCode::SUCCESS
        }
    }
}

/// `serve`: load the guardrail dictionary, open the audit log, start the table source, serve.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let detector = tokio::task::spawn_blocking(anshin_guardrails::Detector::load_default)
        .await?
        .context("loading the guardrails dictionary (run scripts/setup.sh, or set ANSHIN_GUARDRAILS_DICT)")?;
    let metrics = Metrics::new();
    let sink = if args.audit_log == "-" {
        Sink::Stdout
    } else {
        Sink::File(PathBuf::from(&args.audit_log))
    };
    let audit_errors = metrics.audit_errors.clone();
    let audit = AuditLog::start(sink, args.audit_fsync, move || audit_errors.inc())?;
    let table = SharedTable::new();
    let options = GatewayOptions {
        max_body_bytes: args.max_body_bytes,
        connect_timeout: args.connect_timeout,
        response_timeout: args.response_timeout,
        health_interval: args.health_interval,
        ..GatewayOptions::default()
    };
    let gw = Gateway::new(
        table.clone(),
        Arc::new(detector),
        metrics.clone(),
        Some(audit.clone()),
        options,
    );
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let source = start_source(&args, table, metrics).await?;
    tracing::info!(addr = %args.listen, "gateway listening");
    let served = gw.serve(listener, shutdown_signal()).await;
    source.abort();
    // The writer batches records; write and sync what the last requests queued before exiting.
    if !tokio::task::block_in_place(|| audit.flush(Duration::from_secs(5))) {
        tracing::error!("audit records of the last requests may not have been written");
    }
    served.context("serving HTTP")
}

async fn start_source(
    args: &ServeArgs,
    table: SharedTable,
    metrics: Metrics,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    if let Some(path) = args.routing_file.clone() {
        // Load once in the foreground so that a broken file stops start-up with a clear message.
        crate::file_source::load(&path)?;
        let interval = args.reload_interval;
        return Ok(tokio::spawn(async move {
            if let Err(e) = crate::file_source::run(path, table, metrics, interval).await {
                tracing::error!(error = %e, "routing file source stopped");
            }
        }));
    }
    crate::kube_source::start(
        args.kube_namespace.clone(),
        args.peers.clone(),
        table,
        metrics,
    )
    .await
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
