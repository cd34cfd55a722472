//! Helpers of the audit log tests: a routing file over an in-test echo backend, reading the log's
//! records, waiting for them, running `anshin-gateway verify`, and file-size limits for a child.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Proc, gateway_bin, key_hash, post, write_routing};

/// The key of the only tenant.
pub const KEY: &str = "sk-audit-test-key";

/// Writes a routing file: tenant `hosp-a` with [`KEY`], endpoint `med` (guardrails off) on `backend`.
pub fn routing(dir: &Path, backend: &str) -> PathBuf {
    let path = dir.join("routing.yaml");
    write_routing(
        &path,
        &format!(
            "tenants:\n  - name: hosp-a\n    endpoints: ['*']\n    keys: [{{name: main, sha256: '{}'}}]\n\
             endpoints:\n  - name: med\n    guardrails: {{input: Off, output: Off}}\n    versions: [{{name: v1, weight: 1, backends: ['{backend}']}}]\n",
            key_hash(KEY)
        ),
    );
    path
}

/// One chat request to `med` with `key`; returns the status and the body.
pub async fn chat(gw: &Proc, key: Option<&str>) -> (u16, Value) {
    let body = serde_json::json!({"model": "med", "messages": [{"role": "user", "content": "血圧の薬について"}]});
    let r = post(gw.addr, "/v1/chat/completions", key, &body).await;
    let v = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    (r.status, v)
}

/// The records of one file (an unreadable line panics).
pub fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Waits until `done` holds for the records of `path`, panicking after `limit`.
pub async fn wait_for_records(
    path: &Path,
    limit: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let r = records(path);
        if done(&r) {
            return r;
        }
        assert!(
            start.elapsed() < limit,
            "audit log {} not as expected after {limit:?}: {} records",
            path.display(),
            r.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Records of `kind` in `records`.
pub fn of_kind<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["kind"] == kind).collect()
}

/// Runs `anshin-gateway verify PATH ARGS…`; returns (exit 0, stdout + stderr).
pub fn verify(path: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(gateway_bin())
        .arg("verify")
        .arg(path)
        .args(args)
        .output()
        .expect("run verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Makes `cmd`'s process start with a file-size limit of `bytes` (soft; the hard limit stays
/// unlimited so that [`lift_file_size_limit`] can raise it). Nothing else is changed: in
/// particular SIGXFSZ keeps its default action, which kills a process that does not ignore it.
pub fn limit_file_size(cmd: &mut Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit is async-signal-safe and touches only the child's own limits.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// Removes the file-size limit of a running process (a disk that has room again).
pub fn lift_file_size_limit(p: &Proc) {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    let pid = p.child.id() as libc::pid_t;
    // SAFETY: prlimit on a child we own; the pointers are valid for the call.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &unlimited, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// Fails the test with the child's exit status when it is no longer running.
pub fn assert_running(p: &mut Proc) {
    if let Ok(Some(status)) = p.child.try_wait() {
        panic!("the gateway exited: {status}");
    }
}
