//! The routing table from a YAML file, re-read whenever its content changes (polled, so it works on
//! every filesystem and with editors that replace the file). An invalid new version is logged and
//! counted; the previous table stays in force.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::config::{ConfigError, parse};
use crate::metrics::Metrics;
use crate::table::{SharedTable, Snapshot};

/// Why the routing file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    /// The file cannot be read.
    #[error("reading routing file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The content is invalid.
    #[error("{path}: {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: ConfigError,
    },
}

fn read(path: &Path) -> Result<(String, [u8; 32]), FileSourceError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileSourceError::Read {
        path: path.to_owned(),
        source,
    })?;
    let digest = Sha256::digest(text.as_bytes()).into();
    Ok((text, digest))
}

/// Loads and validates the file once.
pub fn load(path: &Path) -> Result<Snapshot, FileSourceError> {
    let (text, _) = read(path)?;
    parse(&text).map_err(|source| FileSourceError::Invalid {
        path: path.to_owned(),
        source,
    })
}

/// Loads the file into `table`, then keeps re-reading it every `interval` and swaps in each valid
/// change. Returns only if the first load fails.
pub async fn run(
    path: PathBuf,
    table: SharedTable,
    metrics: Metrics,
    interval: Duration,
) -> Result<(), FileSourceError> {
    let (text, mut last) = read(&path)?;
    let snap = parse(&text).map_err(|source| FileSourceError::Invalid {
        path: path.clone(),
        source,
    })?;
    table.set(snap);
    metrics.reloads.with_label_values(&["file", "ok"]).inc();
    loop {
        tokio::time::sleep(interval).await;
        let (text, digest) = match read(&path) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "routing file unreadable; keeping the current table");
                continue;
            }
        };
        if digest == last {
            continue;
        }
        last = digest;
        match parse(&text) {
            Ok(snap) => {
                tracing::info!(
                    endpoints = snap.endpoints.len(),
                    tenants = snap.tenants.len(),
                    keys = snap.keys.len(),
                    "routing file reloaded"
                );
                table.set(snap);
                metrics.reloads.with_label_values(&["file", "ok"]).inc();
            }
            Err(e) => {
                tracing::error!(error = %e, "routing file rejected; keeping the current table");
                metrics.reloads.with_label_values(&["file", "error"]).inc();
            }
        }
    }
}
