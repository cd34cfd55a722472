//! Forwarding to backends with retries before the first byte: a connection failure, a timeout, a
//! 503 or 429, or a body that breaks before its first byte sends the request to another backend (and
//! if needed another version). Once a streamed response has produced its first byte it is committed:
//! it is never retried. When no local backend is left the same (input-guarded) request goes to the
//! next peer region's gateway that the tenant's residency allows ([`crate::peer`]).

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::metrics::Metrics;
use crate::peer::PeerClient;
use crate::routing::{Backends, Lease};
use crate::table::{Endpoint, Peer, Tenant, Version};

/// The HTTP/1 client used for backends, peers and health checks.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Builds the client: no TLS (backends are pod addresses), short connect timeout, pooled.
pub fn http_client(connect_timeout: Duration) -> HttpClient {
    let mut conn = HttpConnector::new();
    conn.set_connect_timeout(Some(connect_timeout));
    conn.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(conn)
}

/// Header that tells an inference server whose requests may share cached prompt prefixes with this
/// one (`anshin-inference` shares only within one scope): a hospital must not get a faster answer
/// because another hospital sent the same text, nor be able to time whether one did.
pub const CACHE_SCOPE_HEADER: &str = "x-anshin-cache-scope";

/// The cache scope of `tenant`'s requests: the first 16 hex digits of the SHA-256 of its identity
/// ([`crate::table::Tenant::id`], namespaced: equal names in two namespaces get different scopes; a
/// fixed width of header-safe characters, whatever the name holds).
pub fn cache_scope(tenant: &str) -> HeaderValue {
    let digest = Sha256::digest(tenant.as_bytes());
    HeaderValue::from_str(&hex::encode(&digest[..8])).expect("hex digits make a valid header value")
}

/// What to send upstream.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Path, e.g. `/v1/chat/completions`.
    pub path: &'static str,
    /// Body for local backends and peer gateways alike (input guardrails applied). The caller's
    /// original body and `Authorization` header are deliberately not here: nothing can send them on.
    pub body: Bytes,
    /// Request id, passed on.
    pub request_id: String,
    /// The tenant's cache scope ([`cache_scope`]), passed on to the backends.
    pub cache_scope: HeaderValue,
    /// The endpoint's backend key header ([`crate::table::Endpoint::backend_auth`]), sent to its model
    /// servers only, never to peers.
    pub backend_auth: Option<HeaderValue>,
    /// Whether the caller asked for a stream.
    pub stream: bool,
}

/// A backend's answer, read up to the point where it is committed.
#[derive(Debug)]
pub enum Reply {
    /// A whole (non-streamed or error) body.
    Full {
        /// Backend status.
        status: StatusCode,
        /// The body.
        body: Bytes,
    },
    /// A 200 stream whose first bytes have arrived.
    Stream {
        /// First body bytes.
        first: Bytes,
        /// The rest.
        rest: Incoming,
    },
}

/// Where the answer came from.
#[derive(Debug)]
pub enum Upstream {
    /// A backend of this region.
    Local {
        /// The backend (counted in flight while held).
        lease: Lease,
        /// Its answer.
        reply: Reply,
    },
    /// A peer region's gateway; its answer is guarded here like a local backend's.
    Peer {
        /// Its answer, read under the same limits as a backend's.
        reply: Reply,
        /// The version that answered there, from its response headers.
        version: Option<Version>,
    },
}

/// Forwarding settings and shared state.
#[derive(Debug, Clone)]
pub struct Proxy {
    /// HTTP client.
    pub client: HttpClient,
    /// Backend health and load.
    pub backends: Backends,
    /// Metrics.
    pub metrics: Metrics,
    /// How long to wait for a backend's response headers (and first streamed bytes).
    pub response_timeout: Duration,
    /// Largest non-streamed backend body accepted.
    pub max_response_bytes: usize,
    /// Client and token for peer gateways.
    pub peering: PeerClient,
}

pub(crate) enum Attempt {
    Done(Reply),
    Retry(&'static str),
}

impl Proxy {
    /// Sends `tenant`'s request `out` to the endpoint's backends, retrying before the first byte,
    /// then (unless it was `forwarded` here by a peer) to the `peers` its residency allows. `None`
    /// when nothing could serve.
    pub async fn forward(
        &self,
        ep: &Endpoint,
        tenant: &Tenant,
        peers: &[Peer],
        forwarded: bool,
        out: &Outgoing,
    ) -> Option<Upstream> {
        let mut tried = HashSet::new();
        while let Some(lease) = self.backends.pick(ep, &tried) {
            tried.insert(lease.addr.clone());
            let span = tracing::info_span!("backend", backend = %lease.addr, result = tracing::field::Empty);
            match self
                .attempt(&lease.addr, out)
                .instrument(span.clone())
                .await
            {
                Attempt::Done(reply) => {
                    span.record("result", "ok");
                    self.count_attempt(ep, &lease, "ok");
                    return Some(Upstream::Local { lease, reply });
                }
                Attempt::Retry(reason) => {
                    span.record("result", reason);
                    self.count_attempt(ep, &lease, reason);
                    tracing::warn!(backend = %lease.addr, reason, request_id = %out.request_id, "retrying on another backend");
                    self.metrics.retries.with_label_values(&[reason]).inc();
                }
            }
        }
        if forwarded {
            return None;
        }
        self.to_peers(tenant, peers, out).await
    }

    /// One attempt on a backend of `lease`'s version: what canary analysis reads, since a request
    /// retried on another version after a failure still succeeds for its caller.
    fn count_attempt(&self, ep: &Endpoint, lease: &crate::routing::Lease, outcome: &str) {
        self.metrics
            .attempts
            .with_label_values(&[&ep.id, &lease.version.name, outcome])
            .inc();
    }

    pub(crate) fn request(
        &self,
        uri: String,
        body: Bytes,
        out: &Outgoing,
    ) -> Option<Request<Full<Bytes>>> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-request-id", out.request_id.as_str())
            .header(CACHE_SCOPE_HEADER, out.cache_scope.clone())
            .body(Full::new(body))
            .ok()?;
        crate::telemetry::pass_trace_on(req.headers_mut());
        Some(req)
    }

    async fn attempt(&self, addr: &str, out: &Outgoing) -> Attempt {
        let Some(mut req) =
            self.request(format!("http://{addr}{}", out.path), out.body.clone(), out)
        else {
            return Attempt::Retry("bad_address");
        };
        if let Some(auth) = &out.backend_auth {
            req.headers_mut()
                .insert(header::AUTHORIZATION, auth.clone());
        }
        let resp = match tokio::time::timeout(self.response_timeout, self.client.request(req)).await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::debug!(backend = %addr, error = ?e, "backend request failed");
                self.backends.eject(addr);
                return Attempt::Retry("connect");
            }
            Err(_) => {
                self.backends.eject(addr);
                return Attempt::Retry("timeout");
            }
        };
        let status = resp.status();
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            if status == StatusCode::SERVICE_UNAVAILABLE {
                self.backends.eject(addr);
            }
            return Attempt::Retry(if status == StatusCode::TOO_MANY_REQUESTS {
                "busy"
            } else {
                "unavailable"
            });
        }
        if status.is_server_error() {
            // Nothing has reached the caller yet: another backend (or version) gets the request.
            self.backends.eject(addr);
            return Attempt::Retry("server_error");
        }
        let result = if out.stream && status == StatusCode::OK {
            self.first_bytes(resp.into_body()).await
        } else {
            self.whole(status, resp.into_body()).await
        };
        result.unwrap_or_else(|| {
            self.backends.eject(addr);
            Attempt::Retry("body")
        })
    }

    pub(crate) async fn first_bytes(&self, mut body: Incoming) -> Option<Attempt> {
        let deadline = tokio::time::Instant::now() + self.response_timeout;
        loop {
            let frame = tokio::time::timeout_at(deadline, body.frame())
                .await
                .ok()??
                .ok()?;
            if let Ok(data) = frame.into_data()
                && !data.is_empty()
            {
                return Some(Attempt::Done(Reply::Stream {
                    first: data,
                    rest: body,
                }));
            }
        }
    }

    pub(crate) async fn whole(&self, status: StatusCode, body: Incoming) -> Option<Attempt> {
        let limited = Limited::new(body, self.max_response_bytes);
        let collected = tokio::time::timeout(self.response_timeout, limited.collect())
            .await
            .ok()?
            .ok()?;
        Some(Attempt::Done(Reply::Full {
            status,
            body: collected.to_bytes(),
        }))
    }
}
