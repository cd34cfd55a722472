//! Command line: `serve`, `verify` (an audit chain) and `hash-key` (API keys and peer tokens). `main.rs` only parses and calls
//! [`main`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::audit::{
    AuditConfig, AuditLog, ChainKey, FsyncPolicy, OnFailure, Position, Sink, VerifyOptions,
    verify_log,
};
use crate::keys::{fingerprint, hash_key};
use crate::listener::ConnLimits;
use crate::metrics::Metrics;
use crate::peer::Peering;
use crate::server::{Gateway, GatewayOptions};
use crate::table::{Peer, SharedTable};

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
    /// Verify an audit log's hash chain (its rotated files first); exit 0 when intact, 1 at the
    /// first broken record or when it ends before a published head.
    Verify(VerifyArgs),
    /// Read an API key or peer token from stdin; print its sha256 (for the routing file or
    /// `--accept-peer-token-file`) and fingerprint.
    HashKey,
}

/// Flags of `serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:8080", env = "ANSHIN_GATEWAY_LISTEN")]
    pub listen: SocketAddr,
    /// Address of `/metrics` (tenant names and activity), never the public port: loopback by default;
    /// in a pod, the pod IP or `0.0.0.0` with a NetworkPolicy admitting only the monitoring namespace.
    #[arg(
        long,
        default_value = "127.0.0.1:9464",
        env = "ANSHIN_GATEWAY_METRICS_LISTEN"
    )]
    pub metrics_listen: SocketAddr,
    /// Connections served at once; more wait in the kernel's accept queue.
    #[arg(long, default_value_t = 10_000, value_parser = parse_count)]
    pub max_connections: usize,
    /// Time a client has to send a request's headers (slow clients are cut off), also the longest
    /// idle keep-alive.
    #[arg(long, default_value = "10s", value_parser = parse_positive_duration)]
    pub header_read_timeout: Duration,
    /// Time a client has to send a request's body once authenticated (408 after it).
    #[arg(long, default_value = "30s", value_parser = parse_positive_duration)]
    pub body_read_timeout: Duration,
    /// Longest silence of a backend (or peer) inside a streamed answer: the stream then ends with an
    /// error event and the tenant's concurrency slot is released.
    #[arg(long, default_value = "60s", value_parser = parse_positive_duration)]
    pub stream_idle_timeout: Duration,
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
    /// Peer region gateways used with `--kube`, comma separated, in order of preference: `URL` or
    /// `URL=ZONE` with the region's residency (e.g. `https://gw.osaka.example=jp`). `https://`, or
    /// `http://` on a loopback host only.
    #[arg(long, value_delimiter = ',', value_parser = parse_peer)]
    pub peers: Vec<Peer>,
    /// PEM file of the CA(s) that peer gateways' certificates must chain to; without it no `https://`
    /// peer is trusted.
    #[arg(long, env = "ANSHIN_GATEWAY_PEER_CA_FILE")]
    pub peer_ca_file: Option<PathBuf>,
    /// File holding the token this gateway presents to peer gateways (`x-anshin-peer-token`); without
    /// it nothing is forwarded to peers.
    #[arg(long, env = "ANSHIN_GATEWAY_PEER_TOKEN_FILE")]
    pub peer_token_file: Option<PathBuf>,
    /// File of the peer tokens this gateway accepts, one `<sha256 hex> <peer name>` a line (`hash-key`
    /// prints the hash); without it requests from peers are refused.
    #[arg(long, env = "ANSHIN_GATEWAY_ACCEPT_PEER_TOKEN_FILE")]
    pub accept_peer_token_file: Option<PathBuf>,
    /// PEM certificate chain to serve HTTPS with (with `--tls-key`); plain HTTP without it.
    #[arg(long, requires = "tls_key", env = "ANSHIN_GATEWAY_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, requires = "tls_cert", env = "ANSHIN_GATEWAY_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Audit log file, or `-` for stdout (a new chain on every start: not for production).
    #[arg(long, default_value = "-", env = "ANSHIN_GATEWAY_AUDIT_LOG")]
    pub audit_log: String,
    /// Records the audit queue holds; also the most records kept for a retry while the log cannot be
    /// written.
    #[arg(long, default_value_t = 10_000, value_parser = parse_count)]
    pub audit_queue_capacity: usize,
    /// While audit records cannot be persisted: `reject` (503 to new requests, /readyz 503) or
    /// `continue` (serve; records beyond what can be kept are lost and counted).
    #[arg(long, default_value = "reject", value_parser = parse_on_failure)]
    pub audit_on_failure: OnFailure,
    /// Rotate the audit file before it would grow past this size (bytes, or with a `K`, `M`, `G`
    /// suffix: powers of 1024).
    #[arg(long, default_value = "100M", value_parser = parse_bytes)]
    pub audit_max_bytes: u64,
    /// Rotated audit files to keep (older ones are deleted); 0 keeps all.
    #[arg(long, default_value_t = 0)]
    pub audit_keep: usize,
    /// File holding the audit chain's HMAC-SHA256 key (e.g. a mounted Secret; at least 32 bytes).
    /// Without it the chain is plain SHA-256.
    #[arg(long, env = "ANSHIN_GATEWAY_AUDIT_HMAC_KEY_FILE")]
    pub audit_hmac_key_file: Option<PathBuf>,
    /// How often the audit chain head (seq and hash) is logged.
    #[arg(long, default_value = "60s", value_parser = parse_positive_duration)]
    pub audit_head_interval: Duration,
    /// Interval over which unauthenticated requests are counted per source before one record per
    /// source and status is written.
    #[arg(long, default_value = "10s", value_parser = parse_positive_duration)]
    pub audit_unauthenticated_interval: Duration,
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

/// Flags of `verify`.
#[derive(Args, Debug, Clone)]
pub struct VerifyArgs {
    /// The audit log (JSON lines); its rotated files `PATH.1`, `PATH.2`, … are read first.
    pub path: PathBuf,
    /// The key file the log was written with (`serve --audit-hmac-key-file`).
    #[arg(long)]
    pub hmac_key_file: Option<PathBuf>,
    /// A published head `SEQ:HASH` (the gateway's `audit chain head` log line): the log must reach
    /// it, with that hash at that seq.
    #[arg(long)]
    pub head: Option<Position>,
    /// Accept a chain that starts after seq 1 (older rotated files deleted by `--audit-keep`).
    #[arg(long)]
    pub allow_pruned: bool,
}

/// Parses a duration such as `30s`, `500ms`, `2m` or `1h 30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration like 30s, 500ms or 2m: {e}"))
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).and_then(|d| {
        if d.is_zero() {
            Err(format!("`{s}` must be longer than zero"))
        } else {
            Ok(d)
        }
    })
}

/// Parses a `--peers` entry: `URL` or `URL=ZONE`.
pub fn parse_peer(s: &str) -> Result<Peer, String> {
    match s.rsplit_once('=') {
        Some((url, zone)) => Peer::new(url.trim(), Some(zone.trim().to_owned())),
        None => Peer::new(s.trim(), None),
    }
}

fn parse_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{s}` is not a count of at least 1")),
    }
}

fn parse_on_failure(s: &str) -> Result<OnFailure, String> {
    match s {
        "reject" => Ok(OnFailure::Reject),
        "continue" => Ok(OnFailure::Continue),
        other => Err(format!("`{other}` is not `reject` or `continue`")),
    }
}

/// Parses a size: bytes, or a number with a `K`, `M` or `G` suffix (powers of 1024; `Ki`, `KiB`
/// and the like are accepted too).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = match &s[digits.len()..] {
        "" | "B" => 1u64,
        "K" | "Ki" | "KiB" => 1 << 10,
        "M" | "Mi" | "MiB" => 1 << 20,
        "G" | "Gi" | "GiB" => 1 << 30,
        _ => return Err(format!("`{s}` is not a size like 104857600, 100M or 1G")),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{s}` is not a size like 104857600, 100M or 1G"))
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
        Command::Verify(args) => verify(&args),
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

/// `verify`: prints `OK: …`, `BROKEN: …` or `TRUNCATED: …`.
fn verify(args: &VerifyArgs) -> ExitCode {
    let key = match &args.hmac_key_file {
        Some(p) => match ChainKey::load(p) {
            Ok(k) => k,
            Err(e) => {
                eprintln!("ERROR: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => ChainKey::none(),
    };
    let opts = VerifyOptions {
        key,
        head: args.head.clone(),
        allow_pruned: args.allow_pruned,
    };
    let path = args.path.display();
    match verify_log(&args.path, &opts) {
        Ok(v) => {
            let head = match &args.head {
                Some(h) => format!(", reaches the published head seq {}", h.seq),
                None => String::new(),
            };
            println!(
                "OK: {} records (seq {}..{}) in {} file(s), chain intact{head} ({path})",
                v.records, v.first_seq, v.last.seq, v.files
            );
            ExitCode::SUCCESS
        }
        Err(e @ crate::audit::VerifyError::Truncated { .. }) => {
            println!("TRUNCATED: {path}: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("BROKEN: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `serve`: load the guardrail dictionary, open the audit log, start the table source, serve.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let detector = tokio::task::spawn_blocking(anshin_guardrails::Detector::load_default)
        .await?
        .context("loading the guardrails dictionary (run scripts/setup.sh, or set ANSHIN_GUARDRAILS_DICT)")?;
    let metrics = Metrics::new();
    let audit = AuditLog::start(audit_config(&args)?, metrics.audit())?;
    let head_task = tokio::spawn(crate::audit::publish_head(
        audit.clone(),
        args.audit_head_interval,
    ));
    let table = SharedTable::new();
    let options = GatewayOptions {
        max_body_bytes: args.max_body_bytes,
        connect_timeout: args.connect_timeout,
        response_timeout: args.response_timeout,
        health_interval: args.health_interval,
        body_read_timeout: args.body_read_timeout,
        stream_idle_timeout: args.stream_idle_timeout,
        peering: peering(&args)?,
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
    let metrics_listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| {
            format!(
                "binding the metrics listener {} (choose another with --metrics-listen)",
                args.metrics_listen
            )
        })?;
    let metrics_addr = metrics_listener.local_addr()?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(crate::peer::tls::server_config(cert, key)?),
        _ => None,
    };
    let source = start_source(&args, table, metrics).await?;
    tracing::info!(addr = %args.listen, metrics = %metrics_addr, tls = tls.is_some(), "gateway listening");
    let limits = ConnLimits {
        max_connections: args.max_connections,
        header_read_timeout: args.header_read_timeout,
    };
    let served = gw
        .serve(listener, metrics_listener, limits, tls, shutdown_signal())
        .await;
    source.abort();
    head_task.abort();
    // The writer batches records; write and sync what the last requests queued before exiting.
    if !tokio::task::block_in_place(|| audit.flush(Duration::from_secs(5))) {
        tracing::error!("audit records of the last requests may not have been written");
    }
    audit.log_head();
    served.context("serving HTTP")
}

/// Peer settings from the flags; an unreadable or malformed file stops start-up.
fn peering(args: &ServeArgs) -> anyhow::Result<Peering> {
    let tls = match &args.peer_ca_file {
        Some(p) => Some(Arc::new(crate::peer::tls::client_config(p)?)),
        None => None,
    };
    if tls.is_none() && args.peers.iter().any(|p| p.url.starts_with("https://")) {
        anyhow::bail!(
            "--peers lists https:// peers: give --peer-ca-file with the CA their certificates chain to"
        );
    }
    Ok(Peering {
        tls,
        token: args
            .peer_token_file
            .as_deref()
            .map(crate::peer::load_token)
            .transpose()?,
        accepted: match &args.accept_peer_token_file {
            Some(p) => crate::peer::load_accepted(p)?,
            None => Default::default(),
        },
    })
}

fn audit_config(args: &ServeArgs) -> anyhow::Result<AuditConfig> {
    let sink = if args.audit_log == "-" {
        Sink::Stdout
    } else {
        Sink::File(PathBuf::from(&args.audit_log))
    };
    let key = match &args.audit_hmac_key_file {
        Some(p) => ChainKey::load(p)?,
        None => ChainKey::none(),
    };
    Ok(AuditConfig {
        sink,
        fsync: args.audit_fsync,
        queue_capacity: args.audit_queue_capacity,
        on_failure: args.audit_on_failure,
        max_bytes: args.audit_max_bytes,
        keep: args.audit_keep,
        key,
        unauthenticated_interval: args.audit_unauthenticated_interval,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_suffixes_and_refuse_zero_or_junk() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("2K"), Ok(2048));
        assert_eq!(parse_bytes("100M"), Ok(100 << 20));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        for bad in ["0", "", "M", "10MB", "1.5G", "-1", "99999999999999999999G"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn audit_flags_default_to_reject_100_mib_keep_all_and_a_minute_head() {
        let cli = Cli::try_parse_from(["anshin-gateway", "serve", "--routing-file", "r.yaml"])
            .expect("parse");
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        assert_eq!(args.audit_on_failure, OnFailure::Reject);
        assert_eq!(args.audit_queue_capacity, 10_000);
        assert_eq!(args.audit_max_bytes, 100 << 20);
        assert_eq!(args.audit_keep, 0);
        assert_eq!(args.audit_head_interval, Duration::from_secs(60));
        assert_eq!(args.audit_unauthenticated_interval, Duration::from_secs(10));
        let bad = [
            "anshin-gateway",
            "serve",
            "--routing-file",
            "r",
            "--audit-on-failure",
            "drop",
        ];
        assert!(Cli::try_parse_from(bad).is_err());
    }

    #[test]
    fn peers_flag_takes_an_optional_residency_and_refuses_plain_http_off_loopback() {
        let ok = parse_peer("https://gw.osaka.example:8443=jp").expect("valid");
        assert_eq!(
            (ok.url.as_str(), ok.residency.as_deref()),
            ("https://gw.osaka.example:8443", Some("jp"))
        );
        let plain = parse_peer("http://127.0.0.1:9000/").expect("loopback");
        assert_eq!(
            (plain.url.as_str(), plain.residency),
            ("http://127.0.0.1:9000", None)
        );
        for bad in [
            "http://gw.osaka.example:8080",
            "https://gw=JP",
            "gw.osaka.example",
        ] {
            assert!(parse_peer(bad).is_err(), "{bad}");
        }
    }
}
