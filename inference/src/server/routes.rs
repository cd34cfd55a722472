//! Request handlers: the OpenAI endpoints, health, readiness and metrics.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::api::{self, ChatRequest, CommonParams, CompletionRequest, Kind};
use super::auth::{self, Caller};
use super::error::ApiError;
use super::{AppState, InFlight};
use crate::prompt;
use crate::scheduler::GenEvent;

/// All routes. The API and `/metrics` pass [`auth::authenticate`] first; health and readiness never do,
/// so the kubelet can probe them without the key.
pub fn router(state: AppState) -> Router {
    let guarded = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    Router::new()
        .merge(guarded)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn healthz(State(s): State<AppState>) -> (StatusCode, &'static str) {
    if s.lifecycle.is_failed() {
        (StatusCode::SERVICE_UNAVAILABLE, "engine stopped")
    } else {
        (StatusCode::OK, "ok")
    }
}

async fn readyz(State(s): State<AppState>) -> (StatusCode, &'static str) {
    if s.lifecycle.is_failed() {
        (StatusCode::SERVICE_UNAVAILABLE, "engine stopped")
    } else if s.lifecycle.is_ready() {
        (StatusCode::OK, "ready")
    } else if s.lifecycle.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "loading")
    }
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

async fn models(State(s): State<AppState>) -> Json<Value> {
    Json(
        json!({"object": "list", "data": [{"id": &*s.model_id, "object": "model", "created": now(),
                                           "owned_by": "anshin"}]}),
    )
}

async fn chat(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Json<ChatRequest>, JsonRejection>,
) -> Response {
    let scope = cache_scope(&headers, caller);
    let result = async {
        let Json(req) = body.map_err(|e| ApiError::Invalid(e.body_text()))?;
        if req.messages.is_empty() {
            return Err(ApiError::Invalid("messages must not be empty".into()));
        }
        let (engine, guard) = s.admit()?;
        let ids = prompt::chat_ids(&engine.tokenizer, &engine.template, &req.messages)
            .map_err(|e| ApiError::Invalid(e.to_string()))?;
        generate(&s, guard, Kind::Chat, ids, &req.params, scope).await
    }
    .await;
    counted(&s, result)
}

async fn completions(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Json<CompletionRequest>, JsonRejection>,
) -> Response {
    let scope = cache_scope(&headers, caller);
    let result = async {
        let Json(req) = body.map_err(|e| ApiError::Invalid(e.body_text()))?;
        let prompt = req.prompt_text()?;
        let (engine, guard) = s.admit()?;
        // A completion prompt is the caller's text throughout: no special tokens in it.
        let ids = engine
            .tokenizer
            .encode_plain(&prompt)
            .map_err(|e| ApiError::Invalid(e.to_string()))?;
        generate(&s, guard, Kind::Text, ids, &req.params, scope).await
    }
    .await;
    counted(&s, result)
}

/// The request's cache scope: a hash of its `x-anshin-cache-scope` header (the gateway sets one per
/// tenant), 0 without one. Requests share cached prefixes only within a scope. The header counts only
/// from a caller that presented the server's API key: anyone else could name a hospital's scope and
/// time its cache hits, so their header is ignored and they get scope 0.
fn cache_scope(headers: &HeaderMap, caller: Caller) -> u64 {
    use std::hash::{Hash, Hasher};
    if caller != Caller::Authenticated {
        return 0;
    }
    let Some(value) = headers.get(CACHE_SCOPE_HEADER) else {
        return 0;
    };
    // SipHash with fixed keys: stable within the process, which is all a scope needs.
    let mut h = std::hash::DefaultHasher::new();
    value.as_bytes().hash(&mut h);
    h.finish().max(1)
}

/// Header naming a request's cache scope ([`cache_scope`]).
pub const CACHE_SCOPE_HEADER: &str = "x-anshin-cache-scope";

/// Counts rejected requests by status (accepted ones are counted by the scheduler when they end).
fn counted(s: &AppState, result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(|e| {
        s.metrics.request_done(e.status_label());
        e.into_response()
    })
}

async fn generate(
    s: &AppState,
    guard: InFlight,
    kind: Kind,
    ids: Vec<u32>,
    params: &CommonParams,
    cache_scope: u64,
) -> Result<Response, ApiError> {
    let engine = s.engine.get().ok_or(ApiError::NotReady)?;
    let mut req = params.to_request(ids, engine.default_max_tokens)?;
    req.cache_scope = cache_scope;
    s.faults.fail_before_answer()?;
    let rx = s.faults.shape(engine.handle.submit(req)?);
    let id = s.request_id(if kind == Kind::Chat {
        "chatcmpl"
    } else {
        "cmpl"
    });
    let model = s.model_id.to_string();
    if params.stream {
        return Ok(stream(rx, guard, kind, id, model, params.include_usage()));
    }
    collect(rx, kind, &id, &model).await
}

async fn collect(
    mut rx: mpsc::UnboundedReceiver<GenEvent>,
    kind: Kind,
    id: &str,
    model: &str,
) -> Result<Response, ApiError> {
    let mut text = String::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            GenEvent::Delta(t) => text.push_str(&t),
            GenEvent::Done(c) => {
                return Ok(
                    Json(api::full_response(kind, id, model, now(), &text, &c)).into_response()
                );
            }
            GenEvent::Failed(e) => return Err(ApiError::Engine(e)),
        }
    }
    Err(ApiError::Engine(DROPPED.into()))
}

/// What a request learns when the engine ends it without a last event.
const DROPPED: &str = "the engine dropped the request";

/// The SSE event that ends a failed stream.
fn engine_error(message: &str) -> Value {
    json!({"error": {"message": message, "type": "server_error", "code": "engine_error"}})
}

/// Streams events as SSE. A forwarding task owns the generation receiver and the in-flight guard, so a
/// client that disconnects drops the SSE side, the task's send fails, and the request is cancelled.
fn stream(
    mut rx: mpsc::UnboundedReceiver<GenEvent>,
    guard: InFlight,
    kind: Kind,
    id: String,
    model: String,
    include_usage: bool,
) -> Response {
    let (tx, out) = mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let _guard = guard;
        let created = now();
        let data = |v: Value| Event::default().data(v.to_string());
        if kind == Kind::Chat
            && tx
                .send(data(api::chunk(kind, &id, &model, created, None, None)))
                .await
                .is_err()
        {
            return;
        }
        let mut ended = false;
        while let Some(ev) = rx.recv().await {
            ended = matches!(ev, GenEvent::Done(_) | GenEvent::Failed(_));
            let events = match ev {
                GenEvent::Delta(t) => {
                    vec![data(api::chunk(kind, &id, &model, created, Some(&t), None))]
                }
                GenEvent::Done(c) => {
                    let mut v = vec![data(api::chunk(
                        kind,
                        &id,
                        &model,
                        created,
                        None,
                        Some(c.finish_reason.as_str()),
                    ))];
                    if include_usage {
                        let object = if kind == Kind::Chat {
                            "chat.completion.chunk"
                        } else {
                            "text_completion"
                        };
                        v.push(data(
                            json!({"id": id, "object": object, "created": created, "model": model,
                                           "choices": [], "usage": api::usage(&c)}),
                        ));
                    }
                    v.push(Event::default().data("[DONE]"));
                    v
                }
                GenEvent::Failed(e) => vec![data(engine_error(&e))],
            };
            for e in events {
                if tx.send(e).await.is_err() {
                    return;
                }
            }
        }
        if !ended {
            // The engine let go of the request without a last event (its thread died).
            let _ = tx.send(data(engine_error(DROPPED))).await;
        }
    });
    let body = futures::stream::unfold(out, |mut out| async move {
        out.recv()
            .await
            .map(|e| (Ok::<_, std::convert::Infallible>(e), out))
    });
    Sse::new(body)
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
