//! Checking a whole chain: `anshin-gateway verify`. The rotated files (`<log>.1`, `<log>.2`, …) and
//! then the log itself are read as one chain. Against a published head (`seq`, `hash` from the
//! gateway's `audit chain head` log line or another trusted copy) it also detects records cut from
//! the end and a chain rewritten after the head was published.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::chain::{ChainKey, GENESIS, Position, check_line, parse_line};
use super::rotate::rotated_files;

/// What to check a chain against.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// The key the log was written with (none: plain SHA-256).
    pub key: ChainKey,
    /// A published head the log must reach, with the same hash at that seq.
    pub head: Option<Position>,
    /// Accept a chain whose first record is not seq 1 (older rotated files deleted by
    /// `--audit-keep`); the first record's own hash is still checked.
    pub allow_pruned: bool,
}

/// An intact chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records checked.
    pub records: u64,
    /// The first record's seq (1 unless pruned; 0 when there is none).
    pub first_seq: u64,
    /// The last record's position.
    pub last: Position,
    /// Files read.
    pub files: usize,
}

/// Why a chain is not intact.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A record was edited, removed, inserted or reordered, or is unreadable.
    #[error("{} at line {line}: {reason}", file.display())]
    Broken {
        /// The file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The chain does not start at seq 1.
    #[error(
        "{}: the chain starts at seq {seq}, not 1 (records or older rotated files were removed); pass --allow-pruned if older files were deleted on purpose (--audit-keep)",
        file.display()
    )]
    PrunedStart {
        /// The first file read.
        file: PathBuf,
        /// Its first record's seq.
        seq: u64,
    },
    /// The log ends before the published head.
    #[error(
        "the log ends at seq {last}, before the published head seq {head}: records {}..={head} were removed from the end",
        last + 1
    )]
    Truncated {
        /// The last seq present.
        last: u64,
        /// The published head's seq.
        head: u64,
    },
    /// The record at the head's seq is not the one published.
    #[error(
        "the record at seq {seq} has hash {found}, but the published head says {published}: the log was rewritten after the head was published"
    )]
    HeadMismatch {
        /// The head's seq.
        seq: u64,
        /// The hash in the log.
        found: String,
        /// The published hash.
        published: String,
    },
    /// The head's record is in a file no longer present.
    #[error("the published head seq {head} is before the first record present (seq {first})")]
    HeadNotPresent {
        /// The head's seq.
        head: u64,
        /// The first seq present.
        first: u64,
    },
    /// No file could be read.
    #[error("cannot read {}: {source}", file.display())]
    Unreadable {
        /// The file.
        file: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A chain checked record by record, possibly across files.
struct Checker<'a> {
    opts: &'a VerifyOptions,
    /// The last record seen (`None` before the first).
    prev: Option<Position>,
    first_seq: u64,
    records: u64,
}

impl Checker<'_> {
    fn line(&mut self, line: &str, file: &Path, n: usize) -> Result<(), VerifyError> {
        let broken = |reason: String| VerifyError::Broken {
            file: file.to_owned(),
            line: n,
            reason,
        };
        let pos = match &self.prev {
            Some(prev) => check_line(line, prev, &self.opts.key).map_err(broken)?,
            None => self.first(line, file, n)?,
        };
        if let Some(head) = &self.opts.head
            && head.seq == pos.seq
            && head.hash != pos.hash
        {
            return Err(VerifyError::HeadMismatch {
                seq: pos.seq,
                found: pos.hash,
                published: head.hash.clone(),
            });
        }
        self.records += 1;
        self.prev = Some(pos);
        Ok(())
    }

    /// The first record: it must follow [`GENESIS`] unless pruned starts are allowed.
    fn first(&mut self, line: &str, file: &Path, n: usize) -> Result<Position, VerifyError> {
        let broken = |reason: String| VerifyError::Broken {
            file: file.to_owned(),
            line: n,
            reason,
        };
        let p = parse_line(line, &self.opts.key).map_err(broken)?;
        let genesis = p.pos.seq == 1 && p.prev_hash == GENESIS;
        if !genesis && !self.opts.allow_pruned {
            return Err(VerifyError::PrunedStart {
                file: file.to_owned(),
                seq: p.pos.seq,
            });
        }
        let prev = Position {
            seq: p.pos.seq.saturating_sub(1),
            hash: p.prev_hash,
        };
        self.first_seq = p.pos.seq;
        check_line(line, &prev, &self.opts.key).map_err(broken)
    }

    fn read(&mut self, reader: impl BufRead, file: &Path) -> Result<(), VerifyError> {
        for (i, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| VerifyError::Broken {
                file: file.to_owned(),
                line: i + 1,
                reason: format!("unreadable: {e}"),
            })?;
            self.line(&line, file, i + 1)?;
        }
        Ok(())
    }

    fn finish(self, files: usize) -> Result<Verified, VerifyError> {
        let last = self.prev.unwrap_or_else(Position::genesis);
        if let Some(head) = &self.opts.head {
            if last.seq < head.seq {
                return Err(VerifyError::Truncated {
                    last: last.seq,
                    head: head.seq,
                });
            }
            if head.seq < self.first_seq {
                return Err(VerifyError::HeadNotPresent {
                    head: head.seq,
                    first: self.first_seq,
                });
            }
        }
        Ok(Verified {
            records: self.records,
            first_seq: self.first_seq,
            last,
            files,
        })
    }
}

/// Verifies one stream of records.
pub fn verify(reader: impl BufRead, opts: &VerifyOptions) -> Result<Verified, VerifyError> {
    let mut c = Checker {
        opts,
        prev: None,
        first_seq: 0,
        records: 0,
    };
    c.read(reader, Path::new("<input>"))?;
    c.finish(1)
}

/// Verifies the log at `path` with its rotated files, oldest first, as one chain.
pub fn verify_log(path: &Path, opts: &VerifyOptions) -> Result<Verified, VerifyError> {
    let unreadable = |file: &Path, source| VerifyError::Unreadable {
        file: file.to_owned(),
        source,
    };
    let mut files: Vec<PathBuf> = rotated_files(path)
        .map_err(|e| unreadable(path, e))?
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    if path.exists() || files.is_empty() {
        files.push(path.to_owned());
    }
    let mut c = Checker {
        opts,
        prev: None,
        first_seq: 0,
        records: 0,
    };
    for file in &files {
        let f = File::open(file).map_err(|e| unreadable(file, e))?;
        c.read(BufReader::new(f), file)?;
    }
    c.finish(files.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::batch::Batch;
    use crate::audit::chain::append;
    use crate::audit::record::{Lost, Record};
    use crate::audit::rotate::rotated_name;

    /// `n` records after `from`, as text, and the position after them.
    fn records(key: &ChainKey, from: &Position, n: u64) -> (String, Position) {
        let mut b = Batch::default();
        let mut pos = from.clone();
        for i in 0..n {
            let rec = Record::Lost(Lost {
                time: "t".into(),
                count: i,
            });
            pos = append(&mut b, key, &pos, rec).expect("encode");
        }
        (String::from_utf8(b.bytes().to_vec()).expect("utf-8"), pos)
    }

    fn opts(head: Option<Position>) -> VerifyOptions {
        VerifyOptions {
            head,
            ..VerifyOptions::default()
        }
    }

    #[test]
    fn records_cut_from_the_end_are_found_against_the_published_head() {
        let (log, head) = records(&ChainKey::none(), &Position::genesis(), 5);
        assert_eq!(
            verify(log.as_bytes(), &opts(Some(head.clone())))
                .map(|v| v.records)
                .ok(),
            Some(5)
        );
        let cut: String = log.lines().take(3).map(|l| format!("{l}\n")).collect();
        assert!(
            verify(cut.as_bytes(), &opts(None)).is_ok(),
            "without a head a cut end looks intact"
        );
        let err = verify(cut.as_bytes(), &opts(Some(head))).err();
        assert!(
            matches!(err, Some(VerifyError::Truncated { last: 3, head: 5 })),
            "{err:?}"
        );
    }

    #[test]
    fn a_chain_rewritten_after_the_head_was_published_is_found() {
        let (log, head) = records(&ChainKey::none(), &Position::genesis(), 4);
        // Without a key, anyone who edits a record can recompute every hash after it: the chain
        // is intact, but the record at the published seq no longer has the published hash.
        let mut b = Batch::default();
        let mut pos = Position::genesis();
        for count in [0, 9, 2, 3] {
            let rec = Record::Lost(Lost {
                time: "t".into(),
                count,
            });
            pos = append(&mut b, &ChainKey::none(), &pos, rec).expect("encode");
        }
        assert_ne!(b.bytes(), log.as_bytes());
        assert!(verify(b.bytes(), &opts(None)).is_ok());
        let err = verify(b.bytes(), &opts(Some(head))).err();
        assert!(
            matches!(err, Some(VerifyError::HeadMismatch { seq: 4, .. })),
            "{err:?}"
        );
    }

    #[test]
    fn rotated_files_verify_as_one_chain_and_a_missing_first_file_is_reported() {
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("audit.jsonl");
        let key = ChainKey::from_bytes(&[3; 32]);
        let (a, p) = records(&key, &Position::genesis(), 2);
        let (b, p) = records(&key, &p, 3);
        let (c, p) = records(&key, &p, 1);
        std::fs::write(rotated_name(&log, 1), a).expect("write");
        std::fs::write(rotated_name(&log, 2), b).expect("write");
        std::fs::write(&log, c).expect("write");
        let o = VerifyOptions {
            key: key.clone(),
            head: Some(p.clone()),
            allow_pruned: false,
        };
        let v = verify_log(&log, &o).expect("intact");
        assert_eq!((v.records, v.first_seq, v.files, v.last), (6, 1, 3, p));
        std::fs::remove_file(rotated_name(&log, 1)).expect("rm");
        let err = verify_log(&log, &o).err();
        assert!(
            matches!(err, Some(VerifyError::PrunedStart { seq: 3, .. })),
            "{err:?}"
        );
        let pruned = VerifyOptions {
            allow_pruned: true,
            ..o
        };
        let v = verify_log(&log, &pruned).expect("intact from seq 3");
        assert_eq!((v.records, v.first_seq), (4, 3));
        let wrong = VerifyOptions {
            key: ChainKey::from_bytes(&[4; 32]),
            ..pruned
        };
        assert!(matches!(
            verify_log(&log, &wrong),
            Err(VerifyError::Broken { line: 1, .. })
        ));
    }
}
