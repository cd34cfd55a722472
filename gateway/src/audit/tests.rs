//! The audit log as the gateway uses it: a file sink, the writer thread, rotation, restarts and
//! unauthenticated counts, end to end through [`AuditLog`].

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::*;

fn config(path: &Path) -> AuditConfig {
    AuditConfig {
        sink: Sink::File(path.to_owned()),
        ..AuditConfig::default()
    }
}

fn request(i: usize) -> Event {
    Event {
        request_id: format!("req-{i}"),
        tenant: Some("hosp-a".into()),
        status: 200,
        outcome: "ok".into(),
        ..Event::default()
    }
}

/// Starts a log, records `n` requests, flushes it and drops it.
fn run(config: AuditConfig, from: usize, n: usize) {
    let log = AuditLog::start(config, AuditMetrics::default()).expect("start");
    for i in from..from + n {
        log.record(request(i), None);
    }
    assert!(log.flush(Duration::from_secs(5)), "flushed");
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn verified(path: &Path) -> Verified {
    verify_log(path, &VerifyOptions::default()).unwrap_or_else(|e| panic!("broken: {e}"))
}

#[test]
fn the_chain_continues_across_restarts() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("audit.jsonl");
    run(config(&path), 0, 3);
    run(config(&path), 3, 2);
    let v = verified(&path);
    assert_eq!((v.records, v.first_seq, v.last.seq, v.files), (5, 1, 5, 1));
    let l = lines(&path);
    assert_eq!(l[3]["request_id"], "req-3");
    assert_eq!(l[3]["prev_hash"], l[2]["hash"]);
    assert_eq!(l[3]["kind"], "request");
}

#[test]
fn a_torn_last_line_is_cut_and_a_recovered_record_follows() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("audit.jsonl");
    run(config(&path), 0, 2);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open");
    std::io::Write::write_all(&mut f, b"{\"seq\":3,\"prev_hash\":\"ab").expect("tear");
    run(config(&path), 2, 1);
    assert_eq!(verified(&path).records, 4);
    let l = lines(&path);
    assert_eq!(l[2]["kind"], "recovered");
    assert_eq!(l[2]["dropped_bytes"], 24);
    assert_eq!(l[3]["request_id"], "req-2");
}

#[test]
fn rotation_carries_the_previous_hash_into_the_new_file() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("audit.jsonl");
    let max = 1500;
    run(
        AuditConfig {
            max_bytes: max,
            ..config(&path)
        },
        0,
        20,
    );
    let mut files: Vec<_> = rotated_files(&path)
        .expect("list")
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert!(files.len() >= 2, "rotated {} times", files.len());
    files.push(path.clone());
    let mut prev: Option<Value> = None;
    for f in &files {
        assert!(std::fs::metadata(f).expect("size").len() <= max);
        let l = lines(f);
        if let Some(p) = &prev {
            assert_eq!(l[0]["prev_hash"], p["hash"], "{} chains on", f.display());
            assert_eq!(l[0]["seq"].as_u64(), p["seq"].as_u64().map(|s| s + 1));
        }
        prev = l.last().cloned();
    }
    let v = verified(&path);
    assert_eq!((v.records, v.files), (20, files.len()));
}

#[test]
fn keep_deletes_the_oldest_rotated_files_and_a_restart_continues_after_rotation() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("audit.jsonl");
    let c = AuditConfig {
        max_bytes: 1000,
        keep: 2,
        ..config(&path)
    };
    run(c.clone(), 0, 20);
    let numbers: Vec<u64> = rotated_files(&path)
        .expect("list")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(numbers.len(), 2, "{numbers:?}");
    // A crash right after a rotation leaves no current file: the chain goes on from the newest
    // rotated one.
    let last = *numbers.last().expect("newest");
    std::fs::rename(&path, rotated_name(&path, last + 1)).expect("rotate by hand");
    run(c, 20, 1);
    let pruned = VerifyOptions {
        allow_pruned: true,
        ..VerifyOptions::default()
    };
    let v = verify_log(&path, &pruned).unwrap_or_else(|e| panic!("broken: {e}"));
    assert_eq!(v.last.seq, 21);
    assert!(verify_log(&path, &VerifyOptions::default()).is_err());
}

#[test]
fn unauthenticated_requests_become_one_record_per_source_and_status() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::start(config(&path), AuditMetrics::default()).expect("start");
    let a = "192.0.2.1".parse().ok();
    let b = "2001:db8:5:6::9".parse().ok();
    for i in 0..50 {
        let outcome = if i % 5 == 0 {
            "missing_api_key"
        } else {
            "invalid_api_key"
        };
        let ev = Event {
            status: 401,
            outcome: outcome.into(),
            ..Event::default()
        };
        log.record(ev, if i < 40 { a } else { b });
    }
    log.record(request(0), a);
    assert!(log.flush(Duration::from_secs(5)));
    let l = lines(&path);
    assert_eq!(l.len(), 3, "{l:?}");
    assert_eq!(l[0]["kind"], "request");
    assert_eq!(
        (
            &l[1]["kind"],
            &l[1]["source"],
            &l[1]["status"],
            &l[1]["count"]
        ),
        (
            &Value::from("unauthenticated"),
            &Value::from("192.0.2.1"),
            &Value::from(401),
            &Value::from(40)
        )
    );
    assert_eq!(l[1]["outcomes"]["missing_api_key"], 8);
    assert_eq!(l[2]["source"], "2001:db8:5:6::/64");
    assert_eq!(l[2]["count"], 10);
}

/// A medium whose first write waits until the test lets it go: the writer is stuck, as on a slow disk.
struct Stuck {
    entered: Option<mpsc::SyncSender<()>>,
    release: mpsc::Receiver<()>,
    data: Arc<Mutex<Vec<u8>>>,
}

impl Medium for Stuck {
    fn room(&self) -> Option<u64> {
        None
    }
    fn fresh(&self) -> bool {
        false
    }
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if let Some(entered) = self.entered.take() {
            let _ = entered.send(());
            let _ = self.release.recv();
        }
        self.data.lock().expect("lock").extend_from_slice(bytes);
        Ok(())
    }
    fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    fn rotate(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_full_queue_refuses_requests_loses_records_visibly_and_recovers() {
    let (entered_tx, entered) = mpsc::sync_channel(1);
    let (release, release_rx) = mpsc::sync_channel(1);
    let data = Arc::new(Mutex::new(Vec::new()));
    let medium = Stuck {
        entered: Some(entered_tx),
        release: release_rx,
        data: data.clone(),
    };
    let config = AuditConfig {
        queue_capacity: 2,
        ..AuditConfig::default()
    };
    let metrics = AuditMetrics::default();
    let log = AuditLog::launch(
        config,
        metrics.clone(),
        Box::new(medium),
        Position::genesis(),
        None,
    )
    .expect("start");
    log.record(request(0), None);
    entered
        .recv_timeout(Duration::from_secs(5))
        .expect("the writer is writing");
    assert!(!log.refuses_requests());
    for i in 1..6 {
        log.record(request(i), None);
    }
    assert!(
        log.refuses_requests(),
        "a full queue refuses requests (reject)"
    );
    assert_eq!(
        metrics.lost.get(),
        3,
        "two fit in the queue, three are lost"
    );
    assert_eq!(metrics.writable.get(), 0);
    release.send(()).expect("release");
    assert!(log.flush(Duration::from_secs(5)));
    assert!(
        !log.refuses_requests(),
        "served again once the writer caught up"
    );
    let data = data.lock().expect("lock").clone();
    let v = verify(&data[..], &VerifyOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v.records, 4, "three requests and one `lost` record");
    let text = String::from_utf8(data).expect("utf-8");
    assert!(
        text.contains("\"kind\":\"lost\"") && text.contains("\"count\":3"),
        "{text}"
    );
}
