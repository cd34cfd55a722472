//! TLS for region forwarding: the client side trusts only the peer CA (`--peer-ca-file`), the
//! listening side serves a certificate and key (`serve --tls-cert/--tls-key`, handshakes in
//! [`crate::listener`]), so a peer region's gateway can be reached over `https://`.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{PeerError, invalid, read};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PeerError> {
    let pem = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| invalid(path, "is not a PEM certificate file"))?;
    if certs.is_empty() {
        return Err(invalid(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// Client settings that trust the CA certificates in the PEM file `ca_file` and nothing else.
pub fn client_config(ca_file: &Path) -> Result<rustls::ClientConfig, PeerError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(ca_file)? {
        roots
            .add(cert)
            .map_err(|e| invalid(ca_file, format!("not a usable CA certificate: {e}")))?;
    }
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(ca_file, e.to_string()))
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

/// Client settings without any trusted CA: every TLS handshake fails (used without `--peer-ca-file`).
pub(crate) fn trust_nobody() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}

/// Server settings from a PEM certificate chain and its PEM private key.
pub fn server_config(cert_file: &Path, key_file: &Path) -> Result<rustls::ServerConfig, PeerError> {
    let certs = certificates(cert_file)?;
    let key = PrivateKeyDer::from_pem_slice(read(key_file)?.as_bytes())
        .map_err(|_| invalid(key_file, "is not a PEM private key"))?;
    rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| {
            invalid(
                cert_file,
                format!("certificate and key do not form a server identity: {e}"),
            )
        })
}
