//! The response side of a request: whole answers are guarded and returned, streams are handed to
//! [`crate::sse`] — whether a local backend or a peer region's gateway answered; every path ends in
//! [`Gateway::finish`] (metrics and the audit record) exactly once.

use anshin_guardrails::Mapping;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::error::ApiError;
use crate::guard::{Kind, OutputResult, guard_output, run_sized};
use crate::handler::{Ctx, Prepared};
use crate::metrics::status_class;
use crate::proxy::{Reply, Upstream};
use crate::server::Gateway;
use crate::sse::{self, StreamOutcome, StreamSpec};
use crate::table::{Action, Endpoint, Version};

/// The only part of a whole answer read when nothing in it is guarded.
#[derive(serde::Deserialize)]
struct UsageOnly {
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(serde::Deserialize, Default)]
struct Usage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: u64,
}

fn version_headers(v: &Version) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(name) = HeaderValue::from_str(&v.name) {
        h.insert("x-anshin-model-version", name);
    }
    if let Some(d) = v
        .digest
        .as_deref()
        .and_then(|d| HeaderValue::from_str(d).ok())
    {
        h.insert("x-anshin-model-digest", d);
    }
    h
}

impl Gateway {
    /// Turns the upstream answer into the caller's response.
    pub(crate) async fn respond(&self, kind: Kind, p: Prepared, mut ctx: Ctx) -> Response {
        let (reply, headers) = match p.upstream {
            Upstream::Local { lease, reply } => {
                ctx.event.route = "local".into();
                ctx.event.model_version = Some(lease.version.name.clone());
                ctx.event.model_digest = lease.version.digest.clone();
                let headers = version_headers(&lease.version);
                ctx.lease = Some(lease);
                (reply, headers)
            }
            // A peer region's answer is guarded exactly like a local backend's: this request's
            // placeholders restored, leaks redacted or blocked, under the same limits.
            Upstream::Peer { reply, version } => {
                ctx.event.route = "peer".into();
                ctx.event.model_version = version.as_ref().map(|v| v.name.clone());
                ctx.event.model_digest = version.as_ref().and_then(|v| v.digest.clone());
                (
                    reply,
                    version.as_ref().map(version_headers).unwrap_or_default(),
                )
            }
        };
        let mut resp = match reply {
            Reply::Full { status, body } => {
                self.whole(kind, &p.endpoint, p.mapping, status, body, ctx)
                    .await
            }
            Reply::Stream { first, rest } => {
                self.inner
                    .metrics
                    .ttft
                    .with_label_values(&[
                        &p.endpoint.id,
                        ctx.event.model_version.as_deref().unwrap_or("-"),
                    ])
                    .observe(ctx.started.elapsed().as_secs_f64());
                let spec = StreamSpec {
                    kind,
                    detector: Some(self.inner.detector.clone()),
                    mapping: p.mapping,
                    action: p.endpoint.policy.output,
                    idle_timeout: self.inner.options.stream_idle_timeout,
                };
                let body = self.stream(spec, first, rest, ctx);
                let ct = [
                    (header::CONTENT_TYPE, "text/event-stream"),
                    (header::CACHE_CONTROL, "no-cache"),
                ];
                (ct, body).into_response()
            }
        };
        resp.headers_mut().extend(headers);
        resp
    }

    async fn whole(
        &self,
        kind: Kind,
        ep: &Endpoint,
        mapping: Mapping,
        status: StatusCode,
        body: Bytes,
        mut ctx: Ctx,
    ) -> Response {
        if status != StatusCode::OK {
            ctx.event.outcome = "backend_status".into();
            self.finish(ctx, status.as_u16());
            return (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        }
        if ep.policy.output == Action::Off
            && mapping.is_empty()
            && let Ok(answer) = serde_json::from_slice::<UsageOnly>(&body)
        {
            // Nothing to restore or check: the answer goes out as the backend wrote it.
            let usage = answer.usage.unwrap_or_default();
            self.settle_tokens(&mut ctx, usage.prompt_tokens, usage.completion_tokens, true);
            self.record_output(&mut ctx, &OutputResult::default());
            ctx.event.outcome = "ok".into();
            self.finish(ctx, 200);
            return ([(header::CONTENT_TYPE, "application/json")], body).into_response();
        }
        let Ok(mut v) = serde_json::from_slice::<Value>(&body) else {
            tracing::error!(request_id = %ctx.event.request_id, "backend answered 200 with a body that is not JSON");
            let e = ApiError::Unavailable;
            ctx.event.outcome = "backend_invalid".into();
            let resp = e.into_response();
            self.finish(ctx, resp.status().as_u16());
            return resp;
        };
        let t0 = std::time::Instant::now();
        let (det, action) = (self.inner.detector.clone(), ep.policy.output);
        let guarded = run_sized(body.len(), move || {
            let out = guard_output(Some(&det), kind, &mut v, &mapping, action);
            (v, out)
        })
        .await;
        let Some((v, out)) = guarded else {
            ctx.event.outcome = "guardrail_error".into();
            let resp = ApiError::Unavailable.into_response();
            self.finish(ctx, resp.status().as_u16());
            return resp;
        };
        self.inner
            .metrics
            .guardrail_seconds
            .with_label_values(&["output"])
            .observe(t0.elapsed().as_secs_f64());
        let prompt = v.pointer("/usage/prompt_tokens").and_then(Value::as_u64);
        let completion = v
            .pointer("/usage/completion_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        self.settle_tokens(&mut ctx, prompt, completion, true);
        self.record_output(&mut ctx, &out);
        ctx.event.outcome = if out.blocked { "blocked" } else { "ok" }.into();
        self.finish(ctx, 200);
        Json(v).into_response()
    }

    fn stream(
        &self,
        spec: StreamSpec,
        first: Bytes,
        rest: hyper::body::Incoming,
        ctx: Ctx,
    ) -> Body {
        let on_token = {
            let gw = self.clone();
            let tenant = ctx.tenant.clone();
            move || {
                if let Some((name, limits)) = &tenant {
                    gw.inner.limiter.charge(name, *limits, 1);
                }
            }
        };
        let gw = self.clone();
        let on_end = move |o: StreamOutcome| {
            let mut ctx = ctx;
            gw.settle_tokens(&mut ctx, o.prompt_tokens, o.completion_tokens, false);
            gw.record_output(&mut ctx, &o.output);
            ctx.event.outcome = o.end.into();
            gw.finish(ctx, 200);
        };
        sse::spawn(spec, first, rest, on_token, on_end)
    }

    /// Corrects the prompt estimate with the backend's count and charges completion tokens not yet
    /// charged (`charge_completion` is false for streams, which charge as they go).
    fn settle_tokens(
        &self,
        ctx: &mut Ctx,
        prompt: Option<u64>,
        completion: u64,
        charge_completion: bool,
    ) {
        let estimate = ctx.event.prompt_tokens;
        let prompt = prompt.unwrap_or(estimate);
        ctx.event.prompt_tokens = prompt;
        ctx.event.completion_tokens = completion;
        if let Some((name, limits)) = &ctx.tenant {
            let correction = prompt as i64 - estimate as i64
                + if charge_completion {
                    completion as i64
                } else {
                    0
                };
            self.inner.limiter.charge(name, *limits, correction);
        }
    }

    fn record_output(&self, ctx: &mut Ctx, out: &OutputResult) {
        for (t, n) in &out.leaks {
            self.inner.metrics.leaks.with_label_values(&[t]).inc_by(*n);
        }
        if !out.leaks.is_empty() {
            let endpoint = ctx.event.endpoint.as_deref().unwrap_or("-");
            let version = ctx.event.model_version.as_deref().unwrap_or("-");
            self.inner
                .metrics
                .leak_answers
                .with_label_values(&[endpoint, version])
                .inc();
            tracing::warn!(request_id = %ctx.event.request_id, leaks = ?out.leaks, "model produced PII on its own");
        }
        if out.blocked {
            self.inner.metrics.blocked.inc();
        }
        ctx.event.output_leaks = out.leaks.clone();
        ctx.event.output_blocked = out.blocked;
    }

    /// Metrics and the audit record of a finished request; drops its permit and backend lease.
    pub(crate) fn finish(&self, mut ctx: Ctx, status: u16) {
        ctx.unfinished = None;
        self.record_finished(&mut ctx, status);
    }

    /// What [`Gateway::finish`] records, also for a context dropped unfinished.
    pub(crate) fn record_finished(&self, ctx: &mut Ctx, status: u16) {
        let mut ev = std::mem::take(&mut ctx.event);
        ev.status = status;
        ev.latency_ms = ctx.started.elapsed().as_millis() as u64;
        let m = &self.inner.metrics;
        let tenant = ev.tenant.as_deref().unwrap_or("-");
        let endpoint = ev.endpoint.as_deref().unwrap_or("-");
        let version = ev.model_version.as_deref().unwrap_or("-");
        m.requests
            .with_label_values(&[tenant, endpoint, version, status_class(status)])
            .inc();
        m.latency
            .with_label_values(&[endpoint, version])
            .observe(ctx.started.elapsed().as_secs_f64());
        if status == 200 {
            m.tokens
                .with_label_values(&[tenant, "prompt"])
                .inc_by(ev.prompt_tokens);
            m.tokens
                .with_label_values(&[tenant, "completion"])
                .inc_by(ev.completion_tokens);
        }
        let span = &ctx.span;
        span.record("tenant", tenant);
        span.record("endpoint", endpoint);
        span.record("model_version", version);
        span.record("route", ev.route.as_str());
        span.record("status", status);
        span.record("outcome", ev.outcome.as_str());
        span.record("prompt_tokens", ev.prompt_tokens);
        span.record("completion_tokens", ev.completion_tokens);
        // Debug, not info: the audit log already holds one record per request, and a line per request
        // on stderr would cost the default configuration a write per request.
        tracing::debug!(parent: span, request_id = %ev.request_id, tenant, endpoint, version, status,
            outcome = %ev.outcome, latency_ms = ev.latency_ms, "request finished");
        if let Some(audit) = &self.inner.audit {
            audit.record(ev, ctx.source);
        }
    }
}
