//! The gateway's shared state, its router and the listener.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anshin_guardrails::Detector;
use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::audit::AuditLog;
use crate::error::ApiError;
use crate::handler;
use crate::limits::Limiter;
use crate::listener::ConnLimits;
use crate::metrics::Metrics;
use crate::proxy::{Proxy, http_client};
use crate::routing::Backends;
use crate::table::SharedTable;

/// Tunables of the request path.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// Largest request body accepted (larger → 413).
    pub max_body_bytes: usize,
    /// Largest non-streamed backend answer accepted.
    pub max_response_bytes: usize,
    /// Backend connect timeout.
    pub connect_timeout: Duration,
    /// How long to wait for a backend's headers or first streamed bytes.
    pub response_timeout: Duration,
    /// Interval of active health checks (`GET /readyz` on every backend).
    pub health_interval: Duration,
    /// Time an authenticated client has to send the request body (408 after it).
    pub body_read_timeout: Duration,
    /// Longest silence of a backend inside a streamed answer before the stream is ended.
    pub stream_idle_timeout: Duration,
    /// Peer regions: TLS trust, the token presented and the tokens accepted ([`crate::peer`]).
    pub peering: crate::peer::Peering,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            max_body_bytes: 1 << 20,
            max_response_bytes: 16 << 20,
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(300),
            health_interval: Duration::from_secs(2),
            body_read_timeout: Duration::from_secs(30),
            stream_idle_timeout: Duration::from_secs(60),
            peering: crate::peer::Peering::default(),
        }
    }
}

/// Everything a request needs; cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) table: SharedTable,
    pub(crate) limiter: Limiter,
    pub(crate) detector: Arc<Detector>,
    pub(crate) proxy: Proxy,
    pub(crate) metrics: Metrics,
    pub(crate) audit: Option<AuditLog>,
    pub(crate) options: GatewayOptions,
}

impl Gateway {
    /// A gateway over `table` (filled by a source), guarding with `detector`, auditing to `audit`.
    pub fn new(
        table: SharedTable,
        detector: Arc<Detector>,
        metrics: Metrics,
        audit: Option<AuditLog>,
        options: GatewayOptions,
    ) -> Gateway {
        let proxy = Proxy {
            client: http_client(options.connect_timeout),
            backends: Backends::new(),
            metrics: metrics.clone(),
            response_timeout: options.response_timeout,
            max_response_bytes: options.max_response_bytes,
            peering: crate::peer::PeerClient::new(&options.peering, options.connect_timeout),
        };
        let inner = Inner {
            table,
            limiter: Limiter::new(),
            detector,
            proxy,
            metrics,
            audit,
            options,
        };
        Gateway {
            inner: Arc::new(inner),
        }
    }

    /// The routing table this gateway reads.
    pub fn table(&self) -> &SharedTable {
        &self.inner.table
    }

    /// Its metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Backend health and load.
    pub fn backends(&self) -> &Backends {
        &self.inner.proxy.backends
    }

    /// The HTTP router with every route.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/chat/completions", post(handler::chat))
            .route("/v1/completions", post(handler::completions))
            .route_layer(axum::middleware::from_fn_with_state(
                self.clone(),
                refuse_unaudited,
            ))
            .route("/v1/models", get(handler::models))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .fallback(|uri: Uri| async move {
                ApiError::NoRoute(uri.path().chars().take(200).collect())
            })
            .layer(DefaultBodyLimit::max(self.inner.options.max_body_bytes))
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                reject_oversized,
            ))
            .layer(axum::middleware::from_fn(crate::linger::linger))
            .with_state(self.clone())
    }

    /// The admin router: `/metrics` (tenant names and activity: never on the public port).
    pub fn metrics_router(&self) -> Router {
        Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(|| async { "ok" }))
            .with_state(self.clone())
    }

    /// Serves the API on `listener` (over TLS with `tls`) and `/metrics` on `metrics` until
    /// `shutdown` completes, with active health checks running.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        metrics: tokio::net::TcpListener,
        limits: ConnLimits,
        tls: Option<rustls::ServerConfig>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let checker = tokio::spawn(crate::health::run(self.clone()));
        let admin_limits = ConnLimits {
            max_connections: 64,
            ..limits
        };
        let admin = tokio::spawn(crate::listener::serve(
            metrics,
            self.metrics_router(),
            admin_limits,
            None,
            std::future::pending(),
        ));
        let tls = tls.map(Arc::new);
        let result = crate::listener::serve(listener, self.router(), limits, tls, shutdown).await;
        admin.abort();
        checker.abort();
        result
    }
}

/// Refuses a body whose announced length is over the limit before reading any of it (bodies without
/// a length are cut off at the limit by [`DefaultBodyLimit`]); [`crate::linger`] then drains what the
/// client still sends, so that it reads the 413 instead of a reset.
async fn reject_oversized(
    State(gw): State<Gateway>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let limit = gw.inner.options.max_body_bytes;
    let announced = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return ApiError::TooLarge(limit).into_response();
    }
    next.run(req).await
}

/// With `--audit-on-failure reject`, answers 503 instead of serving a request whose audit record
/// could not be persisted: nothing is served unaudited while the audit log cannot be written.
async fn refuse_unaudited(
    State(gw): State<Gateway>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if gw
        .inner
        .audit
        .as_ref()
        .is_some_and(|a| a.refuses_requests())
    {
        gw.inner.metrics.audit_refused.inc();
        return ApiError::Unavailable.into_response();
    }
    next.run(req).await
}

async fn readyz(State(gw): State<Gateway>) -> impl IntoResponse {
    if !gw.inner.table.is_loaded() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "routing table not loaded yet".to_owned(),
        );
    }
    if gw
        .inner
        .audit
        .as_ref()
        .is_some_and(|a| a.refuses_requests())
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "audit records cannot be persisted".to_owned(),
        );
    }
    (StatusCode::OK, ready_detail(&gw))
}

/// `ready`, plus what the gateway serves on last known good state (it still serves, so it is ready).
fn ready_detail(gw: &Gateway) -> String {
    let mut out = String::from("ready");
    if let Some(secs) = gw.inner.table.source_unreachable_secs() {
        out += &format!(
            "\nthe Kubernetes API has not answered for {secs} s: serving the last routing table"
        );
    }
    let held = &gw.inner.table.get().held;
    if !held.is_empty() {
        out += &format!(
            "\nserving last known good backends of {} (the control plane reports none ready; they pass the gateway's checks)",
            held.join(", ")
        );
    }
    out
}

/// The IP address of a request's peer (none when the router runs without connect info).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>();
        Ok(ClientIp(peer.map(|c| c.0.ip())))
    }
}

async fn metrics(State(gw): State<Gateway>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        gw.inner.metrics.render(),
    )
}
