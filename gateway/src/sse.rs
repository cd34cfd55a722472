//! Output guardrails on a streamed answer. A task reads the backend's server-sent events, feeds each
//! content delta to an [`OutputGuard`] (which holds text back until no entity can straddle the
//! boundary), and writes re-serialised chunks with the guarded text to the caller. Non-content events
//! (role, usage, keep-alive) pass through. A `Block` policy ends the stream with the block message and
//! `finish_reason: "content_filter"` at the first leak; the backend connection is then dropped.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use anshin_guardrails::{Detector, Entity, Mapping, OutputGuard, StreamScanner, restore};
use axum::body::Body;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::error::OUTPUT_BLOCKED_MESSAGE;
use crate::guard::{Kind, OutputResult, count};
use crate::table::Action;

/// How a stream ended and what it carried.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StreamOutcome {
    /// Content deltas seen (one per generated token on Anshin backends).
    pub completion_tokens: u64,
    /// Prompt tokens, when the backend sent a usage chunk.
    pub prompt_tokens: Option<u64>,
    /// Leaks and blocking.
    pub output: OutputResult,
    /// `ok`, `blocked`, `backend_error` or `client_gone`.
    pub end: &'static str,
}

/// What the stream task needs.
pub struct StreamSpec {
    /// Response shape.
    pub kind: Kind,
    /// Detector (None when guardrails are unavailable/off).
    pub detector: Option<Arc<Detector>>,
    /// This request's placeholders.
    pub mapping: Mapping,
    /// Output policy.
    pub action: Action,
    /// Longest silence of the backend between two frames: a hung backend must not hold the tenant's
    /// concurrency slot (released when the stream ends) forever.
    pub idle_timeout: Duration,
}

/// Most bytes of one event held while waiting for its end (`\n\n`); a backend sending more is broken.
const MAX_EVENT_BYTES: usize = 1 << 20;

enum Scan<'d, 'm> {
    Pass,
    Restore(StreamScanner<'d>, &'m Mapping),
    Guard(OutputGuard<'d, 'm>),
}

impl<'d, 'm> Scan<'d, 'm> {
    fn new(det: Option<&'d Detector>, mapping: &'m Mapping, action: Action) -> Scan<'d, 'm> {
        match (det, action) {
            (Some(d), Action::Redact | Action::Block) => Scan::Guard(OutputGuard::new(d, mapping)),
            (Some(d), Action::Off) if !mapping.is_empty() => {
                Scan::Restore(StreamScanner::new(d), mapping)
            }
            _ => Scan::Pass,
        }
    }

    fn push(&mut self, text: &str) -> (String, Vec<Entity>) {
        match self {
            Scan::Pass => (text.to_owned(), Vec::new()),
            Scan::Restore(s, m) => (restore(&s.push(text).text, m), Vec::new()),
            Scan::Guard(g) => {
                let c = g.push(text);
                (c.text, c.leaks)
            }
        }
    }

    fn finish(&mut self) -> (String, Vec<Entity>) {
        match self {
            Scan::Pass => (String::new(), Vec::new()),
            Scan::Restore(s, m) => (restore(&s.finish().text, m), Vec::new()),
            Scan::Guard(g) => {
                let c = g.finish();
                (c.text, c.leaks)
            }
        }
    }
}

/// Starts the stream task and returns the body for the caller. `on_token` is called for every content
/// delta as it arrives (token-per-minute accounting); `on_end` once, when the stream is over.
pub fn spawn(
    spec: StreamSpec,
    first: Bytes,
    rest: Incoming,
    on_token: impl Fn() + Send + 'static,
    on_end: impl FnOnce(StreamOutcome) + Send + 'static,
) -> Body {
    let (tx, rx) = mpsc::channel::<Bytes>(32);
    tokio::spawn(async move {
        let det = spec.detector.clone();
        let mut st = State {
            kind: spec.kind,
            scan: Scan::new(det.as_deref(), &spec.mapping, spec.action),
            block: spec.action == Action::Block,
            template: None,
            outcome: StreamOutcome {
                end: "ok",
                ..Default::default()
            },
            tx,
            on_token,
            buf: Vec::new(),
            idle: spec.idle_timeout,
        };
        st.run(first, rest).await;
        on_end(st.outcome);
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Body::from_stream(stream)
}

struct State<'d, 'm, F> {
    kind: Kind,
    scan: Scan<'d, 'm>,
    block: bool,
    template: Option<Value>,
    outcome: StreamOutcome,
    tx: mpsc::Sender<Bytes>,
    on_token: F,
    buf: Vec<u8>,
    idle: Duration,
}

/// What handling one event decided.
enum Flow {
    Continue,
    Stop,
}

impl<F: Fn()> State<'_, '_, F> {
    async fn run(&mut self, first: Bytes, mut rest: Incoming) {
        let mut data = Some(first);
        loop {
            if let Some(d) = data.take() {
                self.buf.extend_from_slice(&d);
                if let Flow::Stop = self.drain_events().await {
                    return;
                }
            }
            if self.buf.len() > MAX_EVENT_BYTES {
                return self.fail("backend_error").await;
            }
            match tokio::time::timeout(self.idle, rest.frame()).await {
                Ok(Some(Ok(frame))) => data = frame.into_data().ok(),
                Ok(Some(Err(_))) => return self.fail("backend_error").await,
                Ok(None) => break,
                Err(_) => return self.fail("backend_timeout").await,
            }
        }
        if !self.buf.is_empty() {
            self.buf.extend_from_slice(b"\n\n");
            let _ = self.drain_events().await;
        }
    }

    async fn drain_events(&mut self) -> Flow {
        while let Some(pos) = self.buf.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = self.buf.drain(..pos + 2).collect();
            let flow = match std::str::from_utf8(&event) {
                Ok(text) => self.event(text.trim_end_matches('\n')).await,
                Err(_) => self.send(Bytes::from(event)).await,
            };
            if let Flow::Stop = flow {
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    async fn send(&mut self, b: Bytes) -> Flow {
        if self.tx.send(b).await.is_err() {
            self.outcome.end = "client_gone";
            return Flow::Stop;
        }
        Flow::Continue
    }

    async fn send_json(&mut self, v: &Value) -> Flow {
        self.send(Bytes::from(format!("data: {v}\n\n"))).await
    }

    async fn event(&mut self, text: &str) -> Flow {
        let data: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim_start)
            .collect();
        if data.is_empty() {
            return self.send(Bytes::from(format!("{text}\n\n"))).await;
        }
        let payload = data.join("\n");
        if payload == "[DONE]" {
            if let Flow::Stop = self.flush().await {
                return Flow::Stop;
            }
            return self.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
        }
        match serde_json::from_str::<Value>(&payload) {
            Ok(v) => self.chunk(v).await,
            Err(_) => self.send(Bytes::from(format!("{text}\n\n"))).await,
        }
    }

    async fn chunk(&mut self, mut v: Value) -> Flow {
        if let Some(p) = v.pointer("/usage/prompt_tokens").and_then(Value::as_u64) {
            self.outcome.prompt_tokens = Some(p);
        }
        let finish = v
            .pointer("/choices/0/finish_reason")
            .is_some_and(|f| !f.is_null());
        if let Some(raw) = delta_text(self.kind, &v).map(str::to_owned) {
            if !raw.is_empty() {
                self.outcome.completion_tokens += 1;
                (self.on_token)();
            }
            let (text, leaks) = self.scan.push(&raw);
            if self.leaked(&leaks) {
                return self.blocked(v).await;
            }
            set_delta_text(self.kind, &mut v, &text);
            self.template = Some(v.clone());
            if text.is_empty() && !finish {
                return Flow::Continue;
            }
        }
        if finish && let Flow::Stop = self.flush().await {
            return Flow::Stop;
        }
        self.send_json(&v).await
    }

    /// Counts leaks; true when the policy blocks on them.
    fn leaked(&mut self, leaks: &[Entity]) -> bool {
        count(&mut self.outcome.output.leaks, leaks);
        self.block && !leaks.is_empty()
    }

    async fn flush(&mut self) -> Flow {
        let (text, leaks) = self.scan.finish();
        if self.leaked(&leaks) {
            let t = self
                .template
                .clone()
                .unwrap_or_else(|| json!({"choices": [{"index": 0}]}));
            return self.blocked(t).await;
        }
        if text.is_empty() {
            return Flow::Continue;
        }
        let mut t = self
            .template
            .clone()
            .unwrap_or_else(|| json!({"choices": [{"index": 0, "delta": {}}]}));
        set_delta_text(self.kind, &mut t, &text);
        if let Some(f) = t.pointer_mut("/choices/0/finish_reason") {
            *f = Value::Null;
        }
        self.send_json(&t).await
    }

    async fn blocked(&mut self, mut v: Value) -> Flow {
        self.outcome.output.blocked = true;
        self.outcome.end = "blocked";
        set_delta_text(self.kind, &mut v, OUTPUT_BLOCKED_MESSAGE);
        if let Some(c) = v.pointer_mut("/choices/0").and_then(Value::as_object_mut) {
            c.insert(
                "finish_reason".into(),
                Value::String("content_filter".into()),
            );
        }
        let _ = self.send_json(&v).await;
        let _ = self.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
        Flow::Stop
    }

    /// Ends the stream after a backend failure (`outcome`: `backend_error` or `backend_timeout`).
    async fn fail(&mut self, outcome: &'static str) {
        let _ = self.flush().await;
        self.outcome.end = outcome;
        let err = json!({"error": {"message": "the model server failed while answering; please retry", "type": "server_error",
                                   "param": null, "code": "backend_stream_error"}});
        let _ = self.send_json(&err).await;
    }
}

fn delta_text(kind: Kind, v: &Value) -> Option<&str> {
    match kind {
        Kind::Chat => v.pointer("/choices/0/delta/content")?.as_str(),
        Kind::Completion => v.pointer("/choices/0/text")?.as_str(),
    }
}

fn set_delta_text(kind: Kind, v: &mut Value, text: &str) {
    let ptr = match kind {
        Kind::Chat => "/choices/0/delta",
        Kind::Completion => "/choices/0",
    };
    let key = if kind == Kind::Chat {
        "content"
    } else {
        "text"
    };
    if let Some(obj) = v.pointer_mut(ptr).and_then(Value::as_object_mut) {
        obj.insert(key.into(), Value::String(text.to_owned()));
    }
}
