//! The sending side: which peers a request may go to (residency), what is sent (the redacted body,
//! the peer token and the tenant, nothing of the caller's credentials), and how a peer's answer is
//! read — under the same size and time limits as a local backend's, then guarded like one.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{PEER_TENANT_HEADER, PEER_TOKEN_HEADER, Peering};
use crate::proxy::{Attempt, Outgoing, Proxy, Upstream};
use crate::table::{Peer, Tenant, Version};

/// The client for peer gateways: TLS with the peer CA for `https://`, plain HTTP for loopback
/// `http://` peers (the only ones the routing rules let through), and the token it presents.
#[derive(Debug, Clone)]
pub struct PeerClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    token: Option<HeaderValue>,
}

impl PeerClient {
    /// A client for `peering` with the backends' connect timeout.
    pub fn new(peering: &Peering, connect_timeout: Duration) -> PeerClient {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let tls = peering
            .tls
            .clone()
            .unwrap_or_else(|| Arc::new(super::tls::trust_nobody()));
        let conn = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        PeerClient {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(conn),
            token: peering.token.clone(),
        }
    }
}

impl Proxy {
    fn refused(&self, reason: &'static str) {
        self.metrics.peer_refused.with_label_values(&[reason]).inc();
    }

    /// Tries `peers` in order for `tenant`'s request `out`: only peers of the tenant's residency, only
    /// with a peer token. `None` when none served (the caller gets the safe 503).
    pub(crate) async fn to_peers(
        &self,
        tenant: &Tenant,
        peers: &[Peer],
        out: &Outgoing,
    ) -> Option<Upstream> {
        if peers.is_empty() {
            return None;
        }
        let Some(token) = &self.peering.token else {
            self.refused("no_peer_token");
            tracing::warn!(request_id = %out.request_id, "not forwarded to a peer region: no --peer-token-file");
            return None;
        };
        let Ok(tenant_id) = HeaderValue::from_str(&tenant.id) else {
            self.refused("tenant_not_header_safe");
            tracing::warn!(request_id = %out.request_id, "not forwarded to a peer region: the tenant name is not header-safe");
            return None;
        };
        for peer in peers {
            if !peer.may_serve(tenant) {
                self.refused("residency");
                tracing::warn!(request_id = %out.request_id, peer = %peer.url,
                    "not forwarded to this peer region: its residency differs from the tenant's");
                continue;
            }
            if let Some(up) = self.to_peer(peer, token, &tenant_id, out).await {
                self.metrics.peer_forwards.inc();
                return Some(up);
            }
        }
        None
    }

    async fn to_peer(
        &self,
        peer: &Peer,
        token: &HeaderValue,
        tenant: &HeaderValue,
        out: &Outgoing,
    ) -> Option<Upstream> {
        // The body local backends get (placeholders, never the caller's values); no Authorization.
        let mut req = self.request(format!("{}{}", peer.url, out.path), out.body.clone(), out)?;
        req.headers_mut().insert(PEER_TOKEN_HEADER, token.clone());
        req.headers_mut().insert(PEER_TENANT_HEADER, tenant.clone());
        let rid = &out.request_id;
        let resp = match tokio::time::timeout(
            self.response_timeout,
            self.peering.client.request(req),
        )
        .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::warn!(peer = %peer.url, request_id = %rid, error = ?e, "peer gateway unreachable");
                return None;
            }
            Err(_) => {
                tracing::warn!(peer = %peer.url, request_id = %rid, "peer gateway timed out");
                return None;
            }
        };
        let status = resp.status();
        match status {
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                tracing::warn!(peer = %peer.url, request_id = %rid, %status, "peer gateway could not serve");
                return None;
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                tracing::error!(peer = %peer.url, request_id = %rid, %status,
                    "peer gateway refused this gateway's peer token or the tenant");
                return None;
            }
            _ => {}
        }
        let version = peer_version(resp.headers());
        let body = resp.into_body();
        let read = if out.stream && status == StatusCode::OK {
            self.first_bytes(body).await
        } else {
            self.whole(status, body).await
        };
        match read {
            Some(Attempt::Done(reply)) => Some(Upstream::Peer { reply, version }),
            _ => {
                tracing::warn!(peer = %peer.url, request_id = %rid, "peer answer broke, was too large or too slow");
                None
            }
        }
    }
}

/// The version that answered in the peer region, from its `x-anshin-model-*` headers.
fn peer_version(h: &http::HeaderMap) -> Option<Version> {
    let text = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    Some(Version {
        name: text("x-anshin-model-version")?,
        digest: text("x-anshin-model-digest"),
        weight: 0,
        backends: Vec::new(),
    })
}
