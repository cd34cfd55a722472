//! Logging: structured JSON to stderr, filtered by `RUST_LOG` (default `info`). Request logs carry
//! ids, tenant, endpoint, version, status and timings — never prompt or answer text, never keys.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber (once; later calls are ignored).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
