//! The writer thread: takes queued records in batches, chains them, writes and syncs them.

use std::fs::File;
use std::io::Write;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::chain::append;
use super::{BATCH_TICK, FsyncPolicy, Msg};

/// The writer thread's state: the sink, the chain position and the lines not yet written.
pub(super) struct Writer<F> {
    pub(super) out: Box<dyn Write + Send>,
    pub(super) file: Option<File>,
    pub(super) prev: (u64, String),
    pub(super) fsync: FsyncPolicy,
    pub(super) on_error: F,
    pub(super) batch: Vec<u8>,
}

impl<F: Fn()> Writer<F> {
    /// Takes records in batches — everything queued — and writes each batch with one `write`
    /// followed, per policy, by one `fsync` (group commit). `always` waits on the channel, so a record
    /// is on disk as soon as the disk allows; `interval` and `never` poll every [`BATCH_TICK`] while
    /// records keep coming and wait on the channel only when idle.
    pub(super) fn run(mut self, rx: mpsc::Receiver<Msg>) {
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
