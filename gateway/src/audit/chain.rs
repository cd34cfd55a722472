//! The chain itself: how a record becomes a hashed line, and how a line is checked against the one
//! before it.
//!
//! A line is the record's JSON with a last field `"hash"` = hex of SHA-256 — or, with a key,
//! HMAC-SHA256 — over (previous record's hash, `\n`, the line's text without its `hash` field). The
//! record also carries `prev_hash` and a sequence number `seq`, so an edited, inserted, reordered or
//! deleted record breaks the chain at a known line.

use std::path::Path;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::batch::Batch;
use super::record::Record;

/// The hash before the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The shortest key accepted (bytes): the output size of SHA-256.
pub const MIN_KEY_BYTES: usize = 32;

/// A place in the chain: a record's `seq` and `hash` (`0` and [`GENESIS`] before the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Sequence number of the record (1 for the first).
    pub seq: u64,
    /// Its hash (hex).
    pub hash: String,
}

impl Position {
    /// Before the first record.
    pub fn genesis() -> Position {
        Position {
            seq: 0,
            hash: GENESIS.to_owned(),
        }
    }
}

impl std::str::FromStr for Position {
    type Err = String;

    /// Parses a published head `SEQ:HASH` (64 hex digits).
    fn from_str(s: &str) -> Result<Position, String> {
        let bad =
            || format!("`{s}` is not SEQ:HASH (a record's seq, a colon, its 64-hex-digit hash)");
        let (seq, hash) = s.split_once(':').ok_or_else(bad)?;
        let seq = seq.parse::<u64>().map_err(|_| bad())?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        Ok(Position {
            seq,
            hash: hash.to_ascii_lowercase(),
        })
    }
}

/// The secret that keys the chain with HMAC-SHA256, or none (plain SHA-256). Never printed.
#[derive(Clone, Default)]
pub struct ChainKey(Option<Arc<[u8]>>);

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_keyed() {
            "ChainKey(hmac-sha256)"
        } else {
            "ChainKey(none)"
        })
    }
}

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file cannot be read.
    #[error("audit HMAC key file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The key is too short to resist guessing.
    #[error(
        "audit HMAC key file {path} holds {len} bytes (after a trailing newline is removed); use at least {MIN_KEY_BYTES}, e.g. `head -c 32 /dev/urandom | base64 > {path}`"
    )]
    TooShort {
        /// The file.
        path: String,
        /// Its length.
        len: usize,
    },
}

impl ChainKey {
    /// No key: the chain is plain SHA-256.
    pub fn none() -> ChainKey {
        ChainKey(None)
    }

    /// A key from bytes (at least [`MIN_KEY_BYTES`] are expected; callers that read files check).
    pub fn from_bytes(key: &[u8]) -> ChainKey {
        ChainKey(Some(key.into()))
    }

    /// Reads a key file (e.g. a mounted Secret): its bytes without trailing `\n`/`\r`.
    pub fn load(path: &Path) -> Result<ChainKey, KeyError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| KeyError::Read {
            path: shown.clone(),
            source,
        })?;
        let end = bytes
            .iter()
            .rposition(|b| !matches!(b, b'\n' | b'\r'))
            .map_or(0, |i| i + 1);
        if end < MIN_KEY_BYTES {
            return Err(KeyError::TooShort {
                path: shown,
                len: end,
            });
        }
        Ok(ChainKey::from_bytes(&bytes[..end]))
    }

    /// Whether records are keyed (HMAC-SHA256).
    pub fn is_keyed(&self) -> bool {
        self.0.is_some()
    }

    /// Hex hash of a record's body after `prev`.
    pub fn hash(&self, prev: &str, body: &str) -> String {
        match &self.0 {
            None => {
                let mut h = Sha256::new();
                h.update(prev.as_bytes());
                h.update(b"\n");
                h.update(body.as_bytes());
                hex::encode(h.finalize())
            }
            Some(key) => {
                let mut m = Hmac::<Sha256>::new_from_slice(key)
                    .expect("HMAC-SHA256 takes keys of any length");
                m.update(prev.as_bytes());
                m.update(b"\n");
                m.update(body.as_bytes());
                hex::encode(m.finalize().into_bytes())
            }
        }
    }
}

/// A record as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Chained<R> {
    seq: u64,
    prev_hash: String,
    #[serde(flatten)]
    record: R,
}

/// The part of any record that the chain needs (records of every kind and version carry it).
#[derive(Deserialize)]
struct Link {
    seq: u64,
    prev_hash: String,
}

/// Appends one chained line to `batch`; returns the new chain position.
pub(super) fn append(
    batch: &mut Batch,
    key: &ChainKey,
    prev: &Position,
    record: Record,
) -> serde_json::Result<Position> {
    let rec = Chained {
        seq: prev.seq + 1,
        prev_hash: prev.hash.clone(),
        record,
    };
    let body = serde_json::to_string(&rec)?;
    let hash = key.hash(&prev.hash, &body);
    let mut line = Vec::with_capacity(body.len() + hash.len() + 12);
    line.extend_from_slice(&body.as_bytes()[..body.len() - 1]);
    line.extend_from_slice(b",\"hash\":\"");
    line.extend_from_slice(hash.as_bytes());
    line.extend_from_slice(b"\"}\n");
    let pos = Position { seq: rec.seq, hash };
    batch.push(&line, pos.clone());
    Ok(pos)
}

/// Splits a line into (body without hash, hash).
fn split_line(line: &str) -> Option<(String, &str)> {
    let idx = line.rfind(",\"hash\":\"")?;
    let hash = line[idx + 9..].strip_suffix("\"}")?;
    Some((format!("{}}}", &line[..idx]), hash))
}

/// A line's own claims: its position, its `prev_hash`, and whether its hash matches its content
/// after that `prev_hash` under `key`.
pub(super) struct Parsed {
    /// The record's `seq` and `hash`.
    pub(super) pos: Position,
    /// The record's `prev_hash`.
    pub(super) prev_hash: String,
    /// Whether `hash` is the keyed hash of the body after `prev_hash`.
    pub(super) hash_ok: bool,
}

/// Parses a line; `Err` when it is not a chained record at all.
pub(super) fn parse_line(line: &str, key: &ChainKey) -> Result<Parsed, String> {
    let (body, hash) = split_line(line).ok_or("no trailing \"hash\" field")?;
    let link: Link = serde_json::from_str(&body).map_err(|e| format!("not a valid record: {e}"))?;
    let hash_ok = key.hash(&link.prev_hash, &body) == hash;
    Ok(Parsed {
        pos: Position {
            seq: link.seq,
            hash: hash.to_owned(),
        },
        prev_hash: link.prev_hash,
        hash_ok,
    })
}

/// Checks one line against the previous record; returns its own position.
pub(super) fn check_line(line: &str, prev: &Position, key: &ChainKey) -> Result<Position, String> {
    let p = parse_line(line, key)?;
    if p.prev_hash != prev.hash {
        return Err("prev_hash does not match the previous record (a record was edited, removed or inserted)".into());
    }
    if p.pos.seq != prev.seq + 1 {
        return Err(format!(
            "seq {} follows seq {} (a record is missing)",
            p.pos.seq, prev.seq
        ));
    }
    if !p.hash_ok {
        return Err(if key.is_keyed() {
            "hash does not match the record's content (the record was edited, or the log was written without this key)".into()
        } else {
            "hash does not match the record's content (the record was edited, or the log is keyed: pass --hmac-key-file)".into()
        });
    }
    Ok(p.pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::Lost;

    fn line(key: &ChainKey, prev: &Position, record: Record) -> (String, Position) {
        let mut b = Batch::default();
        let pos = append(&mut b, key, prev, record).expect("encode");
        (String::from_utf8(b.bytes().to_vec()).expect("utf-8"), pos)
    }

    fn lost(n: u64) -> Record {
        Record::Lost(Lost {
            time: "2026-12-01T00:00:00Z".into(),
            count: n,
        })
    }

    #[test]
    fn records_name_their_kind_and_chain_from_the_previous_hash() {
        let key = ChainKey::none();
        let (l1, p1) = line(&key, &Position::genesis(), lost(1));
        assert!(l1.starts_with("{\"seq\":1,\"prev_hash\":\"0000"), "{l1}");
        assert!(l1.contains("\"kind\":\"lost\",\"time\""), "{l1}");
        assert!(
            l1.ends_with(&format!(",\"hash\":\"{}\"}}\n", p1.hash)),
            "{l1}"
        );
        let (l2, p2) = line(&key, &p1, lost(2));
        assert_eq!(p2.seq, 2);
        assert_eq!(check_line(l2.trim_end(), &p1, &key), Ok(p2));
        assert!(check_line(l2.trim_end(), &Position::genesis(), &key).is_err());
    }

    #[test]
    fn a_keyed_chain_does_not_verify_without_the_key_or_with_another() {
        let key = ChainKey::from_bytes(&[7u8; 32]);
        let (l, p) = line(&key, &Position::genesis(), lost(1));
        assert_eq!(check_line(l.trim_end(), &Position::genesis(), &key), Ok(p));
        let plain = check_line(l.trim_end(), &Position::genesis(), &ChainKey::none());
        assert!(plain.is_err_and(|e| e.contains("pass --hmac-key-file")));
        let other = ChainKey::from_bytes(&[8u8; 32]);
        let wrong = check_line(l.trim_end(), &Position::genesis(), &other);
        assert!(wrong.is_err_and(|e| e.contains("without this key")));
    }

    #[test]
    fn key_files_shorter_than_32_bytes_are_refused_and_a_trailing_newline_is_not_key() {
        let dir = tempfile::tempdir().expect("dir");
        let short = dir.path().join("short");
        std::fs::write(&short, "too-short\n").expect("write");
        assert!(matches!(
            ChainKey::load(&short),
            Err(KeyError::TooShort { len: 9, .. })
        ));
        let good = dir.path().join("good");
        std::fs::write(&good, format!("{}\n", "k".repeat(32))).expect("write");
        let k = ChainKey::load(&good).expect("key");
        assert_eq!(
            k.hash("a", "b"),
            ChainKey::from_bytes("k".repeat(32).as_bytes()).hash("a", "b")
        );
        assert_eq!(format!("{k:?}"), "ChainKey(hmac-sha256)");
    }

    #[test]
    fn a_published_head_parses_as_seq_colon_hash() {
        let hash = "AB".repeat(32);
        let p: Position = format!("42:{hash}").parse().expect("head");
        assert_eq!((p.seq, p.hash), (42, "ab".repeat(32)));
        for bad in [
            "42",
            "x:00",
            &format!("42:{}", "a".repeat(63)),
            &format!("-1:{hash}"),
        ] {
            assert!(bad.parse::<Position>().is_err(), "{bad}");
        }
    }
}
