//! TLS material for one local cluster, made with the `openssl` command-line tool.
//!
//! A private CA signs the API server's serving certificate for `127.0.0.1`/`localhost` (rustls refuses a
//! self-signed `CA:TRUE` certificate as a server certificate), and an RSA key pair signs and verifies
//! service-account tokens. An admin bearer token is written to the API server's token file.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Errors creating the cluster's keys and certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// `openssl` could not be run at all.
    #[error("cannot run openssl (install the Debian package `openssl`): {0}")]
    Openssl(#[source] std::io::Error),
    /// An `openssl` step exited with an error.
    #[error("openssl {step} failed: {stderr}")]
    Step {
        /// Which step.
        step: String,
        /// What openssl printed.
        stderr: String,
    },
    /// Writing a file failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Paths of the files this module creates, all under one directory.
#[derive(Debug, Clone)]
pub struct ClusterCerts {
    /// The CA certificate clients trust.
    pub ca_crt: PathBuf,
    /// The CA key (also signs nothing else; kept for the controller-manager's signer flags).
    pub ca_key: PathBuf,
    /// The API server's serving certificate.
    pub serving_crt: PathBuf,
    /// Its key.
    pub serving_key: PathBuf,
    /// Service-account signing key (private).
    pub sa_key: PathBuf,
    /// Service-account verification key (public).
    pub sa_pub: PathBuf,
    /// The static token file (`token,user,uid,groups`).
    pub tokens_csv: PathBuf,
    /// The admin's bearer token (member of `system:masters`).
    pub admin_token: String,
}

impl ClusterCerts {
    /// Creates a fresh CA, serving certificate, service-account key pair and admin token in `dir`.
    pub fn create(dir: &Path) -> Result<Self, CertsError> {
        let p = |name: &str| dir.join(name);
        let s = |path: &PathBuf| path.to_string_lossy().into_owned();
        let certs = Self {
            ca_crt: p("ca.crt"),
            ca_key: p("ca.key"),
            serving_crt: p("apiserver.crt"),
            serving_key: p("apiserver.key"),
            sa_key: p("sa.key"),
            sa_pub: p("sa.pub"),
            tokens_csv: p("tokens.csv"),
            admin_token: random_hex(16).map_err(CertsError::Openssl)?,
        };
        let sa_key = s(&certs.sa_key);
        openssl("sa key", &["genrsa", "-out", &sa_key, "2048"])?;
        openssl(
            "sa pub",
            &["rsa", "-in", &sa_key, "-pubout", "-out", &s(&certs.sa_pub)],
        )?;
        let (ca, ca_key) = (s(&certs.ca_crt), s(&certs.ca_key));
        let ca_args = [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "365",
            "-subj",
            "/CN=anshin-local-ca",
        ];
        openssl(
            "ca",
            &[&ca_args[..], &["-keyout", &ca_key, "-out", &ca]].concat(),
        )?;
        certs.sign_serving_cert(dir)?;
        write(
            &certs.tokens_csv,
            &format!("{},admin,admin,system:masters\n", certs.admin_token),
        )?;
        Ok(certs)
    }
}

impl ClusterCerts {
    /// A serving certificate for 127.0.0.1/localhost, signed by the CA.
    fn sign_serving_cert(&self, dir: &Path) -> Result<(), CertsError> {
        let s = |path: &Path| path.to_string_lossy().into_owned();
        let (ca, ca_key, crt, key) = (
            s(&self.ca_crt),
            s(&self.ca_key),
            s(&self.serving_crt),
            s(&self.serving_key),
        );
        let (csr, ext) = (s(&dir.join("apiserver.csr")), dir.join("apiserver.ext"));
        let req = [
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=kube-apiserver",
        ];
        openssl(
            "serving csr",
            &[&req[..], &["-keyout", &key, "-out", &csr]].concat(),
        )?;
        write(
            &ext,
            "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default.svc\n\
             basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )?;
        let ext = s(&ext);
        let sign = [
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "365",
        ];
        openssl(
            "serving cert",
            &[&sign[..], &["-extfile", &ext, "-out", &crt]].concat(),
        )
    }
}

fn openssl(step: &str, args: &[&str]) -> Result<(), CertsError> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .map_err(CertsError::Openssl)?;
    if out.status.success() {
        return Ok(());
    }
    Err(CertsError::Step {
        step: step.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn write(path: &Path, text: &str) -> Result<(), CertsError> {
    std::fs::write(path, text).map_err(|source| CertsError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// `n` random bytes from the kernel, hex-encoded.
pub fn random_hex(n: usize) -> std::io::Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}
