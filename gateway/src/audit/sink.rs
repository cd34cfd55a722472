//! Where the writer puts its bytes: a file that rotates by size, or standard output. A failed write
//! or sync leaves nothing of what it was given behind in the file, so that a retry appends whole
//! lines after the last good one.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

use super::rotate;

/// What the writer writes to.
pub(super) trait Medium: Send {
    /// Bytes that may still go into the current file before it must rotate (`None`: no limit).
    fn room(&self) -> Option<u64>;
    /// Whether the current file holds nothing yet (a line too long for `room` is written anyway).
    fn fresh(&self) -> bool;
    /// Writes whole lines; on error none of `bytes` stays in the file.
    fn write(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes what was written durable; on error what was written since the last good sync is cut.
    fn sync(&mut self) -> io::Result<()>;
    /// Renames the current file (already synced) to the next rotated name and starts a new one.
    fn rotate(&mut self) -> io::Result<()>;
}

/// Lets a size limit (`ulimit -f`, a container's file-size limit) fail writes with `EFBIG` instead
/// of killing the process with `SIGXFSZ`: a full file must be reported, not crash the gateway.
pub(super) fn ignore_sigxfsz() {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code and is
    // async-signal-safe; nothing else in the gateway handles SIGXFSZ.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// A file log with size-based rotation.
pub(super) struct FileSink {
    path: PathBuf,
    file: File,
    /// Bytes of whole lines in the file.
    len: u64,
    /// Bytes known to be on disk.
    synced_len: u64,
    /// Whether a failed write or sync may have left bytes after `len` that are still to be cut.
    torn: bool,
    max_bytes: u64,
    keep: usize,
    next_rotation: u64,
}

impl FileSink {
    /// A sink over `file` (opened for append, `len` bytes of whole lines, all synced).
    pub(super) fn new(
        path: PathBuf,
        file: File,
        len: u64,
        max_bytes: u64,
        keep: usize,
        next_rotation: u64,
    ) -> FileSink {
        FileSink {
            path,
            file,
            len,
            synced_len: len,
            torn: false,
            max_bytes,
            keep,
            next_rotation,
        }
    }

    /// Cuts the file back to `to` bytes; remembers to try again when that fails too.
    fn cut_to(&mut self, to: u64) {
        self.len = to;
        self.torn = self.file.set_len(to).is_err();
    }
}

impl Medium for FileSink {
    fn room(&self) -> Option<u64> {
        Some(self.max_bytes.saturating_sub(self.len))
    }

    fn fresh(&self) -> bool {
        self.len == 0
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.torn {
            self.file.set_len(self.len)?;
            self.torn = false;
        }
        match self.file.write_all(bytes) {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.cut_to(self.len);
                Err(e)
            }
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        match self.file.sync_data() {
            Ok(()) => {
                self.synced_len = self.len;
                Ok(())
            }
            Err(e) => {
                self.cut_to(self.synced_len);
                Err(e)
            }
        }
    }

    fn rotate(&mut self) -> io::Result<()> {
        // A file someone put in the way keeps its name; the log takes the next free number.
        let mut n = self.next_rotation;
        while rotate::rotated_name(&self.path, n).exists() {
            n += 1;
        }
        rotate::rename_to_rotated(&self.path, n)?;
        let opened = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|f| rotate::sync_dir(&self.path).map(|()| f));
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                // Put the old file back so that the next attempt finds things as they were.
                let _ = std::fs::rename(rotate::rotated_name(&self.path, n), &self.path);
                return Err(e);
            }
        };
        self.file = file;
        self.len = 0;
        self.synced_len = 0;
        self.torn = false;
        self.next_rotation = n + 1;
        match rotate::prune(&self.path, self.keep) {
            Ok(0) => {}
            Ok(removed) => tracing::info!(
                removed,
                keep = self.keep,
                "deleted the oldest rotated audit files"
            ),
            Err(e) => tracing::warn!(error = %e, "deleting old rotated audit files"),
        }
        tracing::info!(rotated = n, "audit log rotated");
        Ok(())
    }
}

/// Standard output: no rotation, nothing to sync, and a failed write cannot be taken back.
pub(super) struct StdoutSink;

impl Medium for StdoutSink {
    fn room(&self) -> Option<u64> {
        None
    }

    fn fresh(&self) -> bool {
        false
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut out = io::stdout().lock();
        out.write_all(bytes).and_then(|()| out.flush())
    }

    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        Ok(())
    }
}
