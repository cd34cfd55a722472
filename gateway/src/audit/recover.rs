//! Opening a file log at start-up. The chain continues from the current file's last record, or from
//! the newest rotated file's when the current one is empty or missing (a crash right after a
//! rotation). An incomplete or unreadable last line — a write torn by a crash, a power loss or a full
//! disk — is cut off and reported as a `recovered` record instead of stopping the gateway; a last
//! record whose hash does not verify with the configured key stops it (wrong key, or an edit).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::AuditError;
use super::chain::{ChainKey, Position, parse_line};
use super::record::Recovered;
use super::rotate;

/// How far back the end of a file is read at a time when looking for line starts.
const CHUNK: u64 = 64 * 1024;

/// A file log ready for appending.
pub(super) struct Opened {
    /// The current file, opened for append.
    pub(super) file: File,
    /// Its length after any cut.
    pub(super) len: u64,
    /// The chain position to continue from.
    pub(super) head: Position,
    /// What was cut, if anything.
    pub(super) recovered: Option<Recovered>,
    /// The number the next rotated file gets.
    pub(super) next_rotation: u64,
}

/// Opens (creating when missing) the log at `path` and finds where its chain stands.
pub(super) fn open(path: &Path, key: &ChainKey) -> Result<Opened, AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_owned(),
        source,
    };
    let rotated = rotate::rotated_files(path).map_err(io)?;
    let next_rotation = rotated.last().map_or(1, |(n, _)| n + 1);
    let file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let end = last_record(&file, len, path, key, true)?;
    let mut recovered = None;
    if end.good_end < len {
        let dropped = read_range(&file, end.good_end, len).map_err(io)?;
        file.set_len(end.good_end).map_err(io)?;
        file.sync_all().map_err(io)?;
        recovered = Some(Recovered {
            time: jiff::Timestamp::now().to_string(),
            dropped_bytes: len - end.good_end,
            dropped_sha256: hex::encode(Sha256::digest(&dropped)),
        });
    }
    let head = match (end.head, rotated.last()) {
        (Some(head), _) => head,
        (None, Some((_, newest))) => newest_rotated_head(newest, key)?,
        (None, None) => Position::genesis(),
    };
    Ok(Opened {
        file,
        len: end.good_end,
        head,
        recovered,
        next_rotation,
    })
}

/// The last record of the newest rotated file (which must end with a whole, verified record).
fn newest_rotated_head(path: &Path, key: &ChainKey) -> Result<Position, AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_owned(),
        source,
    };
    let f = File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let end = last_record(&f, len, path, key, false)?;
    Ok(end.head.unwrap_or_else(Position::genesis))
}

/// Where the whole, verified records of a file end, and the last one's position.
struct End {
    good_end: u64,
    head: Option<Position>,
}

/// Finds the last record of `file`. With `may_cut`, bytes after the last newline and one unreadable
/// last line are left out (the caller cuts them); without, they are an error.
fn last_record(
    file: &File,
    len: u64,
    path: &Path,
    key: &ChainKey,
    may_cut: bool,
) -> Result<End, AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_owned(),
        source,
    };
    let broken = |reason: String| AuditError::Broken {
        path: path.to_owned(),
        reason,
    };
    let mut end = line_start(file, len).map_err(io)?;
    if end < len && !may_cut {
        return Err(broken("the last line is incomplete".into()));
    }
    let mut cut_a_line = false;
    while end > 0 {
        let start = line_start(file, end - 1).map_err(io)?;
        let bytes = read_range(file, start, end - 1).map_err(io)?;
        let parsed = std::str::from_utf8(&bytes)
            .map_err(|e| format!("not UTF-8: {e}"))
            .and_then(|line| parse_line(line, key));
        match parsed {
            Ok(p) if p.hash_ok => {
                return Ok(End {
                    good_end: end,
                    head: Some(p.pos),
                });
            }
            Ok(p) => {
                return Err(AuditError::KeyMismatch {
                    path: path.to_owned(),
                    seq: p.pos.seq,
                    keyed: key.is_keyed(),
                });
            }
            Err(reason) if may_cut && !cut_a_line => {
                tracing::warn!(reason = %reason, "the audit log's last line is unreadable");
                cut_a_line = true;
                end = start;
            }
            Err(reason) => return Err(broken(reason)),
        }
    }
    Ok(End {
        good_end: 0,
        head: None,
    })
}

/// The offset just after the last `\n` in the first `end` bytes of `file`, or 0.
fn line_start(file: &File, end: u64) -> std::io::Result<u64> {
    let mut hi = end;
    while hi > 0 {
        let lo = hi.saturating_sub(CHUNK);
        let chunk = read_range(file, lo, hi)?;
        if let Some(i) = chunk.iter().rposition(|b| *b == b'\n') {
            return Ok(lo + i as u64 + 1);
        }
        hi = lo;
    }
    Ok(0)
}

fn read_range(file: &File, from: u64, to: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; usize::try_from(to - from).unwrap_or(0)];
    file.read_exact_at(&mut buf, from)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::batch::Batch;
    use crate::audit::chain::append;
    use crate::audit::record::{Lost, Record};

    /// A log of `n` records written with `key`, and the position after the last.
    fn log(path: &Path, key: &ChainKey, n: u64) -> Position {
        let mut b = Batch::default();
        let mut pos = Position::genesis();
        for i in 0..n {
            let rec = Record::Lost(Lost {
                time: "t".into(),
                count: i,
            });
            pos = append(&mut b, key, &pos, rec).expect("encode");
        }
        std::fs::write(path, b.bytes()).expect("write");
        pos
    }

    #[test]
    fn a_clean_log_continues_from_its_last_record() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("a.log");
        let head = log(&path, &ChainKey::none(), 3);
        let o = open(&path, &ChainKey::none()).expect("open");
        assert_eq!(o.head, head);
        assert!(o.recovered.is_none());
        assert_eq!(o.next_rotation, 1);
    }

    #[test]
    fn a_torn_last_line_is_cut_and_reported() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("a.log");
        let head = log(&path, &ChainKey::none(), 3);
        let good = std::fs::read(&path).expect("read");
        let mut torn = good.clone();
        torn.extend_from_slice(b"{\"seq\":4,\"prev_ha");
        std::fs::write(&path, &torn).expect("write");
        let o = open(&path, &ChainKey::none()).expect("open");
        assert_eq!(o.head, head);
        let r = o.recovered.expect("recovered");
        assert_eq!(r.dropped_bytes, 17);
        assert_eq!(
            r.dropped_sha256,
            hex::encode(Sha256::digest(b"{\"seq\":4,\"prev_ha"))
        );
        assert_eq!(std::fs::read(&path).expect("read"), good);
    }

    #[test]
    fn one_unreadable_complete_last_line_is_cut_two_are_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("a.log");
        let head = log(&path, &ChainKey::none(), 2);
        let good = std::fs::read(&path).expect("read");
        std::fs::write(&path, [good.as_slice(), b"\0\0\0\n"].concat()).expect("write");
        let o = open(&path, &ChainKey::none()).expect("open");
        assert_eq!(o.head, head);
        assert_eq!(o.recovered.map(|r| r.dropped_bytes), Some(4));
        std::fs::write(&path, [good.as_slice(), b"x\ny\n"].concat()).expect("write");
        assert!(matches!(
            open(&path, &ChainKey::none()),
            Err(AuditError::Broken { .. })
        ));
    }

    #[test]
    fn an_empty_current_file_continues_from_the_newest_rotated_file() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("a.log");
        log(&rotate::rotated_name(&path, 1), &ChainKey::none(), 2);
        let head = log(&rotate::rotated_name(&path, 2), &ChainKey::none(), 5);
        let o = open(&path, &ChainKey::none()).expect("open");
        assert_eq!(o.head, head);
        assert_eq!(o.next_rotation, 3);
        assert_eq!(o.len, 0);
    }

    #[test]
    fn a_log_written_with_another_key_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("a.log");
        log(&path, &ChainKey::from_bytes(&[1; 32]), 2);
        let err = open(&path, &ChainKey::from_bytes(&[2; 32])).err();
        assert!(
            matches!(
                err,
                Some(AuditError::KeyMismatch {
                    seq: 2,
                    keyed: true,
                    ..
                })
            ),
            "{err:?}"
        );
        assert!(open(&path, &ChainKey::none()).is_err());
        assert!(open(&path, &ChainKey::from_bytes(&[1; 32])).is_ok());
    }

    #[test]
    fn line_start_finds_newlines_across_chunks() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("big");
        let mut bytes = vec![b'a'; 3 * CHUNK as usize];
        bytes[10] = b'\n';
        std::fs::write(&path, &bytes).expect("write");
        let f = File::open(&path).expect("open");
        assert_eq!(line_start(&f, bytes.len() as u64).expect("scan"), 11);
        assert_eq!(line_start(&f, 10).expect("scan"), 0);
    }
}
