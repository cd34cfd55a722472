//! A tiny OpenAI-shaped backend that runs inside a test: it records every body it receives and answers
//! either by echoing the user's text back, with a scripted answer, or by forwarding to a real
//! inference server (a recording proxy in front of `anshin-inference`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// How the backend answers.
#[derive(Clone, Debug)]
pub enum Mode {
    /// Answer with the request's input text (all messages' contents, or the prompt).
    Echo,
    /// Answer with this text.
    Script(String),
    /// Forward the request unchanged to a real inference server and relay its answer.
    Forward(SocketAddr),
    /// Answer every completion with this HTTP status and an OpenAI-style error body.
    Status(u16),
}

/// A running in-test backend.
#[derive(Clone)]
pub struct TestBackend {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Value>>>,
    /// The `x-anshin-cache-scope` header of every request received, in order (`None` when absent).
    pub scopes: Arc<Mutex<Vec<Option<String>>>>,
    /// The headers of every request received, in order.
    pub headers: Arc<Mutex<Vec<http::HeaderMap>>>,
    /// Whether `/readyz` answers 200 (else 503); see [`TestBackend::set_ready`].
    ready: Arc<std::sync::atomic::AtomicBool>,
    mode: Mode,
}

impl TestBackend {
    /// Starts a backend on an ephemeral loopback port.
    pub async fn start(mode: Mode) -> TestBackend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let addr = listener.local_addr().expect("addr");
        let b = TestBackend {
            addr,
            received: Arc::default(),
            scopes: Arc::default(),
            headers: Arc::default(),
            ready: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            mode,
        };
        let app = Router::new()
            .route("/v1/chat/completions", post(handle))
            .route("/v1/completions", post(handle))
            .route("/readyz", get(readyz))
            .with_state(b.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        b
    }

    /// Makes `/readyz` answer 200 (`true`) or 503 (`false`), as a failing model server would.
    pub fn set_ready(&self, ready: bool) {
        self.ready
            .store(ready, std::sync::atomic::Ordering::Relaxed);
    }

    /// Bodies received so far.
    pub fn bodies(&self) -> Vec<Value> {
        self.received.lock().expect("lock").clone()
    }
}

fn input_text(v: &Value) -> String {
    if let Some(msgs) = v["messages"].as_array() {
        return msgs
            .iter()
            .filter_map(|m| m["content"].as_str())
            .collect::<Vec<_>>()
            .join("\n");
    }
    v["prompt"].as_str().unwrap_or_default().to_owned()
}

async fn handle(
    State(b): State<TestBackend>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    b.received.lock().expect("lock").push(v.clone());
    let scope = headers
        .get("x-anshin-cache-scope")
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    b.scopes.lock().expect("lock").push(scope);
    b.headers.lock().expect("lock").push(headers.clone());
    let answer = match &b.mode {
        Mode::Echo => input_text(&v),
        Mode::Script(s) => s.clone(),
        Mode::Forward(addr) => return forward(*addr, uri.path(), body).await,
        Mode::Status(code) => {
            let status = http::StatusCode::from_u16(*code).expect("test status code");
            let err = json!({"error": {"message": "injected", "type": "server_error"}});
            return (status, axum::Json(err)).into_response();
        }
    };
    let chat = uri.path().contains("chat");
    if v["stream"].as_bool().unwrap_or(false) {
        sse(chat, &answer)
    } else {
        whole(chat, &answer)
    }
}

fn whole(chat: bool, answer: &str) -> Response {
    let choice = if chat {
        json!({"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"})
    } else {
        json!({"index": 0, "text": answer, "finish_reason": "stop"})
    };
    let n = answer.chars().count();
    axum::Json(json!({"id": "x", "object": "chat.completion", "model": "echo", "choices": [choice],
                      "usage": {"prompt_tokens": 5, "completion_tokens": n, "total_tokens": n + 5}}))
    .into_response()
}

fn sse(chat: bool, answer: &str) -> Response {
    let chars: Vec<char> = answer.chars().collect();
    let mut out = String::new();
    for piece in chars.chunks(3) {
        let t: String = piece.iter().collect();
        let c = if chat {
            json!({"index": 0, "delta": {"content": t}, "finish_reason": null})
        } else {
            json!({"index": 0, "text": t, "finish_reason": null})
        };
        out.push_str(&format!("data: {}\n\n", json!({"id": "x", "choices": [c]})));
    }
    let fin = if chat {
        json!({"index": 0, "delta": {}, "finish_reason": "stop"})
    } else {
        json!({"index": 0, "text": "", "finish_reason": "stop"})
    };
    out.push_str(&format!(
        "data: {}\n\ndata: [DONE]\n\n",
        json!({"id": "x", "choices": [fin]})
    ));
    ([("content-type", "text/event-stream")], out).into_response()
}

async fn forward(addr: SocketAddr, path: &str, body: Bytes) -> Response {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let req = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(Full::new(body))
        .expect("request");
    match client.request(req).await {
        Ok(r) => {
            let status = r.status();
            let ct = r.headers().get("content-type").cloned();
            let bytes = r
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let mut resp = Response::new(Body::from(bytes));
            *resp.status_mut() = status;
            if let Some(ct) = ct {
                resp.headers_mut().insert("content-type", ct);
            }
            resp
        }
        Err(_) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, "backend down").into_response(),
    }
}

async fn readyz(State(b): State<TestBackend>) -> (http::StatusCode, &'static str) {
    if b.ready.load(std::sync::atomic::Ordering::Relaxed) {
        (http::StatusCode::OK, "ready")
    } else {
        (http::StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}
