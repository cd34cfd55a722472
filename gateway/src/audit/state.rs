//! What the request path and the writer thread share: whether records can be persisted, how many
//! were lost, and the last durable chain position.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::chain::Position;
use super::{AuditMetrics, OnFailure};

/// Shared by every [`super::AuditLog`] handle and the writer thread.
pub(super) struct Shared {
    on_failure: OnFailure,
    /// The last write or sync failed and its records wait for a retry.
    write_failing: AtomicBool,
    /// A record found the queue full; cleared when the writer has caught up.
    overflow: AtomicBool,
    /// Records lost since the last `lost` record was made.
    lost: AtomicU64,
    /// The last durable record.
    head: Mutex<Position>,
    metrics: AuditMetrics,
}

impl Shared {
    /// State of a log whose chain stands at `head`.
    pub(super) fn new(on_failure: OnFailure, head: Position, metrics: AuditMetrics) -> Shared {
        metrics.head_seq.set(head.seq as i64);
        metrics.writable.set(1);
        Shared {
            on_failure,
            write_failing: AtomicBool::new(false),
            overflow: AtomicBool::new(false),
            lost: AtomicU64::new(0),
            head: Mutex::new(head),
            metrics,
        }
    }

    /// Whether every record so far could be queued and everything queued can be written.
    pub(super) fn healthy(&self) -> bool {
        !self.write_failing.load(Ordering::Relaxed) && !self.overflow.load(Ordering::Relaxed)
    }

    /// Whether new requests must be refused (policy `reject` while unhealthy).
    pub(super) fn refuses(&self) -> bool {
        self.on_failure == OnFailure::Reject && !self.healthy()
    }

    /// The policy.
    pub(super) fn on_failure(&self) -> OnFailure {
        self.on_failure
    }

    /// Counts `n` records that will never be written.
    pub(super) fn lose(&self, n: u64) {
        self.lost.fetch_add(n, Ordering::Relaxed);
        self.metrics.lost.inc_by(n);
    }

    /// Whether records were lost since the last `lost` record.
    pub(super) fn has_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed) > 0
    }

    /// Lost records not yet reported in a `lost` record; resets the count.
    pub(super) fn take_lost(&self) -> u64 {
        self.lost.swap(0, Ordering::Relaxed)
    }

    /// Puts back a count taken with [`Shared::take_lost`] that could not be reported.
    pub(super) fn restore_lost(&self, n: u64) {
        self.lost.fetch_add(n, Ordering::Relaxed);
    }

    /// Marks the queue as having overflowed; returns whether it already was.
    pub(super) fn mark_overflow(&self) -> bool {
        let was = self.overflow.swap(true, Ordering::Relaxed);
        self.metrics.writable.set(0);
        was
    }

    /// Records the writer's state after a write attempt; `caught_up` when the queue was empty.
    pub(super) fn set_writer(&self, failing: bool, caught_up: bool) {
        self.write_failing.store(failing, Ordering::Relaxed);
        if caught_up && !failing {
            self.overflow.store(false, Ordering::Relaxed);
        }
        self.metrics.writable.set(i64::from(self.healthy()));
    }

    /// Counts a failed write or sync.
    pub(super) fn count_write_error(&self) {
        self.metrics.write_errors.inc();
    }

    /// Publishes a new durable head.
    pub(super) fn set_head(&self, head: &Position) {
        self.metrics.head_seq.set(head.seq as i64);
        *self.head.lock().unwrap_or_else(|p| p.into_inner()) = head.clone();
    }

    /// The last durable record.
    pub(super) fn head(&self) -> Position {
        self.head.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
