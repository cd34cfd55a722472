//! Test-only fault injection, against the real binary with the tiny fixture model: the fault flags are
//! refused without `--enable-fault-injection`; with it, `--fault-error-rate` answers completions 500
//! before any byte (probes stay 200), `--fault-token-delay` slows every token, `--fault-phone-number`
//! puts a fake phone number into answers, and `/metrics` shows all of it.

mod common;

use std::io::BufReader;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anshin_inference::server::faults::FAKE_PHONE_NUMBER;
use common::{Proc, free_port, http, read_sse_lines, send, sse_data, wait_exit, wait_for};
use serde_json::Value;

fn inference() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_anshin-inference"));
    c.env("RUST_LOG", "warn").stdout(Stdio::null());
    c
}

/// A fixture model served with `flags`, ready; its address. The tempdir must outlive the server.
fn serve(dir: &Path, flags: &[&str]) -> (Proc, SocketAddr) {
    let model = common::hf_fixture(dir);
    let addr = free_port();
    let child = inference()
        .args(["serve", "--model"])
        .arg(model)
        .args(["--listen", &addr.to_string(), "--model-id", "tiny"])
        .args(flags)
        .stderr(Stdio::null())
        .spawn()
        .expect("start anshin-inference");
    let p = Proc(child);
    assert!(
        wait_for(addr, "/readyz", 200, Duration::from_secs(60)),
        "never became ready with {flags:?}"
    );
    (p, addr)
}

fn chat_body(max_tokens: usize, stream: bool) -> String {
    format!(
        r#"{{"messages":[{{"role":"user","content":"頭痛があります"}}],"max_tokens":{max_tokens},
            "temperature":0,"ignore_eos":true,"stream":{stream}}}"#
    )
}

fn chat(addr: SocketAddr, max_tokens: usize, stream: bool) -> common::Reply {
    http(
        addr,
        "POST",
        "/v1/chat/completions",
        Some(&chat_body(max_tokens, stream)),
    )
}

/// The value of the metric line that starts with `series` (name and labels).
fn metric(addr: SocketAddr, series: &str) -> f64 {
    let body = http(addr, "GET", "/metrics", None).body;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics:\n{body}"))
}

/// The answer text of a chat reply, plain or streamed.
fn answer_text(r: &common::Reply) -> String {
    if r.head.contains("text/event-stream") {
        sse_data(&r.body)
            .iter()
            .filter(|d| d.as_str() != "[DONE]")
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| {
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    } else {
        let v: Value = serde_json::from_str(&r.body).expect("a JSON answer");
        v["choices"][0]["message"]["content"]
            .as_str()
            .expect("content")
            .to_owned()
    }
}

#[test]
fn fault_flags_without_enable_are_refused_with_exit_2() {
    for (flags, says) in [
        (&["--fault-error-rate", "0.3"][..], "--fault-error-rate"),
        (&["--fault-token-delay", "50ms"][..], "--fault-token-delay"),
        (&["--fault-phone-number"][..], "--fault-phone-number"),
        (
            &["--enable-fault-injection", "--fault-error-rate", "1.5"][..],
            "between 0.0 and 1.0",
        ),
    ] {
        // Refused before the model is read: a model that does not exist is never reached.
        let child = inference()
            .args([
                "serve",
                "--model",
                "/nonexistent-model",
                "--listen",
                "127.0.0.1:0",
            ])
            .args(flags)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start anshin-inference");
        let mut p = Proc(child);
        let status = wait_exit(&mut p, Duration::from_secs(20)).expect("exits at once");
        assert_eq!(status.code(), Some(2), "{flags:?}");
        let mut err = String::new();
        if let Some(mut e) = p.0.stderr.take() {
            use std::io::Read;
            e.read_to_string(&mut err).expect("stderr");
        }
        assert!(err.contains(says), "{flags:?}: {err}");
        if !says.contains("between") {
            assert!(err.contains("needs --enable-fault-injection"), "{err}");
            assert!(err.contains("tests only"), "{err}");
        }
    }
}

#[test]
fn error_rate_one_fails_every_completion_before_the_first_byte_but_no_probe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_p, addr) = serve(
        dir.path(),
        &["--enable-fault-injection", "--fault-error-rate", "1.0"],
    );
    for stream in [false, true, false, true, false] {
        let r = chat(addr, 4, stream);
        assert_eq!(r.status, 500, "stream {stream}: {}", r.body);
        assert!(!r.head.contains("text/event-stream"), "{}", r.head);
        let v: Value = serde_json::from_str(&r.body).expect("an OpenAI error body");
        assert_eq!(v["error"]["type"], "server_error");
        assert_eq!(v["error"]["code"], "injected_fault");
    }
    let completion = r#"{"prompt":"頭痛","max_tokens":2}"#;
    assert_eq!(
        http(addr, "POST", "/v1/completions", Some(completion)).status,
        500
    );
    assert_eq!(http(addr, "GET", "/readyz", None).status, 200);
    assert_eq!(http(addr, "GET", "/healthz", None).status, 200);
    assert_eq!(http(addr, "GET", "/v1/models", None).status, 200);
    assert_eq!(
        metric(
            addr,
            r#"anshin_inference_faults_injected_total{kind="error"}"#
        ),
        6.0
    );
    assert_eq!(
        metric(addr, "anshin_inference_fault_injection_enabled"),
        1.0
    );
}

#[test]
fn error_rate_fails_about_that_fraction_of_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_p, addr) = serve(
        dir.path(),
        &["--enable-fault-injection", "--fault-error-rate", "0.3"],
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut sent, mut failed) = (0, 0);
    while sent < 200 && Instant::now() < deadline {
        let status = chat(addr, 1, false).status;
        assert!(status == 200 || status == 500, "status {status}");
        sent += 1;
        failed += usize::from(status == 500);
    }
    assert_eq!(sent, 200, "only {sent} requests in 120 s");
    assert!((30..=90).contains(&failed), "{failed} of 200 failed");
    assert_eq!(
        metric(
            addr,
            r#"anshin_inference_faults_injected_total{kind="error"}"#
        ),
        failed as f64
    );
}

/// How long a chat answer of 4 tokens takes, plain; the shortest of three.
fn fastest_answer(addr: SocketAddr) -> Duration {
    (0..3)
        .map(|_| {
            let start = Instant::now();
            assert_eq!(chat(addr, 4, false).status, 200);
            start.elapsed()
        })
        .min()
        .expect("three answers")
}

#[test]
fn token_delay_slows_every_token_streamed_and_plain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_plain, plain) = serve(&dir.path().join("plain"), &[]);
    let baseline = fastest_answer(plain);
    assert_eq!(
        metric(plain, "anshin_inference_fault_injection_enabled"),
        0.0
    );

    let (_slow, slow) = serve(
        &dir.path().join("slow"),
        &["--enable-fault-injection", "--fault-token-delay", "100ms"],
    );
    let delayed = fastest_answer(slow);
    assert!(
        delayed >= Duration::from_millis(400),
        "4 tokens in {delayed:?}"
    );
    assert!(
        baseline < Duration::from_millis(300),
        "4 tokens without a delay took {baseline:?}"
    );

    // Streamed: the first token waits for its delay, and the whole answer for all four.
    let start = Instant::now();
    let s = send(
        slow,
        "POST",
        "/v1/chat/completions",
        Some(&chat_body(4, true)),
    );
    let mut reader = BufReader::new(s);
    let first = read_sse_lines(&mut reader, 2);
    let first_token = start.elapsed();
    assert_eq!(first.len(), 2, "{first:?}");
    let rest = read_sse_lines(&mut reader, 100);
    let whole = start.elapsed();
    assert_eq!(rest.last().map(String::as_str), Some("[DONE]"), "{rest:?}");
    assert!(first_token >= Duration::from_millis(100), "{first_token:?}");
    assert!(whole >= Duration::from_millis(400), "{whole:?}");
    assert_eq!(
        metric(
            slow,
            r#"anshin_inference_faults_injected_total{kind="delay"}"#
        ),
        4.0
    );
}

#[test]
fn phone_number_fault_puts_a_fake_number_in_every_answer() {
    // The guardrails detect this format as a phone number: guardrails/tests/redact.rs and
    // guardrails/tests/stream.rs find 090-NNNN-NNNN in model output.
    assert_eq!(FAKE_PHONE_NUMBER, "090-0000-0000");
    let dir = tempfile::tempdir().expect("tempdir");
    let (_p, addr) = serve(
        dir.path(),
        &["--enable-fault-injection", "--fault-phone-number"],
    );
    for stream in [false, true] {
        let r = chat(addr, 4, stream);
        assert_eq!(r.status, 200, "{}", r.body);
        let text = answer_text(&r);
        assert!(
            text.contains(&format!("\n連絡先: {FAKE_PHONE_NUMBER}")),
            "stream {stream}: {text:?}"
        );
    }
    let completion = r#"{"prompt":"頭痛","max_tokens":2,"temperature":0}"#;
    let r = http(addr, "POST", "/v1/completions", Some(completion));
    let v: Value = serde_json::from_str(&r.body).expect("JSON");
    let text = v["choices"][0]["text"].as_str().expect("text");
    assert!(text.ends_with(FAKE_PHONE_NUMBER), "{text:?}");
    assert_eq!(
        metric(
            addr,
            r#"anshin_inference_faults_injected_total{kind="phone"}"#
        ),
        3.0
    );
    assert_eq!(
        metric(
            addr,
            r#"anshin_inference_faults_injected_total{kind="error"}"#
        ),
        0.0
    );
}
