//! The OpenAI endpoints: authenticate (from the headers, before any of the body is read), read the
//! body within its deadline, authorise, limit, guard the input, forward, guard the output, and finish
//! every authenticated request — success, failure, or a client that went away before its answer —
//! with metrics and one audit record (unauthenticated ones are counted per source by the audit log).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tracing::Instrument;

use crate::audit::Event;
use crate::error::ApiError;
use crate::guard::{Kind, guard_input, run_sized};
use crate::keys::Identity;
use crate::limits::Permit;
use crate::proxy::{Outgoing, Upstream};
use crate::routing::Lease;
use crate::server::{ClientIp, Gateway};
use crate::table::{Action, Endpoint, Limits, Snapshot, Tenant};

/// `POST /v1/chat/completions`.
pub async fn chat(State(gw): State<Gateway>, ClientIp(source): ClientIp, req: Request) -> Response {
    gw.complete(Kind::Chat, source, req).await
}

/// `POST /v1/completions`.
pub async fn completions(
    State(gw): State<Gateway>,
    ClientIp(source): ClientIp,
    req: Request,
) -> Response {
    gw.complete(Kind::Completion, source, req).await
}

/// `GET /v1/models`: only the endpoints the caller's tenant may use.
pub async fn models(State(gw): State<Gateway>, headers: HeaderMap) -> Response {
    let snap = gw.inner.table.get();
    match authenticate(&snap, &headers) {
        Ok((_, tenant)) => {
            let data: Vec<Value> = snap
                .endpoints
                .values()
                .filter(|e| tenant.allows(e))
                .map(|e| json!({"id": e.name, "object": "model", "created": 0, "owned_by": "anshin"}))
                .collect();
            Json(json!({"object": "list", "data": data})).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// One request's bookkeeping, finished exactly once.
pub(crate) struct Ctx {
    pub(crate) started: Instant,
    pub(crate) event: Event,
    pub(crate) tenant: Option<(String, Limits)>,
    pub(crate) permit: Option<Permit>,
    pub(crate) lease: Option<Lease>,
    /// The peer's address (unauthenticated requests are audited per source).
    pub(crate) source: Option<IpAddr>,
    /// The request's trace span; [`Gateway::finish`] records the outcome on it and ends it.
    pub(crate) span: tracing::Span,
    /// The gateway, until the request is finished. A context dropped before that — hyper drops the
    /// request when its client disconnects before the answer, after the backend may already have
    /// received the (redacted) request — finishes itself as `client_gone` (status 499).
    pub(crate) unfinished: Option<Gateway>,
}

/// Status recorded for a request whose client went away before its answer (nginx's convention).
pub(crate) const CLIENT_GONE: u16 = 499;

impl Drop for Ctx {
    fn drop(&mut self) {
        if let Some(gw) = self.unfinished.take() {
            self.event.outcome = "client_gone".into();
            gw.record_finished(self, CLIENT_GONE);
        }
    }
}

fn request_id(headers: &HeaderMap) -> String {
    let valid = |s: &&str| {
        (1..=128).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    };
    match headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(valid)
    {
        Some(id) => id.to_owned(),
        None => hex::encode(rand::random::<[u8; 16]>()),
    }
}

fn authenticate(snap: &Snapshot, headers: &HeaderMap) -> Result<(Identity, Arc<Tenant>), ApiError> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::MissingKey)?;
    let auth = auth.to_str().map_err(|_| ApiError::InvalidKey)?;
    let key = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("bearer "))
        .ok_or(ApiError::MissingKey)?;
    let id = snap
        .keys
        .authenticate(key.trim())
        .ok_or(ApiError::InvalidKey)?;
    let tenant = snap
        .tenants
        .get(&id.tenant)
        .cloned()
        .ok_or(ApiError::InvalidKey)?;
    Ok((id, tenant))
}

/// Reads the body, at most `limit` bytes (413 beyond) within `timeout` (408 after it).
async fn read_body(
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<(Bytes, Value), ApiError> {
    let read = tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await;
    let bytes = match read {
        Err(_) => return Err(ApiError::BodyTimeout(timeout.as_secs())),
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            let e = e.into_inner();
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return Err(ApiError::TooLarge(limit));
            }
            return Err(ApiError::BadRequest(format!(
                "the request body could not be read: {e}"
            )));
        }
    };
    let v = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
    Ok((bytes, v))
}

fn endpoint(snap: &Snapshot, tenant: &Tenant, body: &Value) -> Result<Arc<Endpoint>, ApiError> {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::BadRequest("`model` is required".into()))?;
    let ep = snap
        .endpoint_for(tenant, model)
        .ok_or_else(|| ApiError::NotFound(model.chars().take(100).collect()))?;
    if !tenant.allows(ep) {
        return Err(ApiError::Forbidden(model.to_owned()));
    }
    Ok(ep.clone())
}

/// What [`Gateway::prepare`] hands to the response side.
pub(crate) struct Prepared {
    pub(crate) endpoint: Arc<Endpoint>,
    pub(crate) upstream: Upstream,
    pub(crate) mapping: anshin_guardrails::Mapping,
}

impl Gateway {
    async fn complete(&self, kind: Kind, source: Option<IpAddr>, req: Request) -> Response {
        let (parts, body) = req.into_parts();
        let headers = parts.headers;
        let mut ctx = Ctx {
            started: Instant::now(),
            event: Event {
                time: jiff::Timestamp::now().to_string(),
                request_id: request_id(&headers),
                route: "none".into(),
                ..Default::default()
            },
            tenant: None,
            permit: None,
            lease: None,
            source,
            span: tracing::Span::none(),
            unfinished: Some(self.clone()),
        };
        let rid = ctx.event.request_id.clone();
        let span = tracing::info_span!(
            "request",
            request_id = %rid,
            kind = ?kind,
            tenant = tracing::field::Empty,
            endpoint = tracing::field::Empty,
            model_version = tracing::field::Empty,
            route = tracing::field::Empty,
            status = tracing::field::Empty,
            outcome = tracing::field::Empty,
            prompt_tokens = tracing::field::Empty,
            completion_tokens = tracing::field::Empty,
        );
        crate::telemetry::continue_trace(&span, &headers);
        ctx.span = span.clone();
        let prepared = self
            .prepare(kind, &headers, body, &mut ctx)
            .instrument(span.clone())
            .await;
        let mut resp = match prepared {
            Ok(p) => self.respond(kind, p, ctx).instrument(span.clone()).await,
            Err(e) => self.fail(e, ctx),
        };
        if let Ok(v) = HeaderValue::from_str(&rid) {
            resp.headers_mut().insert("x-request-id", v);
        }
        resp
    }

    fn fail(&self, e: ApiError, mut ctx: Ctx) -> Response {
        if let ApiError::RateLimited { limit, .. } = &e {
            let tenant = ctx.tenant.as_ref().map_or("-", |t| t.0.as_str());
            self.inner
                .metrics
                .rate_limited
                .with_label_values(&[tenant, limit])
                .inc();
        }
        ctx.event.outcome = e.code().into();
        let resp = e.into_response();
        self.finish(ctx, resp.status().as_u16());
        resp
    }

    async fn prepare(
        &self,
        kind: Kind,
        headers: &HeaderMap,
        body: Body,
        ctx: &mut Ctx,
    ) -> Result<Prepared, ApiError> {
        let snap = self.inner.table.get();
        // A peer gateway's token names the tenant; it never falls back to the Authorization header.
        let peer = crate::peer::authenticate(&snap, &self.inner.options.peering.accepted, headers)?;
        let forwarded = peer.is_some();
        let (id, tenant) = match peer {
            Some(p) => {
                ctx.event.origin = Some(p.origin);
                (p.identity, p.tenant)
            }
            None => authenticate(&snap, headers)?,
        };
        ctx.event.tenant = Some(id.tenant.clone());
        ctx.event.key_fingerprint = Some(id.fingerprint.clone());
        ctx.tenant = Some((tenant.id.clone(), tenant.limits));
        let opts = &self.inner.options;
        let (original, body) = read_body(body, opts.max_body_bytes, opts.body_read_timeout).await?;
        let ep = endpoint(&snap, &tenant, &body)?;
        ctx.event.endpoint = Some(ep.id.clone());
        ctx.event.input_policy = ep.policy.input.as_str().into();
        ctx.event.output_policy = ep.policy.output.as_str().into();
        let estimate = (original.len() / 3) as u64;
        ctx.permit = Some(
            self.inner
                .limiter
                .admit(&tenant.id, tenant.limits, estimate)?,
        );
        ctx.event.prompt_tokens = estimate;
        let t0 = Instant::now();
        // Detection is CPU work: large bodies go to the blocking pool. `Off` only checks the shape.
        let (det, action) = (self.inner.detector.clone(), ep.policy.input);
        let size = if action == Action::Off {
            0
        } else {
            original.len()
        };
        let (body, input) = run_sized(size, move || {
            let mut body = body;
            let r = guard_input(Some(&det), kind, &mut body, action);
            (body, r)
        })
        .await
        .ok_or(ApiError::Unavailable)?;
        self.inner
            .metrics
            .guardrail_seconds
            .with_label_values(&["input"])
            .observe(t0.elapsed().as_secs_f64());
        let input = input?;
        for (t, n) in &input.counts {
            self.inner
                .metrics
                .detections
                .with_label_values(&[t])
                .inc_by(*n);
        }
        ctx.event.input_entities = input.counts.clone();
        let out = Outgoing {
            path: if kind == Kind::Chat {
                "/v1/chat/completions"
            } else {
                "/v1/completions"
            },
            // With guardrails on, the backend gets exactly what was checked (re-serialised, so that
            // e.g. a duplicate key cannot carry unchecked text past them); with them off, the
            // caller's bytes as they came.
            body: if action == Action::Off {
                original
            } else {
                Bytes::from(body.to_string())
            },
            request_id: ctx.event.request_id.clone(),
            cache_scope: tenant.cache_scope.clone(),
            backend_auth: ep.backend_auth.clone(),
            stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
        };
        let upstream = self
            .inner
            .proxy
            .forward(&ep, &tenant, &snap.peers, forwarded, &out)
            .await
            .ok_or(ApiError::Unavailable)?;
        Ok(Prepared {
            endpoint: ep,
            upstream,
            mapping: input.mapping,
        })
    }
}
