//! The audit log: one JSON line per request, hash-chained. Each line is the record's JSON with a
//! last field `"hash"` = hex SHA-256 of (previous record's hash, a newline, the line's text without
//! its `hash` field); the record also carries `prev_hash` and a sequence number `seq`, so an edited,
//! inserted, reordered or deleted record breaks the chain at a known line. Records never hold prompt
//! or answer text: only ids, names, counts, verdicts and timings.
//!
//! A single writer thread owns the file and assigns `seq` and hashes in order; the request path only
//! sends records over a channel.

mod chain;
mod verify;
mod writer;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use chain::GENESIS;
use chain::{Chained, split_line};
pub use verify::{Broken, verify, verify_file};
use writer::Writer;

/// When the writer calls `fsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every record.
    Always,
    /// At most once per interval (and when the writer stops).
    Interval(Duration),
    /// Never (the OS decides).
    Never,
}

/// What happened to one request (no PII).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339 time the request arrived.
    pub time: String,
    /// Request id.
    pub request_id: String,
    /// Tenant, when authenticated.
    pub tenant: Option<String>,
    /// Key fingerprint (16 hex digits of its SHA-256), when authenticated.
    pub key_fingerprint: Option<String>,
    /// Endpoint (`model`).
    pub endpoint: Option<String>,
    /// Version that answered.
    pub model_version: Option<String>,
    /// Its digest.
    pub model_digest: Option<String>,
    /// `local`, `peer` or `none`.
    pub route: String,
    /// HTTP status sent.
    pub status: u16,
    /// How it ended: `ok`, `blocked`, `backend_error`, `client_gone`, or the error code sent.
    pub outcome: String,
    /// Input policy applied.
    pub input_policy: String,
    /// Output policy applied.
    pub output_policy: String,
    /// Input PII replaced, by entity type.
    pub input_entities: BTreeMap<String, u64>,
    /// PII the model produced on its own, by entity type.
    pub output_leaks: BTreeMap<String, u64>,
    /// Whether the answer was blocked.
    pub output_blocked: bool,
    /// Prompt tokens (backend usage when reported, else the gateway's estimate).
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Latency in milliseconds.
    pub latency_ms: u64,
}

/// Why an audit log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// File access failed.
    #[error("audit log {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The existing log's last record is broken; run `anshin-gateway verify`.
    #[error(
        "audit log {path} ends with a broken record at line {line}: {reason}; run `anshin-gateway verify`"
    )]
    Broken {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Handle to the writer thread; cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
}

/// What the request path and shutdown send to the writer.
enum Msg {
    Record(Box<Event>),
    /// Write and sync everything queued before this, then acknowledge.
    Flush(mpsc::SyncSender<()>),
}

/// Where records go.
pub enum Sink {
    /// Append to a file (the chain continues from its last record).
    File(PathBuf),
    /// Standard output (a new chain).
    Stdout,
}

/// How long the writer of an `interval` or `never` log sleeps between batches while records keep
/// coming. Sleeping instead of waiting on the channel means a request never wakes the writer thread
/// (a context switch on the request's core, just before its response goes out); records reach the OS
/// within this delay and the disk per the fsync policy.
pub const BATCH_TICK: Duration = Duration::from_millis(20);

impl AuditLog {
    /// Opens the sink and starts the writer thread.
    pub fn start(
        sink: Sink,
        fsync: FsyncPolicy,
        on_error: impl Fn() + Send + 'static,
    ) -> Result<AuditLog, AuditError> {
        let (out, prev): Opened = match &sink {
            Sink::Stdout => (Box::new(std::io::stdout()), (0, GENESIS.to_owned())),
            Sink::File(path) => open_file(path)?,
        };
        let file = match sink {
            Sink::File(p) => OpenOptions::new().append(true).open(&p).ok(),
            Sink::Stdout => None,
        };
        let (tx, rx) = mpsc::channel::<Msg>();
        let writer = Writer {
            out,
            file,
            prev,
            fsync,
            on_error,
            batch: Vec::new(),
        };
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| AuditError::Io {
                path: "<thread>".into(),
                source,
            })?;
        Ok(AuditLog { tx })
    }

    /// Queues one record.
    pub fn record(&self, event: Event) {
        if self.tx.send(Msg::Record(Box::new(event))).is_err() {
            tracing::error!("audit writer has stopped; record lost");
        }
    }

    /// Writes and syncs (unless the policy is `never`) every record queued so far; waits at most
    /// `timeout`. Called at shutdown, so that no record of a served request is lost.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (ack, done) = mpsc::sync_channel(1);
        self.tx.send(Msg::Flush(ack)).is_ok() && done.recv_timeout(timeout).is_ok()
    }
}

/// An open sink and the chain position it continues from.
type Opened = (Box<dyn Write + Send>, (u64, String));

fn open_file(path: &Path) -> Result<Opened, AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_owned(),
        source,
    };
    let mut prev = (0u64, GENESIS.to_owned());
    if path.exists() {
        let f = File::open(path).map_err(io)?;
        let mut last = None;
        for (i, line) in BufReader::new(f).lines().enumerate() {
            last = Some((i + 1, line.map_err(io)?));
        }
        if let Some((n, line)) = last {
            let broken = |reason: String| AuditError::Broken {
                path: path.to_owned(),
                line: n,
                reason,
            };
            let (body, hash) =
                split_line(&line).ok_or_else(|| broken("no trailing hash".into()))?;
            let rec: Chained = serde_json::from_str(&body).map_err(|e| broken(e.to_string()))?;
            prev = (rec.seq, hash.to_owned());
        }
    }
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    Ok((Box::new(f), prev))
}
