//! The audit log when things go wrong, against the real gateway binary: a full disk (the gateway
//! runs with a small file-size limit, which fails writes with EFBIG), a write torn by a crash, and
//! restarts after rotation. Nothing may be served unaudited with `reject`, nothing lost silently with
//! `continue`, and the chain must verify afterwards.

mod common;

use std::time::Duration;

use common::audit::*;
use common::backend::{Mode, TestBackend};
use common::*;

/// File-size limit of the "disk" in the full-disk tests: a few dozen records.
const DISK: u64 = 16 * 1024;

async fn metric(gw: &Proc, name: &str) -> f64 {
    let m = metrics_text(gw).await;
    metric_sum(&m, name, &[])
}

async fn readyz(gw: &Proc) -> (u16, String) {
    let r = get(gw.addr, "/readyz", None).await.expect("readyz");
    (r.status, r.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reject_mode_answers_503_while_the_disk_is_full_and_recovers_without_losing_a_record() {
    let dir = tempfile::tempdir().expect("dir");
    let echo = TestBackend::start(Mode::Echo).await;
    let routing = routing(dir.path(), &echo.addr.to_string());
    let audit = dir.path().join("audit.jsonl");
    let (mut cmd, addr) = gateway_command(&routing, &audit, &[], &[]);
    limit_file_size(&mut cmd, DISK);
    let mut gw = spawn_gateway(cmd, addr).await;

    let mut served = 0;
    let mut refused = None;
    for _ in 0..400 {
        let (status, body) = chat(&gw, Some(KEY)).await;
        match status {
            200 => served += 1,
            503 => {
                refused = Some(body);
                break;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_running(&mut gw);
    let body = refused.expect("requests are refused once records cannot be written");
    assert!(served > 0);
    assert_eq!(body["error"]["code"], "service_unavailable");
    assert_eq!(
        body["error"]["message"],
        anshin_gateway::UNAVAILABLE_MESSAGE
    );
    assert_eq!(chat(&gw, Some(KEY)).await.0, 503, "still refused");
    let (status, text) = readyz(&gw).await;
    assert_eq!(
        (status, text.as_str()),
        (503, "audit records cannot be persisted")
    );
    assert!(metric(&gw, "anshin_gateway_audit_write_errors_total").await >= 1.0);
    assert_eq!(metric(&gw, "anshin_gateway_audit_writable").await, 0.0);
    assert!(metric(&gw, "anshin_gateway_audit_refused_requests_total").await >= 2.0);

    lift_file_size_limit(&gw);
    wait_ready(gw.addr, "/readyz", Duration::from_secs(10)).await;
    for _ in 0..3 {
        assert_eq!(chat(&gw, Some(KEY)).await.0, 200);
        served += 1;
    }
    let recs = wait_for_records(&audit, Duration::from_secs(10), |r| {
        of_kind(r, "request").len() >= served
    })
    .await;
    assert_eq!(
        of_kind(&recs, "request").len(),
        served,
        "one record per served request: none lost, none unaudited"
    );
    assert!(of_kind(&recs, "lost").is_empty());
    let (ok, msg) = verify(&audit, &[]);
    assert!(ok, "{msg}");
    assert!(msg.contains(&format!("OK: {served} records")), "{msg}");
    assert_eq!(
        metric(&gw, "anshin_gateway_audit_records_lost_total").await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn continue_mode_serves_through_a_full_disk_and_records_how_many_records_were_lost() {
    let dir = tempfile::tempdir().expect("dir");
    let echo = TestBackend::start(Mode::Echo).await;
    let routing = routing(dir.path(), &echo.addr.to_string());
    let audit = dir.path().join("audit.jsonl");
    let args = [
        "--audit-on-failure",
        "continue",
        "--audit-queue-capacity",
        "4",
    ];
    let (mut cmd, addr) = gateway_command(&routing, &audit, &args, &[]);
    limit_file_size(&mut cmd, DISK);
    let mut gw = spawn_gateway(cmd, addr).await;

    let n = 120;
    for _ in 0..n {
        let (status, body) = chat(&gw, Some(KEY)).await;
        assert_eq!(status, 200, "served while the disk is full: {body}");
    }
    assert_running(&mut gw);
    assert_eq!(readyz(&gw).await.0, 200, "continue keeps the gateway ready");
    assert!(metric(&gw, "anshin_gateway_audit_write_errors_total").await >= 1.0);
    let lost = metric(&gw, "anshin_gateway_audit_records_lost_total").await;
    assert!(
        lost >= 1.0,
        "records beyond the retry buffer are lost: {lost}"
    );

    lift_file_size_limit(&gw);
    let reported = |r: &[serde_json::Value]| -> u64 {
        of_kind(r, "lost")
            .iter()
            .map(|l| l["count"].as_u64().expect("count"))
            .sum()
    };
    // Every loss is reported, possibly over more than one `lost` record.
    let recs = wait_for_records(&audit, Duration::from_secs(10), |r| {
        reported(r) as f64 == lost
    })
    .await;
    let reported = reported(&recs);
    assert_eq!(of_kind(&recs, "request").len() as u64 + reported, n);
    let (ok, msg) = verify(&audit, &[]);
    assert!(ok, "the chain has no gap where records were lost: {msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_torn_last_line_is_cut_at_start_and_a_recovered_record_continues_the_chain() {
    let dir = tempfile::tempdir().expect("dir");
    let echo = TestBackend::start(Mode::Echo).await;
    let routing = routing(dir.path(), &echo.addr.to_string());
    let audit = dir.path().join("audit.jsonl");
    let mut gw = start_gateway(&routing, &audit).await;
    for _ in 0..2 {
        assert_eq!(chat(&gw, Some(KEY)).await.0, 200);
    }
    wait_for_records(&audit, Duration::from_secs(10), |r| r.len() == 2).await;
    gw.kill();
    let torn = b"{\"seq\":3,\"prev_hash\":\"0f1e";
    let mut text = std::fs::read(&audit).expect("read");
    text.extend_from_slice(torn);
    std::fs::write(&audit, &text).expect("tear the last line");

    let gw = start_gateway(&routing, &audit).await;
    assert_eq!(chat(&gw, Some(KEY)).await.0, 200);
    let recs = wait_for_records(&audit, Duration::from_secs(10), |r| r.len() == 4).await;
    assert_eq!(recs[2]["kind"], "recovered");
    assert_eq!(recs[2]["seq"], 3);
    assert_eq!(recs[2]["dropped_bytes"], torn.len());
    assert_eq!(recs[3]["kind"], "request");
    let (ok, msg) = verify(&audit, &[]);
    assert!(ok && msg.contains("OK: 4 records"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotated_files_and_restarts_form_one_chain() {
    let dir = tempfile::tempdir().expect("dir");
    let echo = TestBackend::start(Mode::Echo).await;
    let routing = routing(dir.path(), &echo.addr.to_string());
    let audit = dir.path().join("audit.jsonl");
    let args = ["--audit-max-bytes", "2K"];
    let mut gw = start_gateway_with(&routing, &audit, &args, &[]).await;
    for _ in 0..12 {
        assert_eq!(chat(&gw, Some(KEY)).await.0, 200);
    }
    wait_verified(&audit, "OK: 12 records (seq 1..12)").await;
    gw.kill();
    let gw = start_gateway_with(&routing, &audit, &args, &[]).await;
    for _ in 0..3 {
        assert_eq!(chat(&gw, Some(KEY)).await.0, 200);
    }
    wait_verified(&audit, "OK: 15 records (seq 1..15)").await;
    let rotated = |n: u64| audit.with_file_name(format!("audit.jsonl.{n}"));
    let first = records(&rotated(2));
    let before = records(&rotated(1));
    let last = before.last().expect("rotated file 1 has records");
    assert_eq!(first[0]["prev_hash"], last["hash"]);
    assert_eq!(
        first[0]["seq"].as_u64(),
        last["seq"].as_u64().map(|s| s + 1)
    );
    let mut n = 1;
    while let Ok(m) = std::fs::metadata(rotated(n)) {
        assert!(m.len() <= 2048, "rotated file {n} has {} bytes", m.len());
        n += 1;
    }
    assert!(n > 3, "rotated {} times", n - 1);
}

/// Runs `verify` until its output contains `want`, for at most 10 s.
async fn wait_verified(audit: &std::path::Path, want: &str) {
    let start = std::time::Instant::now();
    loop {
        let (ok, msg) = verify(audit, &[]);
        if ok && msg.contains(want) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "want {want}: {msg}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
