//! Guardrails, audit and failover behaviours that need a backend answering with chosen text: the
//! in-test echo/scripted backend (see `common/backend.rs`) stands in for a model that repeats the
//! request's placeholders or produces PII on its own.

mod common;

use std::process::Command;
use std::time::Duration;

use common::backend::{Mode, TestBackend};
use common::*;
use serde_json::json;

const KEY: &str = "sk-echo-test-key";

fn routing(policy: &str, backends: &[String], peers: &[String]) -> String {
    let b: Vec<String> = backends.iter().map(|a| format!("'{a}'")).collect();
    let p: Vec<String> = peers.iter().map(|a| format!("'{a}'")).collect();
    format!(
        "tenants:\n  - name: hosp-a\n    endpoints: ['*']\n    keys: [{{name: main, sha256: '{}'}}]\n\
         endpoints:\n  - name: med\n    guardrails: {policy}\n    versions: [{{name: v1, weight: 1, backends: [{}]}}]\n\
         peers: [{}]\n",
        key_hash(KEY),
        b.join(", "),
        p.join(", ")
    )
}

async fn gateway_for(
    dir: &std::path::Path,
    policy: &str,
    backends: &[String],
    peers: &[String],
) -> Proc {
    let path = dir.join(format!("routing-{}.yaml", rand_suffix()));
    write_routing(&path, &routing(policy, backends, peers));
    start_gateway(&path, &dir.join(format!("audit-{}.jsonl", rand_suffix()))).await
}

fn rand_suffix() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )
}

/// A chat completion to endpoint `med` with the test tenant's key.
async fn chat(gw: &Proc, text: &str, stream: bool) -> Reply {
    chat_as(gw, KEY, text, stream).await
}

/// A chat completion to endpoint `med` with `key`.
async fn chat_as(gw: &Proc, key: &str, text: &str, stream: bool) -> Reply {
    post(
        gw.addr,
        "/v1/chat/completions",
        Some(key),
        &chat_body("med", text, stream),
    )
    .await
}

const PATIENT: &str = "患者の山田太郎さん（住所：東京都千代田区千代田1-1）の血圧について。";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn caller_sees_own_values_restored_while_backend_sees_placeholders() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = TestBackend::start(Mode::Echo).await;
    let gw = gateway_for(
        dir.path(),
        "{input: Redact, output: Redact}",
        &[echo.addr.to_string()],
        &[],
    )
    .await;
    let r = chat(&gw, PATIENT, false).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        PATIENT,
        "whole answer restored"
    );
    let r = chat(&gw, PATIENT, true).await;
    assert_eq!(r.streamed_text(), PATIENT, "streamed answer restored");
    assert!(r.body.contains("data: [DONE]"));
    let r = post(
        gw.addr,
        "/v1/completions",
        Some(KEY),
        &json!({"model": "med", "prompt": PATIENT, "stream": true}),
    )
    .await;
    assert_eq!(r.streamed_text(), PATIENT, "streamed completion restored");
    for b in echo.bodies() {
        let s = b.to_string();
        assert!(
            !s.contains("山田") && !s.contains("千代田区"),
            "backend saw PII: {s}"
        );
        assert!(s.contains("〔氏名1〕") && s.contains("〔住所1〕"), "{s}");
    }
}

const LEAK: &str =
    "担当医の佐藤花子です。電話は03-1234-5678、メールはsato@example.jpまでご連絡ください。";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pii_the_backend_produces_on_its_own_is_redacted_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let leaky = TestBackend::start(Mode::Script(LEAK.into())).await;
    let gw = gateway_for(
        dir.path(),
        "{input: Redact, output: Redact}",
        &[leaky.addr.to_string()],
        &[],
    )
    .await;
    let whole = chat(&gw, "連絡先は？", false).await;
    let streamed = chat(&gw, "連絡先は？", true).await;
    let texts = [
        whole.json()["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        streamed.streamed_text(),
    ];
    for t in &texts {
        for secret in ["佐藤", "03-1234-5678", "sato@example.jp"] {
            assert!(!t.contains(secret), "leaked `{secret}`: {t}");
        }
        assert!(
            t.contains("〔氏名〕") && t.contains("〔電話〕") && t.contains("〔メール〕"),
            "{t}"
        );
        assert!(
            t.contains("担当医") && t.contains("ご連絡ください"),
            "the rest of the answer stays: {t}"
        );
    }
    let m = metrics_text(&gw).await;
    assert_eq!(
        metric_sum(
            &m,
            "anshin_gateway_guardrail_leaks_total",
            &["type=\"PERSON\""]
        ),
        2.0,
        "{m}"
    );
    assert_eq!(
        metric_sum(
            &m,
            "anshin_gateway_guardrail_leaks_total",
            &["type=\"PHONE\""]
        ),
        2.0
    );
    assert_eq!(
        metric_sum(
            &m,
            "anshin_gateway_leak_answers_total",
            &["endpoint=\"med\"", "version=\"v1\""]
        ),
        2.0,
        "answers with PII the model produced, per version (what a canary's leak rate is made of)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn block_policies_refuse_pii_input_and_stop_leaking_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let leaky = TestBackend::start(Mode::Script(LEAK.into())).await;
    let gw = gateway_for(
        dir.path(),
        "{input: Block, output: Block}",
        &[leaky.addr.to_string()],
        &[],
    )
    .await;
    let r = chat(&gw, PATIENT, false).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (400, json!("pii_blocked"))
    );
    assert!(
        leaky.bodies().is_empty(),
        "a blocked input never reaches the backend"
    );
    let r = chat(&gw, "連絡先は？", false).await;
    assert_eq!(r.json()["choices"][0]["finish_reason"], "content_filter");
    assert!(!r.body.contains("佐藤"));
    let r = chat(&gw, "連絡先は？", true).await;
    assert!(
        r.body.contains("content_filter") && !r.body.contains("佐藤") && r.body.contains("[DONE]"),
        "{}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_chain_verifies_and_edits_or_deletions_are_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = TestBackend::start(Mode::Echo).await;
    let path = dir.path().join("routing.yaml");
    write_routing(
        &path,
        &routing(
            "{input: Redact, output: Redact}",
            &[echo.addr.to_string()],
            &[],
        ),
    );
    let audit = dir.path().join("audit.jsonl");
    // Refusals before authentication are counted per source and written once per interval.
    let args = ["--audit-unauthenticated-interval", "200ms"];
    let gw = start_gateway_with(&path, &audit, &args, &[]).await;
    for i in 0..5 {
        let stream = i % 2 == 0;
        assert_eq!(chat(&gw, PATIENT, stream).await.status, 200);
    }
    assert_eq!(chat_as(&gw, "bad", "x", false).await.status, 401);
    let start = std::time::Instant::now();
    while std::fs::read_to_string(&audit)
        .unwrap_or_default()
        .lines()
        .count()
        < 6
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "audit records not written"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let verify = |p: &std::path::Path| {
        let out = Command::new(gateway_bin())
            .arg("verify")
            .arg(p)
            .output()
            .expect("run verify");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, msg) = verify(&audit);
    assert!(ok && msg.contains("6 records"), "{msg}");
    let text = std::fs::read_to_string(&audit).expect("audit");
    assert!(
        !text.contains("山田") && !text.contains("千代田") && !text.contains(KEY),
        "audit holds no PII or keys"
    );
    let lines: Vec<&str> = text.lines().collect();

    let edited = dir.path().join("edited.jsonl");
    let mut e = lines.clone();
    let changed = e[2].replace("\"status\":200", "\"status\":500");
    assert_ne!(changed, e[2]);
    e[2] = &changed;
    std::fs::write(&edited, e.join("\n") + "\n").expect("write");
    let (ok, msg) = verify(&edited);
    assert!(
        !ok && msg.contains("line 3"),
        "edit detected at line 3: {msg}"
    );

    let deleted = dir.path().join("deleted.jsonl");
    let mut d = lines.clone();
    d.remove(3);
    std::fs::write(&deleted, d.join("\n") + "\n").expect("write");
    let (ok, msg) = verify(&deleted);
    assert!(
        !ok && msg.contains("line 4"),
        "deletion detected at line 4: {msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_region_without_a_peer_token_forwards_nothing_and_gives_safe_503() {
    // Forwarding itself (TLS, peer token, residency) is tested in region_forwarding.rs.
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = TestBackend::start(Mode::Echo).await;
    let dead = free_addr().to_string();
    let peer = gateway_for(
        dir.path(),
        "{input: Redact, output: Redact}",
        &[echo.addr.to_string()],
        &[],
    )
    .await;
    let gw = gateway_for(
        dir.path(),
        "{input: Redact, output: Redact}",
        std::slice::from_ref(&dead),
        &[format!("http://{}", peer.addr)],
    )
    .await;
    let r = chat(&gw, PATIENT, false).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(echo.bodies().is_empty(), "nothing reached the peer region");
    let m = metrics_text(&gw).await;
    assert_eq!(
        metric_sum(
            &m,
            "anshin_gateway_peer_forward_refused_total",
            &["reason=\"no_peer_token\""]
        ),
        1.0
    );

    let alone = gateway_for(dir.path(), "{input: Redact, output: Redact}", &[dead], &[]).await;
    let r = chat(&alone, "頭痛", false).await;
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some());
    let msg = r.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        msg.contains("医師") && msg.contains("ご相談ください"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_id_from_the_client_is_kept_and_one_is_made_otherwise() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = TestBackend::start(Mode::Echo).await;
    let gw = gateway_for(
        dir.path(),
        "{input: Off, output: Off}",
        &[echo.addr.to_string()],
        &[],
    )
    .await;
    let body = chat_body("med", "こんにちは", false).to_string();
    let req = http::Request::post(format!("http://{}/v1/chat/completions", gw.addr))
        .header("authorization", format!("Bearer {KEY}"))
        .header("x-request-id", "ehr-123.abc")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .expect("request");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let resp = client.request(req).await.expect("response");
    assert_eq!(
        resp.headers().get("x-request-id").map(|v| v.as_bytes()),
        Some(&b"ehr-123.abc"[..])
    );
    let r = chat(&gw, "こんにちは", false).await;
    assert_eq!(r.header("x-request-id").map(|v| v.len()), Some(32));
    assert_eq!(r.header("x-anshin-model-version").as_deref(), Some("v1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_tenant_reaches_backends_with_its_own_fixed_cache_scope() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = TestBackend::start(Mode::Echo).await;
    let key_b = "sk-echo-test-key-b";
    let routing = format!(
        "tenants:\n  - {{name: hosp-a, endpoints: ['*'], keys: [{{name: main, sha256: '{}'}}]}}\n\
         \x20 - {{name: hosp-b, endpoints: ['*'], keys: [{{name: main, sha256: '{}'}}]}}\n\
         endpoints:\n  - {{name: med, guardrails: {{input: Off, output: Off}}, versions: [{{name: v1, weight: 1, backends: ['{}']}}]}}\n",
        key_hash(KEY),
        key_hash(key_b),
        echo.addr
    );
    let path = dir.path().join("routing.yaml");
    write_routing(&path, &routing);
    let gw = start_gateway(&path, &dir.path().join("audit.jsonl")).await;
    for key in [KEY, key_b, KEY, key_b] {
        let r = chat_as(&gw, key, "血圧の目標は？", false).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let scopes: Vec<String> = echo
        .scopes
        .lock()
        .expect("lock")
        .iter()
        .map(|s| s.clone().expect("every request carries a cache scope"))
        .collect();
    // The documented scope: the first 16 hex digits of the SHA-256 of the tenant's name.
    let expected = |tenant: &str| key_hash(tenant)[..16].to_owned();
    assert_eq!(
        scopes,
        [
            expected("hosp-a"),
            expected("hosp-b"),
            expected("hosp-a"),
            expected("hosp-b")
        ],
        "the scope is the tenant's own, the same on every request, and differs between tenants"
    );
    assert_ne!(scopes[0], scopes[1]);
}

#[tokio::test]
async fn a_version_answering_500_is_retried_on_another_and_counted_per_version_attempt() {
    let dir = tempfile::tempdir().expect("dir");
    let (good, bad) = (
        TestBackend::start(Mode::Echo).await,
        TestBackend::start(Mode::Status(500)).await,
    );
    let routing = format!(
        "tenants:\n  - name: hosp-a\n    endpoints: ['*']\n    keys: [{{name: main, sha256: '{}'}}]\n\
         endpoints:\n  - name: med\n    versions: [{{name: stable, weight: 1, backends: ['{}']}}, \
         {{name: canary, weight: 1, backends: ['{}']}}]\n",
        key_hash(KEY),
        good.addr,
        bad.addr
    );
    let path = dir.path().join("routing.yaml");
    write_routing(&path, &routing);
    let gw = start_gateway(&path, &dir.path().join("audit.jsonl")).await;
    for i in 0..20 {
        let r = chat(&gw, "頭痛があります", i % 2 == 0).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
        assert_eq!(
            r.header("x-anshin-model-version").as_deref(),
            Some("stable")
        );
    }
    let m = metrics_text(&gw).await;
    let attempts = |version: &str, outcome: &str| {
        let labels = [
            format!("version=\"{version}\""),
            format!("outcome=\"{outcome}\""),
        ];
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        metric_sum(&m, "anshin_gateway_backend_attempts_total", &labels)
    };
    assert_eq!(attempts("stable", "ok"), 20.0, "{m}");
    assert!(
        attempts("canary", "server_error") >= 1.0,
        "the canary's 500s are counted: {m}"
    );
    assert_eq!(attempts("canary", "ok"), 0.0);
    let stable_latency = metric_sum(
        &m,
        "anshin_gateway_request_duration_seconds_count",
        &["endpoint=\"med\"", "version=\"stable\""],
    );
    assert_eq!(stable_latency, 20.0, "latency by version: {m}");
}
