//! Writing the CRD YAML files, and checking them for drift (the `crdgen` binary and a test use it).

use std::path::{Path, PathBuf};

use crate::{all_crds, crd_yaml};

/// Why generating or checking the CRD files failed.
#[derive(Debug, thiserror::Error)]
pub enum CrdgenError {
    /// A CRD did not serialize.
    #[error(transparent)]
    Yaml(#[from] crate::Error),
    /// A file could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The committed files differ from what the code generates.
    #[error(
        "CRD YAML is out of date: {0:?} differ; run `cargo run -p anshin-crds --bin crdgen` and commit the result"
    )]
    Drift(Vec<PathBuf>),
}

/// The files `crdgen` would write into `dir`: path and content.
pub fn generated_files(dir: &Path) -> Result<Vec<(PathBuf, String)>, CrdgenError> {
    all_crds()
        .into_iter()
        .map(|(stem, crd)| Ok((dir.join(format!("{stem}.yaml")), crd_yaml(stem, &crd)?)))
        .collect()
}

/// Writes the files into `dir`, or with `check` only compares; returns a one-line report.
pub fn run(dir: &Path, check: bool) -> Result<String, CrdgenError> {
    let files = generated_files(dir)?;
    if check {
        let drifted: Vec<PathBuf> = files
            .iter()
            .filter(|(path, content)| {
                std::fs::read_to_string(path).ok().as_deref() != Some(content.as_str())
            })
            .map(|(path, _)| path.clone())
            .collect();
        if !drifted.is_empty() {
            return Err(CrdgenError::Drift(drifted));
        }
        return Ok(format!(
            "{} CRDs in {} are up to date",
            files.len(),
            dir.display()
        ));
    }
    std::fs::create_dir_all(dir).map_err(|source| CrdgenError::Io {
        path: dir.to_owned(),
        source,
    })?;
    for (path, content) in &files {
        std::fs::write(path, content).map_err(|source| CrdgenError::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(format!("wrote {} CRDs to {}", files.len(), dir.display()))
}
