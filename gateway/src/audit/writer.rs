//! The writer thread: takes queued records in batches, chains them, writes and syncs them (group
//! commit), rotates files by size, and keeps records that could not be written for a retry — so
//! the chain never names a record that is not in the file. Records beyond what it may keep are
//! counted as lost and reported by a `lost` record once writing works again.

use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use super::batch::Batch;
use super::chain::{ChainKey, Position, append};
use super::record::{Lost, Record};
use super::sink::Medium;
use super::state::Shared;
use super::{BATCH_TICK, FsyncPolicy, Msg};

/// How long the writer waits before it retries a failed write or sync.
pub const RETRY_INTERVAL: Duration = Duration::from_millis(250);

/// The writer thread's state.
pub(super) struct Writer {
    medium: Box<dyn Medium>,
    key: ChainKey,
    /// The position after the last record encoded (written or not).
    head: Position,
    /// Encoded, not yet written.
    pending: Batch,
    /// Written, not yet synced (empty with policy `never`).
    unsynced: Batch,
    fsync: FsyncPolicy,
    /// The most records `pending` may hold; more are lost.
    capacity: usize,
    shared: Arc<Shared>,
    failing: bool,
    retry_at: Instant,
    last_sync: Instant,
}

/// How the writer waits for its next round.
enum Wait {
    /// Sleep, then take what queued up (records keep coming: batch them without being woken).
    Sleep(Duration),
    /// Wait on the queue at most this long.
    Recv(Duration),
}

impl Writer {
    /// A writer continuing the chain at `head` on `medium`.
    pub(super) fn new(
        medium: Box<dyn Medium>,
        key: ChainKey,
        head: Position,
        fsync: FsyncPolicy,
        capacity: usize,
        shared: Arc<Shared>,
    ) -> Writer {
        Writer {
            medium,
            key,
            head,
            pending: Batch::default(),
            unsynced: Batch::default(),
            fsync,
            capacity: capacity.max(1),
            shared,
            failing: false,
            retry_at: Instant::now(),
            last_sync: Instant::now(),
        }
    }

    /// Takes records in batches — everything queued — and writes each batch with one `write`
    /// followed, per policy, by one `fsync`. `always` waits on the queue, so a record is on disk as
    /// soon as the disk allows; `interval` and `never` poll every [`BATCH_TICK`] while records keep
    /// coming and wait on the queue only when idle. After a failure it retries every
    /// [`RETRY_INTERVAL`] (and at once on a flush).
    pub(super) fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let mut busy = false;
        loop {
            let mut acks = Vec::new();
            let (took, open) = self.receive(&rx, busy, &mut acks);
            busy = took > 0;
            self.step(!open || !acks.is_empty());
            let done = self.pending.is_empty() && self.unsynced.is_empty();
            for ack in acks {
                let _ = ack.send(done);
            }
            if !open {
                return;
            }
        }
    }

    fn wait(&self, busy: bool) -> Wait {
        if self.failing {
            return Wait::Recv(self.retry_at.saturating_duration_since(Instant::now()));
        }
        if !self.pending.is_empty() || self.shared.has_lost() {
            return Wait::Recv(Duration::ZERO);
        }
        if busy && self.fsync != FsyncPolicy::Always {
            return Wait::Sleep(BATCH_TICK);
        }
        match self.fsync {
            FsyncPolicy::Interval(d) if !self.unsynced.is_empty() => {
                Wait::Recv(d.saturating_sub(self.last_sync.elapsed()))
            }
            _ => Wait::Recv(Duration::MAX),
        }
    }

    /// Waits per [`Writer::wait`], then takes everything queued; returns (records taken, whether
    /// the queue is still open).
    fn receive(
        &mut self,
        rx: &mpsc::Receiver<Msg>,
        busy: bool,
        acks: &mut Vec<mpsc::SyncSender<bool>>,
    ) -> (usize, bool) {
        let mut took = 0;
        match self.wait(busy) {
            Wait::Sleep(d) => std::thread::sleep(d),
            Wait::Recv(d) => match rx.recv_timeout(d) {
                Ok(m) => took += self.take(m, acks),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return (took, false),
            },
        }
        loop {
            match rx.try_recv() {
                Ok(m) => took += self.take(m, acks),
                Err(mpsc::TryRecvError::Empty) => return (took, true),
                Err(mpsc::TryRecvError::Disconnected) => return (took, false),
            }
        }
    }

    fn take(&mut self, m: Msg, acks: &mut Vec<mpsc::SyncSender<bool>>) -> usize {
        match m {
            Msg::Record(r) => {
                self.accept(r);
                1
            }
            Msg::Flush(ack) => {
                acks.push(ack);
                0
            }
        }
    }

    /// Chains one record after the last one, or counts it as lost when the writer already holds
    /// as many unwritten records as it may.
    pub(super) fn accept(&mut self, record: Record) {
        if self.pending.records() >= self.capacity {
            self.shared.lose(1);
            return;
        }
        match append(&mut self.pending, &self.key, &self.head, record) {
            Ok(p) => self.head = p,
            Err(e) => {
                tracing::error!(error = %e, "encoding an audit record");
                self.shared.lose(1);
            }
        }
    }

    /// One round: write what is pending (unless a retry is not due yet), sync per policy, and
    /// publish the outcome.
    fn step(&mut self, stopping: bool) {
        if self.failing && !stopping && Instant::now() < self.retry_at {
            return;
        }
        self.report_lost();
        let ok = self.persist() && self.sync_if_due(stopping);
        if ok && self.failing {
            tracing::info!("audit log can be written again");
        }
        self.failing = !ok;
        if !ok {
            self.retry_at = Instant::now() + RETRY_INTERVAL;
        }
        self.shared.set_writer(!ok, self.pending.is_empty());
    }

    /// Chains a `lost` record for records lost since the last one. It may take the writer one
    /// record past its capacity, so that losses are reported even while records wait for a retry.
    fn report_lost(&mut self) {
        if self.pending.records() > self.capacity {
            return;
        }
        let count = self.shared.take_lost();
        if count == 0 {
            return;
        }
        tracing::warn!(
            lost = count,
            "audit records could not be kept; a `lost` record says how many"
        );
        let record = Record::Lost(Lost {
            time: jiff::Timestamp::now().to_string(),
            count,
        });
        match append(&mut self.pending, &self.key, &self.head, record) {
            Ok(p) => self.head = p,
            Err(_) => self.shared.restore_lost(count),
        }
    }

    /// Writes every pending line, rotating before a line would take the file past its size;
    /// false (with the lines still pending) on failure.
    fn persist(&mut self) -> bool {
        while !self.pending.is_empty() {
            let n = match self.medium.room() {
                None => self.pending.bytes().len(),
                Some(room) => match self.pending.fitting(room) {
                    0 if self.medium.fresh() => self.pending.first_len(),
                    0 => {
                        if !self.sync_now() {
                            return false;
                        }
                        if let Err(e) = self.medium.rotate() {
                            self.fail("rotate", &e);
                            return false;
                        }
                        continue;
                    }
                    n => n,
                },
            };
            if let Err(e) = self.medium.write(&self.pending.bytes()[..n]) {
                self.fail("write", &e);
                return false;
            }
            let written = self.pending.take_front(n);
            self.unsynced.append(written);
            if self.fsync == FsyncPolicy::Never {
                self.settle();
            }
        }
        true
    }

    fn sync_if_due(&mut self, stopping: bool) -> bool {
        let due = match self.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::Interval(d) => stopping || self.last_sync.elapsed() >= d,
            FsyncPolicy::Never => false,
        };
        self.unsynced.is_empty() || !due || self.sync_now()
    }

    /// Syncs (unless the policy is `never`); on failure the unsynced lines, cut from the file by
    /// the medium, go back in front of the pending ones.
    fn sync_now(&mut self) -> bool {
        if self.fsync == FsyncPolicy::Never {
            return true;
        }
        match self.medium.sync() {
            Ok(()) => {
                self.last_sync = Instant::now();
                self.settle();
                true
            }
            Err(e) => {
                let back = std::mem::take(&mut self.unsynced);
                self.pending.prepend(back);
                self.fail("fsync", &e);
                false
            }
        }
    }

    /// The written lines are durable (per policy): publish the new head.
    fn settle(&mut self) {
        if let Some(p) = self.unsynced.last() {
            self.shared.set_head(p);
        }
        self.unsynced = Batch::default();
    }

    fn fail(&mut self, op: &'static str, e: &std::io::Error) {
        self.shared.count_write_error();
        if !self.failing {
            tracing::error!(
                op,
                error = %e,
                waiting = self.pending.records(),
                on_failure = self.shared.on_failure().as_str(),
                "audit log cannot be written; retrying"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::audit::chain::{ChainKey, Position};
    use crate::audit::{AuditMetrics, OnFailure, VerifyOptions, verify};

    /// Records in an intact chain (panics with the first break).
    fn records(log: &[u8]) -> u64 {
        match verify(log, &VerifyOptions::default()) {
            Ok(v) => v.records,
            Err(e) => panic!("chain broken: {e}"),
        }
    }

    /// An in-memory medium whose writes fail while `broken` is set.
    #[derive(Clone, Default)]
    struct Flaky {
        data: Arc<Mutex<Vec<u8>>>,
        broken: Arc<AtomicBool>,
    }

    impl Medium for Flaky {
        fn room(&self) -> Option<u64> {
            None
        }
        fn fresh(&self) -> bool {
            false
        }
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
            if self.broken.load(Ordering::SeqCst) {
                return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
            }
            self.data.lock().expect("lock").extend_from_slice(bytes);
            Ok(())
        }
        fn sync(&mut self) -> std::io::Result<()> {
            Ok(())
        }
        fn rotate(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lost(n: u64) -> Record {
        Record::Lost(Lost {
            time: "t".into(),
            count: n,
        })
    }

    fn writer(medium: &Flaky, capacity: usize) -> (Writer, Arc<Shared>) {
        let shared = Arc::new(Shared::new(
            OnFailure::Reject,
            Position::genesis(),
            AuditMetrics::default(),
        ));
        let w = Writer::new(
            Box::new(medium.clone()),
            ChainKey::none(),
            Position::genesis(),
            FsyncPolicy::Always,
            capacity,
            shared.clone(),
        );
        (w, shared)
    }

    #[test]
    fn a_failed_write_keeps_its_records_and_the_retry_continues_the_chain() {
        let m = Flaky::default();
        let (mut w, shared) = writer(&m, 100);
        w.accept(lost(1));
        w.step(false);
        assert!(shared.healthy());
        m.broken.store(true, Ordering::SeqCst);
        w.accept(lost(2));
        w.accept(lost(3));
        w.step(false);
        assert!(!shared.healthy() && shared.refuses(), "failure is visible");
        assert_eq!(
            shared.head().seq,
            1,
            "the head stays at the last written record"
        );
        m.broken.store(false, Ordering::SeqCst);
        w.accept(lost(4));
        w.step(true);
        assert!(shared.healthy(), "healthy again after the retry");
        assert_eq!(shared.head().seq, 4);
        let data = m.data.lock().expect("lock").clone();
        assert_eq!(records(&data), 4, "the chain has no gap");
    }

    #[test]
    fn records_beyond_capacity_are_lost_and_a_lost_record_says_how_many() {
        let m = Flaky::default();
        let (mut w, _shared) = writer(&m, 2);
        m.broken.store(true, Ordering::SeqCst);
        for i in 0..5 {
            w.accept(lost(i));
        }
        w.step(true);
        m.broken.store(false, Ordering::SeqCst);
        w.step(true);
        let data = String::from_utf8(m.data.lock().expect("lock").clone()).expect("utf-8");
        let lines: Vec<&str> = data.lines().collect();
        assert_eq!(lines.len(), 3, "{data}");
        assert!(lines[2].contains("\"kind\":\"lost\",\"time\":"), "{data}");
        assert!(lines[2].contains("\"count\":3"), "{data}");
        assert_eq!(records(data.as_bytes()), 3);
    }
}
