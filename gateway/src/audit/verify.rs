//! Checking a whole chain: `anshin-gateway verify`.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::chain::{GENESIS, check_line};

/// The first broken record of a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct Broken {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
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
