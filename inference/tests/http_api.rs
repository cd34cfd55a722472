//! The OpenAI-compatible HTTP API, served in-process over loopback with the tiny fixture model.

mod common;

use std::net::SocketAddr;

use anshin_inference::cli;
use anshin_inference::metrics::Metrics;
use anshin_inference::server::auth::ApiKey;
use anshin_inference::server::{self, AppState};
use common::{Reply, bearer, http, http_with, sse_data};
use serde_json::Value;

struct Server {
    addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn start() -> Server {
    start_with_key(None)
}

/// The server, requiring `api_key` when given.
fn start_with_key(api_key: Option<&str>) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = common::serve_args(&common::hf_fixture(dir.path()));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let addr = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut state = AppState::new("tiny", Metrics::new());
        if let Some(key) = api_key {
            state = state.with_api_key(ApiKey::new(key));
        }
        let engine = cli::start_engine(&args, state.metrics.clone()).expect("engine");
        cli::warm_up(&engine).await.expect("warm-up");
        state.set_engine(engine);
        tokio::spawn(server::run(
            listener,
            state,
            async {
                let _ = stopped.await;
            },
            args.drain_timeout,
        ));
        addr
    });
    Server {
        addr,
        _stop: stop,
        _rt: rt,
        _dir: dir,
    }
}

fn json(r: &Reply) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.body))
}

#[test]
fn api_endpoints_behave_like_openai() {
    let s = start();
    assert_eq!(http(s.addr, "GET", "/healthz", None).status, 200);
    assert_eq!(http(s.addr, "GET", "/readyz", None).status, 200);
    let models = json(&http(s.addr, "GET", "/v1/models", None));
    assert_eq!(models["data"][0]["id"], "tiny");

    let body = r#"{"model":"tiny","messages":[{"role":"user","content":"頭痛があります"}],"max_tokens":8,
                   "temperature":0,"ignore_eos":true}"#;
    let chat = json(&http(s.addr, "POST", "/v1/chat/completions", Some(body)));
    assert_eq!(chat["object"], "chat.completion");
    assert_eq!(chat["choices"][0]["message"]["role"], "assistant");
    assert_eq!(chat["choices"][0]["finish_reason"], "length");
    assert_eq!(chat["usage"]["completion_tokens"], 8);
    let text = chat["choices"][0]["message"]["content"]
        .as_str()
        .expect("content")
        .to_owned();

    let streamed = body.replace(
        "\"ignore_eos\":true",
        "\"ignore_eos\":true,\"stream\":true,\"stream_options\":{\"include_usage\":true}",
    );
    let reply = http(s.addr, "POST", "/v1/chat/completions", Some(&streamed));
    assert!(reply.head.contains("text/event-stream"), "{}", reply.head);
    let events = sse_data(&reply.body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).expect("chunk"))
        .collect();
    let joined: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        joined, text,
        "streamed text differs from the non-streamed greedy text"
    );
    assert_eq!(
        chunks.last().expect("usage chunk")["usage"]["completion_tokens"],
        8
    );

    let comp = json(&http(
        s.addr,
        "POST",
        "/v1/completions",
        Some(r#"{"prompt":"患者は","max_tokens":5,"temperature":0,"ignore_eos":true}"#),
    ));
    assert_eq!(comp["object"], "text_completion");
    assert_eq!(comp["usage"]["completion_tokens"], 5);
}

#[test]
fn errors_have_openai_bodies_and_status_codes() {
    let s = start();
    let long = "発熱 ".repeat(5000);
    let r = http(
        s.addr,
        "POST",
        "/v1/completions",
        Some(&format!(r#"{{"prompt":"{long}","max_tokens":4}}"#)),
    );
    assert_eq!(r.status, 400);
    let err = json(&r);
    assert_eq!(err["error"]["code"], "context_length_exceeded");
    assert!(
        err["error"]["message"]
            .as_str()
            .expect("message")
            .contains("context is 4096 tokens")
    );

    let r = http(s.addr, "POST", "/v1/chat/completions", Some("{not json"));
    assert_eq!(
        (r.status, json(&r)["error"]["type"].as_str()),
        (400, Some("invalid_request_error"))
    );
    let r = http(
        s.addr,
        "POST",
        "/v1/chat/completions",
        Some(r#"{"messages":[{"role":"user","content":"x"}],"temperature":9}"#),
    );
    assert_eq!(r.status, 400);

    let metrics = http(s.addr, "GET", "/metrics", None).body;
    for name in [
        "anshin_inference_queue_depth",
        "anshin_inference_running_sequences",
        "anshin_inference_generated_tokens_total",
        "anshin_inference_time_to_first_token_seconds_bucket",
        "anshin_inference_time_per_output_token_seconds_bucket",
        "anshin_inference_kv_cache_utilization_ratio",
        "anshin_inference_requests_total{status=\"too_long\"} 1",
        "anshin_inference_requests_total{status=\"invalid\"} 2",
    ] {
        assert!(metrics.contains(name), "metrics lack {name}:\n{metrics}");
    }
}

#[test]
fn stop_strings_cut_the_output() {
    let s = start();
    let body = r#"{"prompt":"患者は","max_tokens":12,"temperature":0,"ignore_eos":true}"#;
    let full = json(&http(s.addr, "POST", "/v1/completions", Some(body)))["choices"][0]["text"]
        .as_str()
        .expect("text")
        .to_owned();
    // A character from the middle of the greedy output (not a control or replacement character).
    let stop = full
        .chars()
        .skip(3)
        .find(|c| !c.is_control() && *c != '\u{FFFD}')
        .map(String::from)
        .unwrap_or_else(|| panic!("fixture produced too little text: {full:?}"));
    let cut_at = full.find(&stop).expect("stop occurs");
    let with_stop = serde_json::json!({"prompt": "患者は", "max_tokens": 12, "temperature": 0, "ignore_eos": true,
                                       "stop": [stop]});
    let r = json(&http(
        s.addr,
        "POST",
        "/v1/completions",
        Some(&with_stop.to_string()),
    ));
    assert_eq!(
        r["choices"][0]["text"].as_str(),
        Some(&full[..cut_at]),
        "stop string {stop:?}"
    );
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
}

const NOTE: &str = "患者は65歳男性。3日前からの発熱と湿性咳嗽。高血圧と2型糖尿病でアムロジピンとメトホルミンを内服中。";

/// Prompt tokens copied from other requests' caches so far.
fn shared_tokens(s: &Server, headers: &str) -> u64 {
    let m = http_with(s.addr, "GET", "/metrics", None, headers).body;
    let line = m
        .lines()
        .find(|l| l.starts_with("anshin_inference_prefix_shared_tokens_total "))
        .unwrap_or_else(|| panic!("metric missing: {m}"));
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse::<u64>().ok())
        .expect("a count")
}

/// Sends the note plus `question` under cache scope `scope`, with extra header lines `auth`.
fn ask_in_scope(s: &Server, question: &str, scope: &str, auth: &str) {
    let body = format!(r#"{{"prompt": "{NOTE}{question}", "max_tokens": 4, "temperature": 0}}"#);
    let head = format!("{auth}x-anshin-cache-scope: {scope}\r\n");
    let r = http_with(s.addr, "POST", "/v1/completions", Some(&body), &head);
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Requests share cached prefixes only within the cache scope their `x-anshin-cache-scope` header
/// names (the gateway sends one per tenant, with the server's API key): a prompt another scope has
/// computed is computed again.
#[test]
fn cached_prefixes_are_shared_only_within_a_cache_scope() {
    let key = "sk-anshin-backend-scope-test";
    let s = start_with_key(Some(key));
    let auth = bearer(key);
    ask_in_scope(&s, "診断は?", "hospital-a", &auth);
    ask_in_scope(&s, "治療方針は?", "hospital-b", &auth);
    assert_eq!(
        shared_tokens(&s, &auth),
        0,
        "another scope's cache was used"
    );
    ask_in_scope(&s, "注意点は?", "hospital-a", &auth);
    assert!(
        shared_tokens(&s, &auth) >= 16,
        "the same scope shares the note"
    );
}

/// On a server without an API key nobody is authenticated, so the header selects nothing: both
/// "hospitals" land in the one default scope and share the note. (A pod that can reach the server
/// cannot claim a hospital's scope to time its cache hits.)
#[test]
fn without_an_api_key_the_cache_scope_header_is_ignored() {
    let s = start();
    ask_in_scope(&s, "診断は?", "hospital-a", "");
    ask_in_scope(&s, "治療方針は?", "hospital-b", "");
    assert!(shared_tokens(&s, "") >= 16, "the header chose a scope");
}
