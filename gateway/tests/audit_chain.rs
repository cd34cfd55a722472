//! What the audit chain proves, against the real gateway binary: a keyed chain verifies only with
//! its key, the published head exposes records cut from the end, and an unauthenticated flood
//! becomes one record per source instead of one per request.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::audit::*;
use common::backend::{Mode, TestBackend};
use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_hmac_keyed_chain_verifies_only_with_its_key() {
    let dir = tempfile::tempdir().expect("dir");
    let echo = TestBackend::start(Mode::Echo).await;
    let routing = routing(dir.path(), &echo.addr.to_string());
    let audit = dir.path().join("audit.jsonl");
    let key = dir.path().join("audit-key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef\n").expect("key");
    let other = dir.path().join("other-key");
    std::fs::write(&other, "fedcba9876543210fedcba9876543210").expect("key");
    let key_arg = key.to_str().expect("utf-8 path");
    let gw = start_gateway_with(&routing, &audit, &["--audit-hmac-key-file", key_arg], &[]).await;
    for _ in 0..3 {
        assert_eq!(chat(&gw, Some(KEY)).await.0, 200);
    }
    let recs = wait_for_records(&audit, Duration::from_secs(10), |r| r.len() == 3).await;
    drop(gw);
    let original = std::fs::read(&audit).expect("read");

    let (ok, msg) = verify(&audit, &["--hmac-key-file", key_arg]);
    assert!(ok && msg.contains("OK: 3 records"), "{msg}");
    let (ok, msg) = verify(&audit, &[]);
    assert!(
        !ok && msg.contains("line 1") && msg.contains("keyed"),
        "{msg}"
    );
    let (ok, msg) = verify(&audit, &["--hmac-key-file", other.to_str().expect("path")]);
    assert!(!ok && msg.contains("line 1"), "{msg}");

    // Someone with write access but without the key edits a record and recomputes the chain the
    // only way they can: the keyed check fails at that record.
    let mut prev = GENESIS.to_owned();
    let mut forged = String::new();
    for (i, r) in recs.iter().enumerate() {
        let mut r = r.clone();
        let obj = r.as_object_mut().expect("object");
        obj.remove("hash");
        obj.insert("prev_hash".into(), Value::from(prev.clone()));
        if i == 1 {
            obj.insert("status".into(), Value::from(500));
        }
        let body = serde_json::to_string(&r).expect("json");
        prev = hex::encode(Sha256::digest(format!("{prev}\n{body}").as_bytes()));
        forged += &format!("{},\"hash\":\"{prev}\"}}\n", &body[..body.len() - 1]);
    }
    std::fs::write(&audit, forged).expect("forge");
    let (ok, msg) = verify(&audit, &[]);
    assert!(ok, "an unkeyed chain can be rewritten undetected: {msg}");
    let (ok, msg) = verify(&audit, &["--hmac-key-file", key_arg]);
    assert!(!ok && msg.contains("line 1"), "{msg}");

    // A restart with another key refuses to continue the chain instead of mixing keys.
    std::fs::write(&audit, original).expect("restore");
    let (mut cmd, _) = gateway_command(
        &routing,
        &audit,
        &["--audit-hmac-key-file", other.to_str().expect("path")],
        &[],
    );
    let mut child = cmd.stderr(Stdio::piped()).spawn().expect("spawn gateway");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("the gateway started with a key that does not match the log");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        std::io::Read::read_to_string(&mut e, &mut err).expect("stderr");
    }
    assert!(!status.success(), "{err}");
    assert!(err.contains("does not verify with the key"), "{err}");
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_finds_records_cut_from_the_end_against_the_published_head() {
    let dir = tempfile::tempdir().expect("dir");
    let echo = TestBackend::start(Mode::Echo).await;
    let routing = routing(dir.path(), &echo.addr.to_string());
    let audit = dir.path().join("audit.jsonl");
    let log = dir.path().join("gateway.log");
    let args = ["--audit-head-interval", "200ms"];
    let (mut cmd, addr) = gateway_command(&routing, &audit, &args, &[]);
    cmd.env("RUST_LOG", "info")
        .stderr(std::fs::File::create(&log).expect("log file"));
    let gw = spawn_gateway(cmd, addr).await;
    for _ in 0..5 {
        assert_eq!(chat(&gw, Some(KEY)).await.0, 200);
    }
    let (seq, hash) = published_head(&log, 5).await;
    let m = metrics_text(&gw).await;
    assert_eq!(metric_sum(&m, "anshin_gateway_audit_head_seq", &[]), 5.0);
    drop(gw);
    let head = format!("{seq}:{hash}");

    let (ok, msg) = verify(&audit, &["--head", &head]);
    assert!(
        ok && msg.contains("reaches the published head seq 5"),
        "{msg}"
    );
    let text = std::fs::read_to_string(&audit).expect("read");
    let cut: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
    std::fs::write(&audit, cut).expect("cut the end");
    let (ok, msg) = verify(&audit, &[]);
    assert!(ok, "without a head a cut end looks intact: {msg}");
    let (ok, msg) = verify(&audit, &["--head", &head]);
    assert!(!ok, "{msg}");
    assert!(
        msg.starts_with("TRUNCATED") && msg.contains("records 4..=5"),
        "{msg}"
    );
}

/// Waits for an `audit chain head` log line at `seq`; returns its seq and hash.
async fn published_head(log: &std::path::Path, seq: u64) -> (u64, String) {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let head = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["fields"]["message"] == "audit chain head")
            .find(|l| l["fields"]["audit_head_seq"] == seq);
        if let Some(h) = head {
            let hash = h["fields"]["audit_head_hash"].as_str().expect("hash");
            return (seq, hash.to_owned());
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no head at seq {seq}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unauthenticated_flood_is_one_record_per_source_per_interval() {
    let dir = tempfile::tempdir().expect("dir");
    let echo = TestBackend::start(Mode::Echo).await;
    let routing = routing(dir.path(), &echo.addr.to_string());
    let audit = dir.path().join("audit.jsonl");
    let args = ["--audit-unauthenticated-interval", "1s"];
    let gw = start_gateway_with(&routing, &audit, &args, &[]).await;
    let flood = 200;
    for i in 0..flood {
        let key = if i % 4 == 0 { None } else { Some("sk-wrong") };
        assert_eq!(chat(&gw, key).await.0, 401);
    }
    assert_eq!(chat(&gw, Some(KEY)).await.0, 200);
    let counted = |r: &[Value]| -> u64 {
        of_kind(r, "unauthenticated")
            .iter()
            .map(|u| u["count"].as_u64().expect("count"))
            .sum()
    };
    let recs = wait_for_records(&audit, Duration::from_secs(10), |r| counted(r) == flood).await;
    let unauth = of_kind(&recs, "unauthenticated");
    assert!(
        unauth.len() <= 2,
        "{flood} refusals in at most two intervals: {unauth:?}"
    );
    for u in &unauth {
        assert_eq!(
            (&u["source"], &u["status"]),
            (&Value::from("127.0.0.1"), &Value::from(401))
        );
        assert_eq!(u["interval_ms"], 1000);
    }
    let missing: u64 = unauth
        .iter()
        .map(|u| u["outcomes"]["missing_api_key"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(missing, flood / 4);
    assert_eq!(of_kind(&recs, "request").len(), 1);
    let (ok, msg) = verify(&audit, &[]);
    assert!(ok, "{msg}");
}
