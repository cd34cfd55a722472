//! Drain on SIGTERM, against the real binary: a request in flight when SIGTERM arrives completes, a new
//! request gets 503, `/readyz` turns 503 at once, and the process exits 0 within the drain timeout.

mod common;

use std::io::BufReader;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Proc, free_port, http, read_sse_lines, send, wait_exit, wait_for};

fn spawn_server(model: &std::path::Path, addr: SocketAddr, drain: &str) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_anshin-inference"))
        .args(["serve", "--model"])
        .arg(model)
        .args([
            "--listen",
            &addr.to_string(),
            "--drain-timeout",
            drain,
            "--model-id",
            "tiny",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start anshin-inference");
    Proc(child)
}

fn sigterm(p: &Proc) {
    let status = Command::new("kill")
        .args(["-TERM", &p.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

#[test]
fn sigterm_finishes_in_flight_refuses_new_and_exits_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = common::hf_fixture(dir.path());
    let addr = free_port();
    let mut server = spawn_server(&model, addr, "20s");
    assert!(
        wait_for(addr, "/readyz", 200, Duration::from_secs(60)),
        "server never became ready"
    );

    // A long streaming request: 3000 tokens take seconds on the tiny model.
    let body =
        r#"{"prompt":"患者は","max_tokens":3000,"temperature":0,"ignore_eos":true,"stream":true}"#;
    let mut stream = BufReader::new(send(addr, "POST", "/v1/completions", Some(body)));
    assert_eq!(
        read_sse_lines(&mut stream, 3).len(),
        3,
        "the in-flight request did not start streaming"
    );

    sigterm(&server);
    let start = Instant::now();
    let ready = loop {
        let r = http(addr, "GET", "/readyz", None);
        if r.status == 503 || start.elapsed() > Duration::from_secs(5) {
            break r;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(ready.status, 503, "readyz stayed ready after SIGTERM");
    let refused = http(
        addr,
        "POST",
        "/v1/completions",
        Some(r#"{"prompt":"x","max_tokens":2}"#),
    );
    assert_eq!(
        refused.status, 503,
        "new request during drain: {}",
        refused.body
    );
    assert!(
        refused.body.contains("\"code\":\"draining\""),
        "{}",
        refused.body
    );

    let rest = read_sse_lines(&mut stream, usize::MAX);
    assert_eq!(
        rest.last().map(String::as_str),
        Some("[DONE]"),
        "in-flight stream was cut"
    );
    assert!(
        rest.iter()
            .any(|l| l.contains("\"finish_reason\":\"length\""))
    );

    let status = wait_exit(&mut server, Duration::from_secs(20))
        .expect("server did not exit after draining");
    assert!(status.success(), "exit status {status}");
}

#[test]
fn drain_timeout_bounds_shutdown_even_with_a_request_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = common::hf_fixture(dir.path());
    let addr = free_port();
    let mut server = spawn_server(&model, addr, "300ms");
    assert!(
        wait_for(addr, "/readyz", 200, Duration::from_secs(60)),
        "server never became ready"
    );
    let body =
        r#"{"prompt":"患者は","max_tokens":4000,"temperature":0,"ignore_eos":true,"stream":true}"#;
    let mut stream = BufReader::new(send(addr, "POST", "/v1/completions", Some(body)));
    assert_eq!(read_sse_lines(&mut stream, 2).len(), 2);
    let start = Instant::now();
    sigterm(&server);
    let status = wait_exit(&mut server, Duration::from_secs(10)).expect("server did not exit");
    assert!(status.success(), "exit status {status}");
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "exit took {:?}",
        start.elapsed()
    );
}
