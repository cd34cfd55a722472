//! TLS for region forwarding: the client side trusts only the peer CA (`--peer-ca-file`), the
//! listening side serves a certificate and key (`serve --tls-cert/--tls-key`), so a peer region's
//! gateway can be reached over `https://`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::{PeerError, invalid, read};
use crate::server::Gateway;

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

/// Accepted TLS connections for `axum::serve`; handshakes run in their own tasks (bounded by a
/// timeout) so that a slow client holds up nobody.
pub struct TlsListener {
    local: SocketAddr,
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl TlsListener {
    /// Wraps `listener` with `config`.
    pub fn new(
        listener: TcpListener,
        config: rustls::ServerConfig,
    ) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
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
            // The accept task never ends while the listener lives; wait rather than spin.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

impl Gateway {
    /// [`Gateway::serve`] over TLS: the same router and health checks on `listener`.
    pub async fn serve_tls(
        self,
        listener: TlsListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let checker = tokio::spawn(crate::health::run(self.clone()));
        // axum knows the peer address of TCP listeners only; hand it on as the same `ConnectInfo`.
        let app = self
            .router()
            .layer(axum::middleware::map_request(connect_info))
            .into_make_service_with_connect_info::<TlsPeer>();
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        checker.abort();
        result
    }
}

/// The peer address of a TLS connection.
#[derive(Debug, Clone, Copy)]
struct TlsPeer(SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for TlsPeer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> TlsPeer {
        TlsPeer(*stream.remote_addr())
    }
}

async fn connect_info(mut req: axum::extract::Request) -> axum::extract::Request {
    use axum::extract::ConnectInfo;
    if let Some(ConnectInfo(TlsPeer(addr))) =
        req.extensions().get::<ConnectInfo<TlsPeer>>().copied()
    {
        req.extensions_mut().insert(ConnectInfo(addr));
    }
    req
}
