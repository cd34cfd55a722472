//! The chain itself: how a record becomes a hashed line, and how a line is checked against the
//! previous one.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Event;

/// The hash before the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A chained record as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Chained {
    pub(super) seq: u64,
    pub(super) prev_hash: String,
    #[serde(flatten)]
    pub(super) event: Event,
}

pub(super) fn chain_hash(prev: &str, body: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(body.as_bytes());
    hex::encode(h.finalize())
}

/// Splits a line into (body without hash, hash).
pub(super) fn split_line(line: &str) -> Option<(String, &str)> {
    let idx = line.rfind(",\"hash\":\"")?;
    let hash = line[idx + 9..].strip_suffix("\"}")?;
    Some((format!("{}}}", &line[..idx]), hash))
}

/// Checks one line against the previous (seq, hash); returns its own.
pub(super) fn check_line(line: &str, prev: &(u64, String)) -> Result<(u64, String), String> {
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

/// Appends one chained line to `batch`; returns the new chain position.
pub(super) fn append(
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
