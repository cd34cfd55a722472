//! Where the control-plane binaries live.
//!
//! `e2e/scripts/install-control-plane.sh` (run by `scripts/setup.sh`) builds them once into
//! `$ANSHIN_CACHE/k8s/v1.20.2-r<recipe>/bin` (default `~/.cache/anshin/…`). This module finds that
//! directory and refuses, with a message that says what to run, when it is missing or incomplete.

use std::path::{Path, PathBuf};

/// The cache key the install script uses: Kubernetes version and build-recipe revision.
pub const CONTROL_PLANE_KEY: &str = "v1.20.2-r1";

/// Errors finding the control-plane binaries.
#[derive(Debug, thiserror::Error)]
pub enum BinariesError {
    /// Neither `ANSHIN_K8S_BIN`, `ANSHIN_CACHE` nor `HOME` lead to a directory.
    #[error("cannot locate the control-plane cache: set HOME, ANSHIN_CACHE or ANSHIN_K8S_BIN")]
    NoCacheDir,
    /// The directory exists but lacks a binary or the install-complete marker.
    #[error(
        "control-plane binary {missing} not found in {dir}: run `bash scripts/setup.sh` \
         (or `bash e2e/scripts/install-control-plane.sh`) to build etcd and Kubernetes v1.20.2 into the cache"
    )]
    Missing {
        /// The directory that was searched.
        dir: PathBuf,
        /// The file that is missing.
        missing: String,
    },
}

/// Paths of the four control-plane programs.
#[derive(Debug, Clone)]
pub struct ControlPlaneBinaries {
    /// Directory that holds them.
    pub dir: PathBuf,
    /// `etcd` (copied from Debian's `etcd-server`).
    pub etcd: PathBuf,
    /// `kube-apiserver`.
    pub apiserver: PathBuf,
    /// `kube-controller-manager`.
    pub controller_manager: PathBuf,
    /// `kube-scheduler`.
    pub scheduler: PathBuf,
}

impl ControlPlaneBinaries {
    /// Finds the installed binaries: `$ANSHIN_K8S_BIN` if set, else the install script's cache dir.
    pub fn locate() -> Result<Self, BinariesError> {
        let dir = match std::env::var_os("ANSHIN_K8S_BIN") {
            Some(dir) => PathBuf::from(dir),
            None => default_dir()?,
        };
        Self::in_dir(&dir)
    }

    /// Uses the binaries in `dir`, checking that all of them and the completion marker exist.
    pub fn in_dir(dir: &Path) -> Result<Self, BinariesError> {
        for name in [
            ".complete",
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ] {
            if !dir.join(name).is_file() {
                return Err(BinariesError::Missing {
                    dir: dir.to_path_buf(),
                    missing: name.to_string(),
                });
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            etcd: dir.join("etcd"),
            apiserver: dir.join("kube-apiserver"),
            controller_manager: dir.join("kube-controller-manager"),
            scheduler: dir.join("kube-scheduler"),
        })
    }
}

/// `$ANSHIN_CACHE` or `~/.cache/anshin`, the root of the project's caches.
pub fn anshin_cache_dir() -> Result<PathBuf, BinariesError> {
    if let Some(cache) = std::env::var_os("ANSHIN_CACHE") {
        return Ok(PathBuf::from(cache));
    }
    let home = std::env::var_os("HOME").ok_or(BinariesError::NoCacheDir)?;
    Ok(PathBuf::from(home).join(".cache").join("anshin"))
}

fn default_dir() -> Result<PathBuf, BinariesError> {
    Ok(anshin_cache_dir()?
        .join("k8s")
        .join(CONTROL_PLANE_KEY)
        .join("bin"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_directory_names_the_setup_command() {
        let err = ControlPlaneBinaries::in_dir(Path::new("/nonexistent/anshin-bin")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("scripts/setup.sh"), "{msg}");
        assert!(msg.contains("/nonexistent/anshin-bin"), "{msg}");
    }
}
