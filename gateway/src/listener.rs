//! The HTTP listener, with the limits a public endpoint needs against slow and greedy clients: at most
//! `max_connections` connections at once (further ones wait in the kernel's accept queue), request
//! headers within `header_read_timeout` (a client that trickles headers — slowloris — is cut off),
//! connections idle between requests closed after the same time, and a pause instead of a busy loop
//! when `accept` fails (e.g. out of file descriptors). Request bodies have their own deadline in the
//! handler ([`crate::handler`]), after authentication. With a TLS configuration every connection
//! must complete its handshake within [`HANDSHAKE_TIMEOUT`], in its own task (a slow client holds
//! up nobody). On shutdown, connections finish their current request and close.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Connection limits of a listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (and the longest idle keep-alive).
    pub header_read_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// Longest time a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (EMFILE and the like clear up only as connections close).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait for open connections to finish on shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown` completes; requests carry
/// [`ConnectInfo`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; pausing");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Responses are written whole; Nagle would only hold back the last segment of a large one.
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            router: router.clone(),
            peer,
            limits,
            watcher: graceful.watcher(),
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                None => conn.serve(stream).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => conn.serve(tls).await,
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %peer.ip(), error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(peer = %peer.ip(), "TLS handshake timed out"),
                    }
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period");
    }
    Ok(())
}

/// One accepted connection and what serving it needs.
struct Conn {
    router: Router,
    peer: SocketAddr,
    limits: ConnLimits,
    watcher: hyper_util::server::graceful::Watcher,
}

impl Conn {
    async fn serve<I>(self, io: I)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Conn {
            router,
            peer,
            limits,
            watcher,
        } = self;
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(req.map(axum::body::Body::new))
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(TokioIo::new(io), service);
        if let Err(e) = watcher.watch(conn).await {
            tracing::debug!(peer = %peer.ip(), error = %e, "connection ended with an error");
        }
    }
}
