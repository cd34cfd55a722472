//! Kubeconfig files for a local cluster, and kube clients made from them.

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::certs::ClusterCerts;

/// Errors writing or reading a kubeconfig.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    /// Writing the file failed.
    #[error("cannot write kubeconfig {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Reading or interpreting the file failed.
    #[error("cannot use kubeconfig {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What kube-rs reported.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// Building the client failed.
    #[error("cannot build a client from {path}: {source}")]
    Client {
        /// The file.
        path: PathBuf,
        /// What kube-rs reported.
        #[source]
        source: kube::Error,
    },
}

/// Writes a kubeconfig for the admin user of the API server on `127.0.0.1:port`.
pub fn write(path: &Path, port: u16, certs: &ClusterCerts) -> Result<(), KubeconfigError> {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: anshin-local\n  cluster:\n    \
         server: https://127.0.0.1:{port}\n    certificate-authority: {ca}\nusers:\n- name: admin\n  user:\n    \
         token: {token}\ncontexts:\n- name: anshin-local\n  context:\n    cluster: anshin-local\n    user: admin\n    \
         namespace: default\ncurrent-context: anshin-local\n",
        ca = certs.ca_crt.display(),
        token = certs.admin_token,
    );
    std::fs::write(path, text).map_err(|source| KubeconfigError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// A kube client from a kubeconfig file (its current context).
pub async fn client(path: &Path) -> Result<kube::Client, KubeconfigError> {
    install_crypto_provider();
    let read_err = |source| KubeconfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let kubeconfig = Kubeconfig::read_from(path).map_err(read_err)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(read_err)?;
    kube::Client::try_from(config).map_err(|source| KubeconfigError::Client {
        path: path.to_path_buf(),
        source,
    })
}

/// Makes ring the process-wide rustls provider (a no-op when one is already installed).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
