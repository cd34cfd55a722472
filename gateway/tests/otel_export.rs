//! OpenTelemetry export: the gateway, started with `--otlp-endpoint`, sends its spans over OTLP/HTTP
//! (protobuf) to a collector the test runs on loopback; the test decodes them with the OTLP protobuf
//! types and checks the trace a request leaves: the caller's `traceparent` continued, a `request` span
//! with tenant, endpoint, version and status, a `backend` child span whose id reaches the backend in
//! its own `traceparent`, no personal information or key in anything exported, and queued spans
//! flushed when the gateway stops on SIGTERM.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;

const KEY: &str = "sk-otel-test-key";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const PATIENT: &str = "患者の山田太郎さん（住所：東京都千代田区千代田1-1）の血圧について。";

/// What the in-test collector received: decoded spans and every raw export body.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
    raw: Arc<Mutex<Vec<u8>>>,
}

async fn start_collector() -> (SocketAddr, Collector) {
    async fn export(State(c): State<Collector>, body: Bytes) -> Vec<u8> {
        let req = ExportTraceServiceRequest::decode(body.as_ref()).expect("an OTLP trace export");
        c.raw.lock().expect("lock").extend_from_slice(&body);
        let mut spans = c.spans.lock().expect("lock");
        for rs in req.resource_spans {
            for ss in rs.scope_spans {
                spans.extend(ss.spans);
            }
        }
        Vec::new() // an empty ExportTraceServiceResponse
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind collector");
    let addr = listener.local_addr().expect("addr");
    let c = Collector::default();
    let app = Router::new()
        .route("/v1/traces", post(export))
        .with_state(c.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (addr, c)
}

/// A backend that records the `traceparent` it receives and answers a fixed chat completion.
async fn start_backend() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    let handler = move |headers: HeaderMap| {
        let record = record.clone();
        async move {
            if let Some(tp) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
                record.lock().expect("lock").push(tp.to_string());
            }
            axum::Json(json!({"id": "x", "object": "chat.completion", "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "安静にしてください。"},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}))
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new().route("/v1/chat/completions", post(handler));
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (addr, seen)
}

async fn gateway(
    dir: &std::path::Path,
    backend: SocketAddr,
    collector: SocketAddr,
    delay_ms: &str,
) -> Proc {
    let routing = dir.join("routing.yaml");
    write_routing(
        &routing,
        &format!(
            "tenants:\n  - name: hosp-a\n    endpoints: ['*']\n    keys: [{{name: main, sha256: '{}'}}]\n\
             endpoints:\n  - name: med\n    guardrails: {{input: Redact, output: Redact}}\n    \
             versions: [{{name: v1, weight: 1, backends: ['{backend}']}}]\n",
            key_hash(KEY)
        ),
    );
    let endpoint = format!("http://{collector}");
    start_gateway_with(
        &routing,
        &dir.join("audit.jsonl"),
        &["--otlp-endpoint", &endpoint],
        &[("OTEL_BSP_SCHEDULE_DELAY", delay_ms)],
    )
    .await
}

async fn traced_request(gw: SocketAddr) -> Reply {
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let r = send_with_headers(
        gw,
        "POST",
        "/v1/chat/completions",
        Some(KEY),
        &[("traceparent", traceparent.as_str())],
        Some(chat_body("med", PATIENT, false).to_string()),
    )
    .await
    .expect("request through the gateway");
    assert_eq!(r.status, 200, "{}", r.body);
    r
}

/// Waits (at most 15 s) until the collector holds a span named `name` in our trace.
fn wait_for_span(c: &Collector, name: &str) -> Span {
    let start = Instant::now();
    loop {
        let found = c
            .spans
            .lock()
            .expect("lock")
            .iter()
            .find(|s| s.name == name && hex(&s.trace_id) == TRACE_ID)
            .cloned();
        if let Some(s) = found {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no `{name}` span exported in 15 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attr(span: &Span, key: &str) -> Option<String> {
    let v = span
        .attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match v {
        AnyValue::StringValue(s) => s.clone(),
        AnyValue::IntValue(i) => i.to_string(),
        other => format!("{other:?}"),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_trace_continues_the_callers_trace_and_reaches_the_backend() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (collector_addr, collector) = start_collector().await;
    let (backend, traceparents) = start_backend().await;
    let gw = gateway(dir.path(), backend, collector_addr, "100").await;
    traced_request(gw.addr).await;

    let request = wait_for_span(&collector, "request");
    assert_eq!(
        hex(&request.parent_span_id),
        CALLER_SPAN,
        "the caller's span is the parent"
    );
    assert_eq!(attr(&request, "tenant").as_deref(), Some("hosp-a"));
    assert_eq!(attr(&request, "endpoint").as_deref(), Some("med"));
    assert_eq!(attr(&request, "model_version").as_deref(), Some("v1"));
    assert_eq!(attr(&request, "status").as_deref(), Some("200"));
    assert_eq!(attr(&request, "completion_tokens").as_deref(), Some("3"));

    let backend_span = wait_for_span(&collector, "backend");
    assert_eq!(
        backend_span.parent_span_id, request.span_id,
        "backend attempt is a child of the request"
    );
    assert_eq!(
        attr(&backend_span, "backend").as_deref(),
        Some(backend.to_string().as_str())
    );
    assert_eq!(attr(&backend_span, "result").as_deref(), Some("ok"));

    let passed_on = traceparents.lock().expect("lock").clone();
    assert_eq!(
        passed_on,
        vec![format!("00-{TRACE_ID}-{}-01", hex(&backend_span.span_id))],
        "the backend continues the same trace under the backend span"
    );

    let raw = collector.raw.lock().expect("lock").clone();
    let text = String::from_utf8_lossy(&raw);
    for secret in ["山田", "千代田区", KEY, "安静"] {
        assert!(!text.contains(secret), "exported spans contain `{secret}`");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_spans_are_flushed_when_the_gateway_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (collector_addr, collector) = start_collector().await;
    let (backend, _) = start_backend().await;
    // A batch delay far longer than the test: only the shutdown flush can deliver the span.
    let mut gw = gateway(dir.path(), backend, collector_addr, "600000").await;
    traced_request(gw.addr).await;
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        collector.spans.lock().expect("lock").is_empty(),
        "exported before the batch delay"
    );

    let pid = gw.child.id().to_string();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(term.is_ok_and(|s| s.success()), "SIGTERM the gateway");
    let start = Instant::now();
    let status = loop {
        if let Ok(Some(s)) = gw.child.try_wait() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "gateway did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "gateway exit status {status}");
    let request = wait_for_span(&collector, "request");
    assert_eq!(attr(&request, "status").as_deref(), Some("200"));
}
