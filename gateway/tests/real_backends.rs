//! The gateway in front of real `anshin-inference serve` processes (tiny fixture model): the official
//! `openai` Python client, placeholders reaching the backend, failover when a backend is killed under
//! load, and a hot-reloaded routing table shifting traffic.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::backend::{Mode, TestBackend};
use common::*;
use serde_json::json;

const KEY: &str = "sk-hosp-a-0123456789";

fn routing(versions: &[(&str, u32, Vec<String>)]) -> String {
    let mut v = String::new();
    for (name, weight, backends) in versions {
        let list: Vec<String> = backends.iter().map(|b| format!("'{b}'")).collect();
        v.push_str(&format!(
            "      - {{name: {name}, digest: 'sha256:{name}0000', weight: {weight}, backends: [{}]}}\n",
            list.join(", ")
        ));
    }
    format!(
        "tenants:\n  - name: hosp-a\n    endpoints: [med]\n    keys: [{{name: main, sha256: '{}'}}]\n\
         endpoints:\n  - name: med\n    guardrails: {{input: Redact, output: Redact}}\n    versions:\n{v}",
        key_hash(KEY)
    )
}

struct Setup {
    dir: tempfile::TempDir,
    model: std::path::PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = fixture_model(dir.path());
    Setup { dir, model }
}

fn python() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("ANSHIN_GATEWAY_PYTHON") {
        return p.into();
    }
    let cache = std::env::var_os("ANSHIN_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(&std::env::var_os("HOME").expect("HOME")).join(".cache/anshin")
        });
    let p = cache.join("pyenv-inference/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup.sh (step 30-inference.sh installs the openai client)",
        p.display()
    );
    p
}

const OPENAI_SCRIPT: &str = r#"
import json, sys
from openai import OpenAI
c = OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
r = c.chat.completions.create(model="med", messages=[{"role": "user", "content": "血圧について教えて"}], max_tokens=8, temperature=0)
chunks = list(c.chat.completions.create(model="med", messages=[{"role": "user", "content": "頭痛"}], max_tokens=8, stream=True, temperature=0))
t = c.completions.create(model="med", prompt="患者は", max_tokens=8, temperature=0)
models = [m.id for m in c.models.list()]
raw = c.chat.completions.with_raw_response.create(model="med", messages=[{"role": "user", "content": "x"}], max_tokens=2)
try:
    OpenAI(base_url=sys.argv[1], api_key="wrong", max_retries=0).models.list()
    auth = "accepted"
except Exception as e:
    auth = type(e).__name__
print(json.dumps({"chat": r.choices[0].message.content, "finish": r.choices[0].finish_reason,
  "stream_text": "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices),
  "stream_chunks": len(chunks), "completion": t.choices[0].text, "models": models,
  "version": raw.headers.get("x-anshin-model-version"), "auth": auth}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openai_python_client_works_for_chat_streaming_and_completions() {
    let s = setup();
    let inf = start_inference(&s.model, "a").await;
    let routing_path = s.dir.path().join("routing.yaml");
    write_routing(
        &routing_path,
        &routing(&[("v1", 100, vec![inf.addr.to_string()])]),
    );
    let gw = start_gateway(&routing_path, &s.dir.path().join("audit.jsonl")).await;
    let out = Command::new(python())
        .args(["-c", OPENAI_SCRIPT, &format!("http://{}/v1", gw.addr), KEY])
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "openai client failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("script prints JSON");
    assert!(!v["chat"].as_str().unwrap_or_default().is_empty(), "{v}");
    assert!(v["stream_chunks"].as_u64().unwrap_or(0) >= 2, "{v}");
    assert!(
        !v["stream_text"].as_str().unwrap_or_default().is_empty(),
        "{v}"
    );
    assert!(
        !v["completion"].as_str().unwrap_or_default().is_empty(),
        "{v}"
    );
    assert_eq!(v["models"], json!(["med"]));
    assert_eq!(v["version"], "v1");
    assert_eq!(v["auth"], "AuthenticationError");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn patient_identifiers_reach_the_real_backend_only_as_placeholders() {
    let s = setup();
    let inf = start_inference(&s.model, "a").await;
    let recorder = TestBackend::start(Mode::Forward(inf.addr)).await;
    let routing_path = s.dir.path().join("routing.yaml");
    write_routing(
        &routing_path,
        &routing(&[("v1", 100, vec![recorder.addr.to_string()])]),
    );
    let audit = s.dir.path().join("audit.jsonl");
    let gw = start_gateway(&routing_path, &audit).await;
    let my_number = format!(
        "12345678901{}",
        anshin_guardrails::my_number_check_digit(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1])
    );
    let prompt = format!(
        "患者の山田太郎さん（住所：東京都千代田区千代田1-1、マイナンバー：{my_number}）の血圧について教えてください。"
    );
    for stream in [false, true] {
        let r = post(
            gw.addr,
            "/v1/chat/completions",
            Some(KEY),
            &chat_body("med", &prompt, stream),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let bodies = recorder.bodies();
    assert_eq!(bodies.len(), 2);
    for b in bodies {
        let sent = b["messages"][0]["content"]
            .as_str()
            .expect("content")
            .to_owned();
        for secret in ["山田", "太郎", "千代田区", my_number.as_str()] {
            assert!(
                !sent.contains(secret),
                "backend received `{secret}`: {sent}"
            );
        }
        for ph in ["〔氏名1〕", "〔住所1〕", "〔個人番号1〕"] {
            assert!(sent.contains(ph), "backend did not receive {ph}: {sent}");
        }
        assert!(sent.contains("血圧"), "medical terms stay: {sent}");
    }
    let log = wait_for_lines(&audit, 2).await;
    assert!(
        !log.contains("山田") && !log.contains(&my_number),
        "audit holds no PII"
    );
    assert!(
        log.contains("\"PERSON\":1") && log.contains("\"MY_NUMBER\":1"),
        "{log}"
    );
}

async fn wait_for_lines(path: &Path, n: usize) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= n {
            return text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "audit log has {} lines, want {n}",
            text.lines().count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Outcome counts of the load run.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    failed_after_first_byte: AtomicUsize,
    failed_before_first_byte: AtomicUsize,
}

async fn one_request(addr: std::net::SocketAddr, stream: bool, tally: &Tally) {
    let body = json!({"model": "med", "messages": [{"role": "user", "content": "発熱と咳"}], "stream": stream,
                      "max_tokens": 24, "ignore_eos": true, "temperature": 0});
    match send(
        addr,
        "POST",
        "/v1/chat/completions",
        Some(KEY),
        Some(body.to_string()),
    )
    .await
    {
        Ok(r) if r.status == 200 && (!stream || r.body.contains("[DONE]")) => {
            tally.ok.fetch_add(1, Ordering::Relaxed)
        }
        Ok(r) if r.status == 200 && !r.body.is_empty() => tally
            .failed_after_first_byte
            .fetch_add(1, Ordering::Relaxed),
        Ok(r) => {
            eprintln!("failed before first byte: {} {}", r.status, r.body);
            tally
                .failed_before_first_byte
                .fetch_add(1, Ordering::Relaxed)
        }
        Err(e) => {
            eprintln!("failed before first byte: {e}");
            tally
                .failed_before_first_byte
                .fetch_add(1, Ordering::Relaxed)
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_a_backend_under_load_loses_no_request_before_its_first_byte() {
    let s = setup();
    let mut a = start_inference(&s.model, "a").await;
    let b = start_inference(&s.model, "b").await;
    let routing_path = s.dir.path().join("routing.yaml");
    write_routing(
        &routing_path,
        &routing(&[("v1", 100, vec![a.addr.to_string(), b.addr.to_string()])]),
    );
    let gw = start_gateway(&routing_path, &s.dir.path().join("audit.jsonl")).await;
    let tally = Arc::new(Tally::default());
    let deadline = Instant::now() + Duration::from_secs(90);
    // 6 workers × 40 requests; backend `a` is killed once 12 have succeeded, so the load runs on
    // both sides of the kill however fast the backends are.
    const WORKERS: usize = 6;
    const PER_WORKER: usize = 40;
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let tally = tally.clone();
            let addr = gw.addr;
            tokio::spawn(async move {
                for i in 0..PER_WORKER {
                    if Instant::now() > deadline {
                        break;
                    }
                    one_request(addr, (w + i) % 2 == 0, &tally).await;
                }
            })
        })
        .collect();
    while tally.ok.load(Ordering::Relaxed) < 12 {
        assert!(Instant::now() < deadline, "the load never got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let done_before_kill = tally.ok.load(Ordering::Relaxed);
    a.kill();
    for w in workers {
        w.await.expect("worker");
    }
    let ok = tally.ok.load(Ordering::Relaxed);
    let after = tally.failed_after_first_byte.load(Ordering::Relaxed);
    let before = tally.failed_before_first_byte.load(Ordering::Relaxed);
    eprintln!(
        "ok={ok} failed_after_first_byte={after} failed_before_first_byte={before} done_before_kill={done_before_kill}"
    );
    assert_eq!(before, 0, "requests lost before their first byte");
    assert_eq!(ok + after, WORKERS * PER_WORKER);
    assert!(
        ok > done_before_kill,
        "requests kept succeeding after the kill"
    );
    let m = metrics_text(&gw).await;
    assert!(
        metric_sum(
            &m,
            "anshin_gateway_requests_total",
            &["status_class=\"2xx\""]
        ) >= 48.0
    );
    drop(b);
}

async fn versions_of(addr: std::net::SocketAddr, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let body = json!({"model": "med", "prompt": "熱", "max_tokens": 1});
        let r = post(addr, "/v1/completions", Some(KEY), &body).await;
        assert_eq!(r.status, 200, "{}", r.body);
        out.push(r.header("x-anshin-model-version").unwrap_or_default());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hot_reloaded_routing_table_shifts_traffic_within_one_second() {
    let s = setup();
    let a = start_inference(&s.model, "a").await;
    let b = start_inference(&s.model, "b").await;
    let routing_path = s.dir.path().join("routing.yaml");
    let table = |w1, w2| {
        routing(&[
            ("v1", w1, vec![a.addr.to_string()]),
            ("v2", w2, vec![b.addr.to_string()]),
        ])
    };
    write_routing(&routing_path, &table(100, 0));
    let gw = start_gateway(&routing_path, &s.dir.path().join("audit.jsonl")).await;
    assert!(versions_of(gw.addr, 6).await.iter().all(|v| v == "v1"));
    let changed = Instant::now();
    write_routing(&routing_path, &table(0, 100));
    tokio::time::sleep(Duration::from_secs(1).saturating_sub(changed.elapsed())).await;
    let after = versions_of(gw.addr, 10).await;
    assert!(
        after.iter().all(|v| v == "v2"),
        "one second after the reload: {after:?}"
    );
    write_routing(&routing_path, &table(50, 50));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mixed = versions_of(gw.addr, 30).await;
    assert!(
        mixed.iter().any(|v| v == "v1") && mixed.iter().any(|v| v == "v2"),
        "{mixed:?}"
    );
    let r = post(
        gw.addr,
        "/v1/completions",
        Some(KEY),
        &json!({"model": "med", "prompt": "熱", "max_tokens": 1}),
    )
    .await;
    assert!(
        r.header("x-anshin-model-digest")
            .is_some_and(|d| d.starts_with("sha256:v")),
        "{:?}",
        r.headers
    );
}
