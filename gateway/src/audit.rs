//! The audit log: one JSON line per request, hash-chained. Each line is the record's JSON with a
//! last field `"hash"` = hex SHA-256 of (previous record's hash, a newline, the line's text without
//! its `hash` field); the record also carries `prev_hash` and a sequence number `seq`, so an edited,
//! inserted, reordered or deleted record breaks the chain at a known line. Records never hold prompt
//! or answer text: only ids, names, counts, verdicts and timings.
//!
//! A single writer thread owns the file and assigns `seq` and hashes in order; the request path only
//! sends records over a channel.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The hash before the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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

/// A chained record as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Chained {
    seq: u64,
    prev_hash: String,
    #[serde(flatten)]
    event: Event,
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

/// The first broken record of a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct Broken {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

fn chain_hash(prev: &str, body: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(body.as_bytes());
    hex::encode(h.finalize())
}

/// Splits a line into (body without hash, hash).
fn split_line(line: &str) -> Option<(String, &str)> {
    let idx = line.rfind(",\"hash\":\"")?;
    let hash = line[idx + 9..].strip_suffix("\"}")?;
    Some((format!("{}}}", &line[..idx]), hash))
}

/// Checks one line against the previous (seq, hash); returns its own.
fn check_line(line: &str, prev: &(u64, String)) -> Result<(u64, String), String> {
    let (body, hash) = split_line(line).ok_or("no trailing \"hash\" field")?;
    let rec: Chained =
        serde_json::from_str(&body).map_err(|e| format!("not a valid record: {e}"))?;
    if rec.prev_hash != prev.1 {
        return Err("prev_hash does not match the previous record (a record was edited, removed or inserted)".into());
    }
    if rec.seq != prev.0 + 1 {
        return Err(format!(
            "seq {} follows seq {} (a record is missing)",
            rec.seq, prev.0
        ));
    }
    if chain_hash(&prev.1, &body) != hash {
        return Err("hash does not match the record's content (the record was edited)".into());
    }
    Ok((rec.seq, hash.to_owned()))
}

/// Verifies a whole chain; returns the number of records, or the first broken one.
pub fn verify(reader: impl BufRead) -> Result<u64, Broken> {
    let mut prev = (0u64, GENESIS.to_owned());
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| Broken {
            line: i + 1,
            reason: format!("unreadable: {e}"),
        })?;
        prev = check_line(&line, &prev).map_err(|reason| Broken {
            line: i + 1,
            reason,
        })?;
    }
    Ok(prev.0)
}

/// Verifies the chain in a file.
pub fn verify_file(path: &Path) -> Result<u64, Broken> {
    let f = File::open(path).map_err(|e| Broken {
        line: 0,
        reason: format!("cannot open {}: {e}", path.display()),
    })?;
    verify(BufReader::new(f))
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

/// The writer thread's state: the sink, the chain position and the lines not yet written.
struct Writer<F> {
    out: Box<dyn Write + Send>,
    file: Option<File>,
    prev: (u64, String),
    fsync: FsyncPolicy,
    on_error: F,
    batch: Vec<u8>,
}

impl<F: Fn()> Writer<F> {
    /// Takes records in batches — everything queued — and writes each batch with one `write`
    /// followed, per policy, by one `fsync` (group commit). `always` waits on the channel, so a record
    /// is on disk as soon as the disk allows; `interval` and `never` poll every [`BATCH_TICK`] while
    /// records keep coming and wait on the channel only when idle.
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let mut last_sync = Instant::now();
        let mut dirty = false;
        let mut busy = false;
        loop {
            let mut acks = Vec::new();
            let mut open = true;
            if busy && self.fsync != FsyncPolicy::Always {
                std::thread::sleep(BATCH_TICK);
            } else {
                let wait = match self.fsync {
                    FsyncPolicy::Interval(d) if dirty => d.saturating_sub(last_sync.elapsed()),
                    _ => Duration::MAX,
                };
                match rx.recv_timeout(wait) {
                    Ok(m) => self.take(m, &mut acks),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => open = false,
                }
            }
            loop {
                match rx.try_recv() {
                    Ok(m) => self.take(m, &mut acks),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            busy = !self.batch.is_empty();
            if busy {
                self.write_batch();
                dirty = true;
            }
            let due = match self.fsync {
                FsyncPolicy::Always => true,
                FsyncPolicy::Interval(d) => last_sync.elapsed() >= d,
                FsyncPolicy::Never => false,
            };
            let stopping = !open || !acks.is_empty();
            if dirty && (due || stopping) && self.fsync != FsyncPolicy::Never {
                sync(&self.file);
                last_sync = Instant::now();
                dirty = false;
            }
            for ack in acks {
                let _ = ack.send(());
            }
            if !open {
                return;
            }
        }
    }

    fn take(&mut self, m: Msg, acks: &mut Vec<mpsc::SyncSender<()>>) {
        match m {
            Msg::Record(event) => match append(&mut self.batch, &self.prev, *event) {
                Ok(next) => self.prev = next,
                Err(e) => {
                    tracing::error!(error = %e, "encoding audit record");
                    (self.on_error)();
                }
            },
            Msg::Flush(ack) => acks.push(ack),
        }
    }

    fn write_batch(&mut self) {
        let written = self
            .out
            .write_all(&self.batch)
            .and_then(|()| self.out.flush());
        if let Err(e) = written {
            tracing::error!(error = %e, "writing audit records");
            (self.on_error)();
        }
        self.batch.clear();
    }
}

fn sync(file: &Option<File>) {
    if let Some(f) = file
        && let Err(e) = f.sync_data()
    {
        tracing::error!(error = %e, "fsync of the audit log");
    }
}

/// Appends one chained line to `batch`; returns the new chain position.
fn append(
    batch: &mut Vec<u8>,
    prev: &(u64, String),
    event: Event,
) -> serde_json::Result<(u64, String)> {
    let rec = Chained {
        seq: prev.0 + 1,
        prev_hash: prev.1.clone(),
        event,
    };
    let body = serde_json::to_string(&rec)?;
    let hash = chain_hash(&prev.1, &body);
    batch.extend_from_slice(&body.as_bytes()[..body.len() - 1]);
    batch.extend_from_slice(b",\"hash\":\"");
    batch.extend_from_slice(hash.as_bytes());
    batch.extend_from_slice(b"\"}\n");
    Ok((rec.seq, hash))
}
