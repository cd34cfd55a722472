//! The audit log: one hash-chained JSON line per authenticated request, plus per-source counts of
//! unauthenticated ones, and records that say when something was lost or cut. Records never hold
//! prompt or answer text: only ids, names, counts, verdicts and timings.
//!
//! Data flow: the request path hands a finished request's [`Event`] to [`AuditLog::record`], which
//! either counts it per source ([`flood`], when it never authenticated) or puts it on a bounded
//! queue. One writer thread ([`writer`]) owns the file: it assigns `seq` and hashes in order
//! ([`chain`]), writes in batches, rotates by size ([`rotate`], [`sink`]) and keeps what could not
//! be written for a retry. While records cannot be persisted, [`AuditLog::refuses_requests`] tells
//! the server to answer 503 (policy `reject`). At start-up the chain continues from the file's last
//! record ([`recover`]); `verify` ([`verify`]) checks a log against an optional published head.

mod batch;
mod chain;
mod flood;
mod record;
mod recover;
mod rotate;
mod sink;
mod state;
#[cfg(test)]
mod tests;
mod verify;
mod writer;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Weak, mpsc};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};

pub use chain::{ChainKey, GENESIS, KeyError, MIN_KEY_BYTES, Position};
pub use flood::{MAX_SOURCES, source_key};
pub use record::{Event, Lost, Record, Recovered, Unauthenticated};
pub use rotate::{rotated_files, rotated_name};
pub use verify::{Verified, VerifyError, VerifyOptions, verify, verify_log};
pub use writer::RETRY_INTERVAL;

use flood::Flood;
use sink::{FileSink, Medium, StdoutSink};
use state::Shared;
use writer::Writer;

/// When the writer calls `fsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every batch.
    Always,
    /// At most once per interval (and when the writer stops).
    Interval(Duration),
    /// Never (the OS decides).
    Never,
}

/// What the gateway does while audit records cannot be persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Answer 503 to new requests and report not ready until records can be written again.
    Reject,
    /// Keep serving; records beyond what the writer can hold are lost (and counted).
    Continue,
}

impl OnFailure {
    /// The flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Reject => "reject",
            OnFailure::Continue => "continue",
        }
    }
}

/// Why an audit log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// File access failed.
    #[error("audit log {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The log ends with more than one unreadable line, or a rotated file is incomplete.
    #[error(
        "audit log {} ends with records that cannot be read ({reason}); check it with `anshin-gateway verify`, then move it aside",
        path.display()
    )]
    Broken {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The last record's hash does not verify with the configured key.
    #[error(
        "the last record (seq {seq}) of audit log {} does not verify {}: it was written {}, or edited; start with the key it was written with, or move the log and its rotated files aside",
        path.display(),
        if *keyed { "with the key of --audit-hmac-key-file" } else { "as a plain SHA-256 chain" },
        if *keyed { "without a key or with another one" } else { "with an HMAC key" }
    )]
    KeyMismatch {
        /// The file.
        path: PathBuf,
        /// The last record's seq.
        seq: u64,
        /// Whether a key was configured.
        keyed: bool,
    },
    /// A thread could not be started.
    #[error("starting the audit writer thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Where records go.
#[derive(Debug, Clone)]
pub enum Sink {
    /// Append to a file (the chain continues from its last record; rotated by size).
    File(PathBuf),
    /// Standard output (a new chain on every start, no rotation: not for production).
    Stdout,
}

/// How the audit log is kept.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Where records go.
    pub sink: Sink,
    /// When to sync.
    pub fsync: FsyncPolicy,
    /// Records the queue holds, and the most the writer keeps for a retry.
    pub queue_capacity: usize,
    /// What to do while records cannot be persisted.
    pub on_failure: OnFailure,
    /// A file is rotated before it would grow past this many bytes.
    pub max_bytes: u64,
    /// Rotated files kept (0: all).
    pub keep: usize,
    /// The chain's HMAC key, if any.
    pub key: ChainKey,
    /// Interval over which unauthenticated requests are counted per source.
    pub unauthenticated_interval: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            sink: Sink::Stdout,
            fsync: FsyncPolicy::Always,
            queue_capacity: 10_000,
            on_failure: OnFailure::Reject,
            max_bytes: 100 << 20,
            keep: 0,
            key: ChainKey::none(),
            unauthenticated_interval: Duration::from_secs(10),
        }
    }
}

/// The metrics the audit log keeps up to date (registered by [`crate::metrics::Metrics`]).
#[derive(Debug, Clone)]
pub struct AuditMetrics {
    /// Failed writes, syncs and rotations.
    pub write_errors: IntCounter,
    /// Records never written.
    pub lost: IntCounter,
    /// Seq of the last durable record.
    pub head_seq: IntGauge,
    /// 1 while records can be persisted, else 0.
    pub writable: IntGauge,
}

impl Default for AuditMetrics {
    /// Unregistered metrics (for tests and tools).
    fn default() -> Self {
        let c = |n: &str| IntCounter::new(n, n).unwrap_or_else(|e| panic!("metric {n}: {e}"));
        let g = |n: &str| IntGauge::new(n, n).unwrap_or_else(|e| panic!("metric {n}: {e}"));
        AuditMetrics {
            write_errors: c("audit_write_errors"),
            lost: c("audit_lost"),
            head_seq: g("audit_head_seq"),
            writable: g("audit_writable"),
        }
    }
}

/// Handle to the audit log; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("head", &self.head())
            .field("healthy", &self.healthy())
            .finish()
    }
}

struct Inner {
    tx: mpsc::SyncSender<Msg>,
    shared: Arc<Shared>,
    flood: Flood,
}

/// What the request path and shutdown send to the writer.
enum Msg {
    Record(Record),
    /// Write and sync everything queued before this, then answer whether all of it is durable.
    Flush(mpsc::SyncSender<bool>),
}

/// How long the writer of an `interval` or `never` log sleeps between batches while records keep
/// coming. Sleeping instead of waiting on the channel means a request never wakes the writer thread
/// (a context switch on the request's core, just before its response goes out); records reach the OS
/// within this delay and the disk per the fsync policy.
pub const BATCH_TICK: Duration = Duration::from_millis(20);

impl AuditLog {
    /// Opens the sink (continuing its chain, cutting a torn last line) and starts the writer.
    pub fn start(config: AuditConfig, metrics: AuditMetrics) -> Result<AuditLog, AuditError> {
        let (medium, head, recovered) = open_sink(&config)?;
        AuditLog::launch(config, metrics, medium, head, recovered)
    }

    /// Starts the writer on an opened medium, continuing the chain at `head`.
    fn launch(
        config: AuditConfig,
        metrics: AuditMetrics,
        medium: Box<dyn Medium>,
        head: Position,
        recovered: Option<Recovered>,
    ) -> Result<AuditLog, AuditError> {
        if !config.key.is_keyed() {
            tracing::warn!(
                "audit chain is plain SHA-256: anyone who can write the file can rewrite it undetected; set --audit-hmac-key-file"
            );
        }
        let shared = Arc::new(Shared::new(config.on_failure, head.clone(), metrics));
        let capacity = config.queue_capacity.max(1);
        let (tx, rx) = mpsc::sync_channel::<Msg>(capacity);
        let mut writer = Writer::new(
            medium,
            config.key,
            head,
            config.fsync,
            capacity,
            shared.clone(),
        );
        if let Some(r) = recovered {
            tracing::warn!(
                dropped_bytes = r.dropped_bytes,
                "audit log ended with an incomplete line; cut it, a `recovered` record follows"
            );
            writer.accept(Record::Recovered(r));
        }
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(AuditError::Thread)?;
        let inner = Arc::new(Inner {
            tx,
            shared,
            flood: Flood::new(config.unauthenticated_interval),
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("audit-unauthenticated".into())
            .spawn(move || write_unauthenticated_every(weak, config.unauthenticated_interval))
            .map_err(AuditError::Thread)?;
        Ok(AuditLog { inner })
    }

    /// Records a finished request. One that never authenticated (no tenant) is counted under its
    /// `source` and written with others of the same source and status once per interval.
    pub fn record(&self, event: Event, source: Option<IpAddr>) {
        if event.tenant.is_none() {
            self.inner.flood.count(source, event.status, &event.outcome);
            return;
        }
        self.enqueue(Record::Request(Box::new(event)));
    }

    fn enqueue(&self, record: Record) {
        let shared = &self.inner.shared;
        match self.inner.tx.try_send(Msg::Record(record)) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(_)) => {
                shared.lose(1);
                if !shared.mark_overflow() {
                    tracing::error!(
                        on_failure = shared.on_failure().as_str(),
                        "audit queue is full: records are being lost until the writer catches up"
                    );
                }
            }
            Err(mpsc::TrySendError::Disconnected(_)) => {
                shared.lose(1);
                tracing::error!("audit writer has stopped; record lost");
            }
        }
    }

    /// Whether records are being persisted (no write failure waiting for a retry, no full queue).
    pub fn healthy(&self) -> bool {
        self.inner.shared.healthy()
    }

    /// Whether new requests must be refused: policy `reject` and records cannot be persisted.
    pub fn refuses_requests(&self) -> bool {
        self.inner.shared.refuses()
    }

    /// The last durable record's position.
    pub fn head(&self) -> Position {
        self.inner.shared.head()
    }

    /// Logs the chain head, so that a copy of it lives outside the audit file (`verify --head`).
    pub fn log_head(&self) {
        let head = self.head();
        tracing::info!(audit_head_seq = head.seq, audit_head_hash = %head.hash, "audit chain head");
    }

    /// Writes the unauthenticated counts so far, then writes and syncs (unless the policy is
    /// `never`) every record queued; waits at most `timeout`. Called at shutdown, so that no record
    /// of a served request is lost. False when not everything could be made durable.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.inner.write_unauthenticated();
        let (ack, done) = mpsc::sync_channel(1);
        self.inner.tx.send(Msg::Flush(ack)).is_ok() && done.recv_timeout(timeout) == Ok(true)
    }
}

impl Inner {
    /// Queues one record per source and status counted since the last call.
    fn write_unauthenticated(&self) {
        for r in self.flood.take() {
            // Not the request path: waiting for room is better than losing the counts.
            if self
                .tx
                .send(Msg::Record(Record::Unauthenticated(r)))
                .is_err()
            {
                self.shared.lose(1);
            }
        }
    }
}

/// The thread that writes unauthenticated counts every `interval` until the log is dropped.
fn write_unauthenticated_every(log: Weak<Inner>, interval: Duration) {
    loop {
        std::thread::sleep(interval);
        match log.upgrade() {
            Some(inner) => inner.write_unauthenticated(),
            None => return,
        }
    }
}

/// Logs the chain head every `every` (the caller aborts the task).
pub async fn publish_head(log: AuditLog, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        log.log_head();
    }
}

type OpenedSink = (Box<dyn Medium>, Position, Option<Recovered>);

fn open_sink(config: &AuditConfig) -> Result<OpenedSink, AuditError> {
    match &config.sink {
        Sink::Stdout => {
            tracing::warn!(
                "audit records go to stdout: the chain starts again at seq 1 on every start and is not rotated; use --audit-log FILE in production"
            );
            Ok((Box::new(StdoutSink), Position::genesis(), None))
        }
        Sink::File(path) => {
            sink::ignore_sigxfsz();
            let o = recover::open(path, &config.key)?;
            let file = FileSink::new(
                path.clone(),
                o.file,
                o.len,
                config.max_bytes,
                config.keep,
                o.next_rotation,
            );
            Ok((Box::new(file), o.head, o.recovered))
        }
    }
}
