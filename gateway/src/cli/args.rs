//! The flags of `serve` and `verify`, with the parsers of their values.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::audit::{FsyncPolicy, OnFailure, Position};
use crate::table::Peer;

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
