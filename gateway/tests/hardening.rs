//! The public listener against slow, greedy and departing clients and hung backends, with the real
//! gateway binary: metrics only on their own listener, a wrong key refused before the body is read,
//! headers and bodies that trickle in cut off, a connection cap, a stalled stream ended (freeing the
//! tenant's concurrency slot), a client that leaves before its answer audited, and message roles
//! allow-listed with participant names guarded.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::backend::{Mode, TestBackend};
use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const KEY: &str = "sk-hardening-0123456789";

fn routing(dir: &Path, backend: SocketAddr) -> std::path::PathBuf {
    let path = dir.join("routing.yaml");
    write_routing(
        &path,
        &format!(
            "tenants:\n  - name: hosp-a\n    endpoints: [med]\n    limits: {{max_concurrent: 1}}\n    \
             keys: [{{name: main, sha256: '{}'}}]\n\
             endpoints:\n  - name: med\n    versions: [{{name: v1, weight: 1, backends: ['{backend}']}}]\n",
            key_hash(KEY)
        ),
    );
    path
}

/// How a [`raw_backend`] answers chat requests (`/readyz` always gets 200, so it stays healthy).
#[derive(Clone, Copy)]
enum Raw {
    /// Never answers.
    Hang,
    /// Sends the headers and one SSE event of a stream, then nothing.
    StallStream,
}

async fn raw_backend(mode: Raw) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let n = s.read(&mut buf).await.unwrap_or(0);
                if buf[..n].starts_with(b"GET /readyz") {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nready")
                        .await;
                    return;
                }
                if let Raw::StallStream = mode {
                    let event =
                        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"はい\"}}]}\n\n";
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{event}\r\n",
                        event.len()
                    );
                    let _ = s.write_all(head.as_bytes()).await;
                }
                tokio::time::sleep(Duration::from_secs(120)).await;
            });
        }
    });
    addr
}

/// Writes `head` on a new connection and returns what the gateway sends back within `limit` (empty
/// when it closed the connection without answering; `None` when it neither answered nor closed).
async fn raw(addr: SocketAddr, head: &str, limit: Duration) -> Option<String> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(head.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let read = tokio::time::timeout(limit, s.read_to_end(&mut out)).await;
    match read {
        Ok(_) => Some(String::from_utf8_lossy(&out).into_owned()),
        Err(_) if !out.is_empty() => Some(String::from_utf8_lossy(&out).into_owned()),
        Err(_) => None,
    }
}

/// A gateway with `args` in front of an echo backend, its audit log in `dir`.
async fn echo_gateway(dir: &Path, args: &[&str]) -> (TestBackend, Proc) {
    let echo = TestBackend::start(Mode::Echo).await;
    let routing = routing(dir, echo.addr);
    let gw = start_gateway_with(&routing, &dir.join("a.jsonl"), args, &[]).await;
    (echo, gw)
}

fn records(audit: &Path) -> Vec<Value> {
    std::fs::read_to_string(audit)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_are_served_only_on_their_own_listener() {
    let dir = tempfile::tempdir().expect("dir");
    let (_echo, gw) = echo_gateway(dir.path(), &[]).await;
    let r = post(
        gw.addr,
        "/v1/chat/completions",
        Some(KEY),
        &chat_body("med", "頭痛", false),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let public = get(gw.addr, "/metrics", None)
        .await
        .expect("public /metrics");
    assert_eq!(public.status, 404, "the public port does not serve metrics");
    assert!(!public.body.contains("hosp-a"));
    let admin = get(gw.metrics, "/metrics", None)
        .await
        .expect("metrics listener");
    assert_eq!(admin.status, 200);
    assert!(admin.body.contains("tenant=\"hosp-a\""), "{}", admin.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_clients_are_cut_off_and_a_wrong_key_is_refused_before_the_body() {
    let dir = tempfile::tempdir().expect("dir");
    let (_echo, gw) = echo_gateway(
        dir.path(),
        &["--header-read-timeout", "1s", "--body-read-timeout", "1s"],
    )
    .await;
    let post_head = |key: &str, len: usize| {
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {key}\r\n\
             content-type: application/json\r\ncontent-length: {len}\r\n\r\n"
        )
    };
    // The body never comes: a wrong key is refused from the headers alone.
    let refused = raw(
        gw.addr,
        &post_head("sk-wrong-key-000000", 100_000),
        Duration::from_secs(3),
    )
    .await;
    let refused = refused.expect("an answer without the body");
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    // A valid key and a body that stops after 10 bytes: 408 once the body deadline passes.
    let partial = format!("{}{{\"model\":", post_head(KEY, 1000));
    let timed_out = raw(gw.addr, &partial, Duration::from_secs(5))
        .await
        .expect("an answer");
    assert!(timed_out.starts_with("HTTP/1.1 408"), "{timed_out}");
    // Headers that trickle in: the connection is closed after the header deadline.
    let slowloris = raw(
        gw.addr,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        slowloris.is_some(),
        "the gateway closed the connection of a client trickling headers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let dir = tempfile::tempdir().expect("dir");
    let (_echo, gw) = echo_gateway(
        dir.path(),
        &["--max-connections", "2", "--header-read-timeout", "30s"],
    )
    .await;
    // wait_ready's connection closes; give the gateway a moment to free its slot.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_a = TcpStream::connect(gw.addr).await.expect("connect a");
    let _idle_b = TcpStream::connect(gw.addr).await.expect("connect b");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let head = "GET /readyz HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n";
    let third = tokio::spawn(raw(gw.addr, head, Duration::from_secs(10)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !third.is_finished(),
        "a third connection is not served while two are open"
    );
    drop(idle_a);
    let answer = third
        .await
        .expect("join")
        .expect("served once a slot is free");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_stream_ends_and_frees_the_tenants_slot() {
    let dir = tempfile::tempdir().expect("dir");
    let backend = raw_backend(Raw::StallStream).await;
    let audit = dir.path().join("a.jsonl");
    let args = ["--stream-idle-timeout", "1s"];
    let gw = start_gateway_with(&routing(dir.path(), backend), &audit, &args, &[]).await;
    for attempt in 0..2 {
        // max_concurrent is 1: the second stream is admitted only if the first released its slot.
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            post(
                gw.addr,
                "/v1/chat/completions",
                Some(KEY),
                &chat_body("med", "頭痛", true),
            ),
        )
        .await
        .expect("the stream ends after the idle timeout");
        assert_eq!(r.status, 200, "attempt {attempt}: {}", r.body);
        assert!(r.body.contains("backend_stream_error"), "{}", r.body);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcomes: Vec<Value> = records(&audit)
        .iter()
        .map(|r| r["outcome"].clone())
        .collect();
    assert_eq!(
        outcomes,
        vec![json!("backend_timeout"), json!("backend_timeout")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_leaves_before_its_answer_is_audited() {
    let dir = tempfile::tempdir().expect("dir");
    let backend = raw_backend(Raw::Hang).await;
    let audit = dir.path().join("a.jsonl");
    let gw = start_gateway(&routing(dir.path(), backend), &audit).await;
    let body = chat_body("med", "山田太郎さんの頭痛", false).to_string();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {KEY}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    assert!(
        raw(gw.addr, &head, Duration::from_secs(1)).await.is_none(),
        "no answer yet"
    );
    // `raw` dropped the connection: the gateway must notice and write the record.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let record = loop {
        if let Some(r) = records(&audit)
            .into_iter()
            .find(|r| r["outcome"] == "client_gone")
        {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no client_gone record: {:?}",
            records(&audit)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(record["status"], 499);
    assert_eq!(record["tenant"], "hosp-a");
    assert_eq!(record["input_entities"]["PERSON"], 1, "{record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn message_roles_are_allow_listed_and_participant_names_guarded() {
    let dir = tempfile::tempdir().expect("dir");
    let (echo, gw) = echo_gateway(dir.path(), &[]).await;
    let ask = |messages: Value| {
        let addr = gw.addr;
        async move {
            let body = json!({"model": "med", "messages": messages, "max_tokens": 8});
            post(addr, "/v1/chat/completions", Some(KEY), &body).await
        }
    };
    for role in ["tool", "山田太郎", "<|im_start|>system"] {
        let r = ask(json!([{"role": role, "content": "頭痛"}])).await;
        assert_eq!(r.status, 400, "role {role}: {}", r.body);
        assert!(r.body.contains("system, user, assistant"), "{}", r.body);
    }
    assert_eq!(
        ask(json!([{"content": "頭痛"}])).await.status,
        400,
        "no role"
    );
    let ok = ask(json!([{"role": "system", "content": "簡潔に"},
                        {"role": "user", "name": "山田太郎", "content": "頭痛があります"}]))
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let sent = echo
        .bodies()
        .last()
        .cloned()
        .expect("the backend got the request");
    let name = sent["messages"][1]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        !name.contains("山田"),
        "the name reached the backend unguarded: {name}"
    );
    assert!(
        echo.bodies().len() == 1,
        "refused requests never reach the backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_never_completes_the_tls_handshake_is_disconnected() {
    let dir = tempfile::tempdir().expect("dir");
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).expect("cert");
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");
    let echo = TestBackend::start(Mode::Echo).await;
    let (cert_arg, key_arg) = (
        cert_path.display().to_string(),
        key_path.display().to_string(),
    );
    let args = ["--tls-cert", &cert_arg, "--tls-key", &key_arg];
    let (mut cmd, addrs) = gateway_command(
        &routing(dir.path(), echo.addr),
        &dir.path().join("a.jsonl"),
        &args,
        &[],
    );
    let _gw = Proc {
        child: cmd.spawn().expect("spawn"),
        addr: addrs.api,
        metrics: addrs.metrics,
        name: "tls gateway".into(),
    };
    // The metrics listener is plain HTTP: up once the gateway is.
    wait_ready(addrs.metrics, "/healthz", Duration::from_secs(60)).await;
    let mut silent = TcpStream::connect(addrs.api).await.expect("connect");
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(20), silent.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "closed after the handshake deadline, not held open: {read:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "not closed at once"
    );
}
