//! Property test: malformed HTTP, malformed or hostile JSON and huge bodies never crash the gateway,
//! always get a 4xx (or a closed connection for bytes that are not HTTP), and do not grow its memory
//! without bound.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::backend::{Mode, TestBackend};
use common::*;
use proptest::prelude::*;
use serde_json::{Value, json};

const KEY: &str = "sk-fuzz-key";

struct World {
    rt: tokio::runtime::Runtime,
    gw: Proc,
    _dir: tempfile::TempDir,
}

fn world() -> World {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = rt.block_on(async {
        let echo = TestBackend::start(Mode::Echo).await;
        let routing = format!(
            "tenants: [{{name: t, endpoints: ['*'], keys: [{{name: k, sha256: '{}'}}]}}]\n\
             endpoints: [{{name: med, versions: [{{name: v1, weight: 1, backends: ['{}']}}]}}]\n",
            key_hash(KEY),
            echo.addr
        );
        let path = dir.path().join("routing.yaml");
        write_routing(&path, &routing);
        start_gateway(&path, &dir.path().join("audit.jsonl")).await
    });
    World { rt, gw, _dir: dir }
}

/// Writes raw bytes (then half-closes when `eof`) and returns the status line's code (None when the
/// server closed without one).
fn raw(addr: SocketAddr, bytes: &[u8], eof: bool) -> Option<u16> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = s.write_all(bytes);
    if eof {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Like [`raw`] for a client that writes its whole request before reading, and fails when the
/// server resets the connection under it: `Err` when the write did not go through.
fn raw_whole(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<Option<u16>> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(bytes)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    Ok(text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3)?.parse().ok()))
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(
                "(model|messages|prompt|stream|content|role|[a-z]{1,6})",
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn post_bytes(w: &World, body: Vec<u8>) -> u16 {
    let addr = w.gw.addr;
    w.rt.block_on(async move {
        let body = String::from_utf8_lossy(&body).into_owned();
        send(addr, "POST", "/v1/chat/completions", Some(KEY), Some(body))
            .await
            .map(|r| r.status)
            .unwrap_or(0)
    })
}

#[test]
fn malformed_requests_get_4xx_and_never_crash_or_bloat_the_gateway() {
    let w = world();
    let addr = w.gw.addr;
    let config = ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    };

    proptest!(config.clone(), |(bytes in prop::collection::vec(any::<u8>(), 0..2048))| {
        if let Some(code) = raw(addr, &bytes, true) {
            prop_assert!((400..500).contains(&code), "random bytes got {code}");
        }
    });
    proptest!(config.clone(), |(path in "/[a-z0-9/._-]{0,40}", junk in "[ -~]{0,64}")| {
        let req = format!("POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {KEY}\r\nContent-Length: {}\r\n\r\n{junk}", junk.len());
        let code = raw(addr, req.as_bytes(), false);
        prop_assert!(code.is_some_and(|c| (400..500).contains(&c) || c == 200), "{path} got {code:?}");
    });
    proptest!(config.clone(), |(v in json_value())| {
        let code = post_bytes(&w, serde_json::to_vec(&v).expect("json"));
        prop_assert!(matches!(code, 200 | 400 | 404), "{v} got {code}");
    });
    proptest!(config, |(text in "\\PC{0,300}")| {
        let body = json!({"model": "med", "messages": [{"role": "user", "content": text}]});
        let code = post_bytes(&w, serde_json::to_vec(&body).expect("json"));
        prop_assert_eq!(code, 200, "arbitrary text through the guardrails");
    });

    let deep = "[".repeat(2 << 20);
    assert_eq!(post_bytes(&w, deep.into_bytes()), 413, "over 1 MiB");
    let deep = format!("{{\"model\":\"med\",\"messages\":{}}}", "[".repeat(100_000));
    assert_eq!(
        post_bytes(&w, deep.into_bytes()),
        400,
        "nesting beyond the JSON recursion limit"
    );

    let before = rss_kib(w.gw.child.id());
    for _ in 0..12 {
        // 8 MiB announced: the gateway answers 413 from the header alone.
        let req = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {KEY}\r\nContent-Length: {}\r\n\r\n",
            8 << 20
        )
        .into_bytes();
        assert_eq!(raw(addr, &req, false), Some(413));
        // 6 MiB actually sent, by a client that writes its whole body before reading: the gateway
        // answers 413 from the header, then drains (and discards) the body before closing. Closing
        // at once instead resets the connection while the client is still writing (6 MiB is more
        // than loopback socket buffers hold), and such a client never gets to read the 413.
        let mut req = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Length: {}\r\n\r\n",
            6 << 20
        )
        .into_bytes();
        req.resize(req.len() + (6 << 20), b'[');
        match raw_whole(addr, &req) {
            Ok(code) => assert_eq!(code, Some(413), "6 MiB body, whole-request client"),
            Err(e) => panic!("6 MiB body: the gateway reset the connection under the client: {e}"),
        }
        // The same through an HTTP client that reads the response while still writing.
        assert_eq!(post_bytes(&w, vec![b'['; 2 << 20]), 413, "2 MiB body");
    }
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        1u64 << 40
    );
    assert_eq!(
        raw(addr, req.as_bytes(), false),
        Some(413),
        "a terabyte announced"
    );
    let grown = rss_kib(w.gw.child.id()).saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "memory grew by {grown} KiB after 96 MiB of rejected bodies"
    );
    let ok = w.rt.block_on(get(addr, "/healthz", None)).expect("healthz");
    assert_eq!(ok.status, 200, "still serving");
}
