//! Errors of the guardrails library: loading or building the dictionary, and reading CLI input.

use std::path::PathBuf;

/// Everything that can go wrong in this crate. Detection itself never fails: any `&str` is valid input.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The compiled dictionary directory is missing or incomplete.
    #[error(
        "guardrails dictionary not found at {path}: run scripts/setup.sh (step 20-guardrails) \
         or set ANSHIN_GUARDRAILS_DICT to the directory it built"
    )]
    DictionaryMissing {
        /// The file that was looked for.
        path: PathBuf,
    },
    /// A file of the dictionary could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// vibrato rejected the dictionary data (corrupt file or bad IPADIC sources).
    #[error(
        "morphological dictionary at {path} is invalid: {source}; rebuild it with scripts/setup.sh"
    )]
    Dictionary {
        /// The file or directory concerned.
        path: PathBuf,
        /// The error reported by vibrato.
        #[source]
        source: vibrato::errors::VibratoError,
    },
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
