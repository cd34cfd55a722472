//! The webhook's TLS: its certificates ([`self_signed`] for development clusters; otherwise read from
//! a mounted Secret) and a listener for axum that accepts TCP, completes handshakes concurrently and
//! yields TLS streams. A handshake must finish within [`HANDSHAKE_TIMEOUT`] (a client that opens
//! connections and stays silent holds nothing for long), and a failed `accept` (e.g. out of file
//! descriptors) pauses the loop for [`ACCEPT_BACKOFF`] instead of spinning.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::WebhookError;

/// Longest time a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept`.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// PEM-encoded CA certificate, serving certificate and key.
#[derive(Clone, Debug)]
pub struct Certs {
    /// CA certificate (goes into the configuration's caBundle).
    pub ca_pem: String,
    /// Serving certificate signed by the CA.
    pub cert_pem: String,
    /// Serving key.
    pub key_pem: String,
}

/// A fresh CA and a serving certificate for `hosts` (IP addresses or DNS names).
pub fn self_signed(hosts: &[String]) -> Result<Certs, WebhookError> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "anshin-operator webhook CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "anshin-operator webhook");
    for host in hosts {
        params.subject_alt_names.push(match host.parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.clone().try_into()?),
        });
    }
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;
    Ok(Certs {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Accepted TLS connections, ready for `axum::serve`.
pub struct TlsListener {
    local: SocketAddr,
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

/// A rustls server configuration from PEM certificate chain and key.
pub fn server_config(cert_pem: &str, key_pem: &str) -> Result<rustls::ServerConfig, rustls::Error> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str| rustls::Error::General(format!("cannot parse the {what} PEM"));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| bad("certificate"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| bad("key"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
}

impl TlsListener {
    /// Wraps `listener`; handshakes run in their own tasks so a slow client blocks nobody.
    pub fn new(
        listener: TcpListener,
        config: rustls::ServerConfig,
    ) -> std::io::Result<TlsListener> {
        TlsListener::with_handshake_timeout(listener, config, HANDSHAKE_TIMEOUT)
    }

    /// [`TlsListener::new`] with another handshake deadline (tests).
    pub fn with_handshake_timeout(
        listener: TcpListener,
        config: rustls::ServerConfig,
        handshake_timeout: Duration,
    ) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "webhook accept failed; pausing");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => drop(tx.send((tls, peer)).await),
                        Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { local, rx })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept task never ends while the listener lives; wait forever rather than spin.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn config() -> rustls::ServerConfig {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        server_config(&cert.cert.pem(), &cert.signing_key.serialize_pem()).expect("config")
    }

    #[tokio::test]
    async fn a_client_that_never_completes_the_handshake_is_disconnected() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = tcp.local_addr().expect("addr");
        let _listener =
            TlsListener::with_handshake_timeout(tcp, config(), Duration::from_millis(300))
                .expect("listener");
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "closed after the handshake deadline: {read:?}"
        );
    }
}
