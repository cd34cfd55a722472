//! Helpers shared by the operator's test binaries (each binary uses a subset).
#![allow(dead_code)]

pub mod drill;
pub mod operator;
pub mod stack;

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::json;
use sha2::{Digest, Sha256};

/// Parses `tests/fixtures/<name>` into `T`.
pub fn fixture<T: DeserializeOwned>(name: &str) -> T {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A JSON value as a typed object.
pub fn object<T: DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("test object matches its type")
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The `spec.artifact.files` entries (path, sha256, size) of every file in `dir`, sorted by path.
pub fn files_of(dir: &Path) -> Vec<serde_json::Value> {
    let mut files: Vec<serde_json::Value> = std::fs::read_dir(dir)
        .expect("model dir")
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| {
            let bytes = std::fs::read(e.path()).expect("read model file");
            json!({
                "path": e.file_name().to_string_lossy(),
                "sha256": format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
                "size": bytes.len(),
            })
        })
        .collect();
    files.sort_by_key(|f| f["path"].as_str().unwrap_or_default().to_owned());
    files
}
