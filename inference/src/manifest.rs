//! Digest manifests: the list of `{path, sha256: "sha256:<hex>", size}` entries a ModelVersion pins,
//! with paths relative to the model directory. `verify` checks every file and reports the first mismatch.

use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why verification failed or could not run.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The manifest cannot be read or parsed.
    #[error("manifest {path} is invalid: {reason}")]
    Manifest {
        /// Manifest file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A listed path is absolute or leaves the model directory.
    #[error("manifest path `{0}` must be relative and stay inside the model directory")]
    UnsafePath(String),
    /// A listed file does not exist or cannot be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file's size differs from the manifest.
    #[error("{path}: size is {actual} bytes, manifest says {expected}")]
    Size {
        /// The file.
        path: String,
        /// Manifest size.
        expected: u64,
        /// Size on disk.
        actual: u64,
    },
    /// A file's digest differs from the manifest.
    #[error("{path}: sha256 is sha256:{actual}, manifest says {expected}")]
    Digest {
        /// The file.
        path: String,
        /// Manifest digest.
        expected: String,
        /// Digest on disk (hex).
        actual: String,
    },
}

/// One pinned file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestEntry {
    /// Path relative to the model directory.
    pub path: String,
    /// `sha256:` followed by 64 lowercase hex digits.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ManifestFile {
    List(Vec<ManifestEntry>),
    Object { files: Vec<ManifestEntry> },
}

/// Reads a manifest: a JSON list of entries, or an object with a `files` list (as in a ModelVersion's
/// `spec.artifact`).
pub fn read_manifest(path: &Path) -> Result<Vec<ManifestEntry>, VerifyError> {
    let bad = |reason: String| VerifyError::Manifest {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let parsed: ManifestFile = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let files = match parsed {
        ManifestFile::List(f) | ManifestFile::Object { files: f } => f,
    };
    if files.is_empty() {
        return Err(bad("it lists no files".into()));
    }
    for f in &files {
        if parse_digest(&f.sha256).is_none() {
            return Err(bad(format!(
                "`{}` has sha256 `{}`; expected sha256:<64 hex>",
                f.path, f.sha256
            )));
        }
    }
    Ok(files)
}

/// The directory manifest paths are relative to: the model itself when it is a directory, else its parent.
pub fn model_root(model: &Path) -> PathBuf {
    if model.is_dir() {
        model.to_path_buf()
    } else {
        model
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }
}

/// Checks every entry's size and sha256 under `root`; the error is the first mismatch.
pub fn verify(root: &Path, entries: &[ManifestEntry]) -> Result<(), VerifyError> {
    for e in entries {
        let path = safe_join(root, &e.path)?;
        let io = |source| VerifyError::Io {
            path: e.path.clone(),
            source,
        };
        let actual_size = std::fs::metadata(&path).map_err(io)?.len();
        if actual_size != e.size {
            return Err(VerifyError::Size {
                path: e.path.clone(),
                expected: e.size,
                actual: actual_size,
            });
        }
        let actual = sha256_file(&path).map_err(io)?;
        if Some(actual.as_str()) != parse_digest(&e.sha256) {
            return Err(VerifyError::Digest {
                path: e.path.clone(),
                expected: e.sha256.clone(),
                actual,
            });
        }
    }
    Ok(())
}

/// A manifest for `files` (paths relative to `root`).
pub fn build_manifest(root: &Path, files: &[String]) -> Result<Vec<ManifestEntry>, VerifyError> {
    files
        .iter()
        .map(|rel| {
            let path = safe_join(root, rel)?;
            let io = |source| VerifyError::Io {
                path: rel.clone(),
                source,
            };
            let size = std::fs::metadata(&path).map_err(io)?.len();
            let sha256 = format!("sha256:{}", sha256_file(&path).map_err(io)?);
            Ok(ManifestEntry {
                path: rel.clone(),
                sha256,
                size,
            })
        })
        .collect()
}

/// Lowercase hex sha256 of a file, read in 1 MiB blocks.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn parse_digest(s: &str) -> Option<&str> {
    let hexpart = s.strip_prefix("sha256:")?;
    (hexpart.len() == 64
        && hexpart
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(hexpart)
}

fn safe_join(root: &Path, rel: &str) -> Result<PathBuf, VerifyError> {
    let p = Path::new(rel);
    if p.components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(VerifyError::UnsafePath(rel.to_owned()));
    }
    Ok(root.join(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Vec<ManifestEntry>) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.bin"), b"weights").expect("write");
        let m = build_manifest(dir.path(), &["a.bin".into()]).expect("manifest");
        (dir, m)
    }

    #[test]
    fn verify_accepts_matching_files() {
        let (dir, m) = setup();
        assert_eq!(m[0].size, 7);
        verify(dir.path(), &m).expect("matches");
    }

    #[test]
    fn verify_reports_changed_bytes_of_same_size() {
        let (dir, m) = setup();
        std::fs::write(dir.path().join("a.bin"), b"WEIGHTS").expect("write");
        let err = verify(dir.path(), &m).expect_err("digest differs");
        assert!(matches!(err, VerifyError::Digest { .. }), "{err}");
    }

    #[test]
    fn verify_rejects_paths_outside_the_model() {
        let (dir, mut m) = setup();
        m[0].path = "../etc/passwd".into();
        assert!(matches!(
            verify(dir.path(), &m),
            Err(VerifyError::UnsafePath(_))
        ));
    }

    #[test]
    fn read_manifest_requires_prefixed_digests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("m.json");
        std::fs::write(&p, r#"[{"path":"a","sha256":"abc","size":1}]"#).expect("write");
        assert!(matches!(
            read_manifest(&p),
            Err(VerifyError::Manifest { .. })
        ));
    }
}
