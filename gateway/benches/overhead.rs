//! Gateway overhead benchmark (not a test; prints one JSON object). The same echo backend is called
//! directly, through nginx (Debian package) as a plain reverse proxy, and through the gateway with
//! guardrails off and on; each proxy is pinned to core 1 (`taskset -c 1`), the benchmark process (load
//! generator and echo backend, one client with pooled keep-alive connections for every path) to core 0.
//! Phase 1: a fixed request rate, latency p50/p99 and the added latency against direct; the paths take
//! turns in one-second slices (direct, nginx, off, on, direct, …), so that whatever else the machine
//! runs meanwhile falls on all of them alike. Phase 2: closed-loop max throughput. The prompt carries a
//! patient's name, address and My Number, so "guardrails on" does real detection, redaction and
//! restoration.
//!
//! `cargo bench --profile production -p anshin-gateway --bench overhead` measures the gateway as it
//! ships (the `production` profile of the workspace `Cargo.toml`); without `--profile` it measures the
//! plain `release` build. Environment: BENCH_RATE req/s, default 200; BENCH_SECS seconds per path and
//! phase, default 5; BENCH_CONCURRENCY for phase 2, default 32; BENCH_GATEWAY_BIN another gateway
//! binary; BENCH_PATHS a comma-separated subset of `nginx,gateway_guardrails_off,gateway_guardrails_on`
//! to run, e.g. to profile one path alone (`direct` always runs, as the others' added latency is
//! measured against it).

#[allow(dead_code)]
#[path = "../tests/common/backend.rs"]
mod backend;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backend::{Mode, TestBackend};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const KEY: &str = "sk-bench-key";
const PROMPT: &str = "患者の山田太郎さん（住所：東京都千代田区千代田1-1、マイナンバー：123456789018）は三日前から発熱と咳嗽があり、\
既往歴に高血圧症。アムロジピン内服中。血液検査ではCRP 8.2 mg/dL。今後の検査と治療方針について教えてください。";

/// A child stopped on drop: SIGTERM first (nginx's master then stops its workers; SIGKILL would orphan
/// them), SIGKILL if it is still there after two seconds.
struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

fn pinned(core: &str, program: &Path) -> Command {
    let mut c = Command::new("taskset");
    c.args(["-c", core]).arg(program);
    c
}

async fn wait_up(client: &HttpClient, addr: SocketAddr, path: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        let req = http::Request::get(format!("http://{addr}{path}"))
            .body(Full::new(Bytes::new()))
            .expect("req");
        if let Ok(r) = client.request(req).await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{addr}{path} did not come up");
}

fn start_nginx(dir: &Path, backend: SocketAddr) -> (Killed, SocketAddr) {
    let addr = free_addr();
    let conf = format!(
        "worker_processes 1; daemon off; pid {d}/nginx.pid; error_log {d}/nginx.err warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{ access_log off; client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};\n\
           upstream b {{ server {backend}; keepalive 128; }}\n\
           server {{ listen {addr}; location / {{ proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }} }}\n",
        d = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).expect("write nginx.conf");
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    let nginx = nginx.expect("nginx is not installed: run scripts/setup.d/40-gateway.sh");
    let child = pinned("1", &nginx)
        .arg("-c")
        .arg(&path)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nginx");
    (Killed(child), addr)
}

/// The gateway binary under test: the one this benchmark was built with (its profile, e.g.
/// `production`, shows in the path), or another build (an older commit's) from BENCH_GATEWAY_BIN.
fn gateway_bin() -> PathBuf {
    std::env::var_os("BENCH_GATEWAY_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_anshin-gateway")),
        PathBuf::from,
    )
}

/// Starts the gateway; returns it, its API address and its metrics address (passed in the environment,
/// which older builds and `bare_proxy` ignore: their metrics then read as NaN).
fn start_gateway(dir: &Path, backend: SocketAddr) -> (Killed, SocketAddr, SocketAddr) {
    let addr = free_addr();
    let metrics = free_addr();
    let hash = hex::encode(Sha256::digest(KEY.as_bytes()));
    let routing = format!(
        "tenants: [{{name: bench, endpoints: ['*'], keys: [{{name: k, sha256: '{hash}'}}]}}]\n\
         endpoints:\n  - {{name: med-on, guardrails: {{input: Redact, output: Redact}}, versions: [{{name: v1, weight: 1, backends: ['{backend}']}}]}}\n\
         \x20 - {{name: med-off, guardrails: {{input: Off, output: Off}}, versions: [{{name: v1, weight: 1, backends: ['{backend}']}}]}}\n"
    );
    let path = dir.join("routing.yaml");
    std::fs::write(&path, routing).expect("routing");
    let child = pinned("1", &gateway_bin())
        .args(["serve", "--listen", &addr.to_string(), "--routing-file"])
        .arg(&path)
        .arg("--audit-log")
        .arg(dir.join("audit.jsonl"))
        .args(["--audit-fsync", "1s"])
        .env("RUST_LOG", "warn")
        .env("ANSHIN_GATEWAY_METRICS_LISTEN", metrics.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gateway");
    (Killed(child), addr, metrics)
}

fn body(model: &str) -> Bytes {
    Bytes::from(json!({"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 64}).to_string())
}

async fn one(client: &HttpClient, addr: SocketAddr, body: Bytes) -> Option<Duration> {
    let t = Instant::now();
    let req = http::Request::post(format!("http://{addr}/v1/chat/completions"))
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", "application/json")
        .body(Full::new(body))
        .ok()?;
    let r = client.request(req).await.ok()?;
    let ok = r.status().is_success();
    r.into_body().collect().await.ok()?;
    ok.then(|| t.elapsed())
}

/// CPU time in nanoseconds used so far by `pid`'s threads and its child processes' (nginx's worker),
/// from `/proc/*/task/*/schedstat`: what a request costs the proxy, whatever else runs on the machine.
fn cpu_ns(pid: u32) -> u64 {
    let mut pids = vec![pid];
    if let Ok(c) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        pids.extend(c.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    let mut total = 0;
    for p in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let stat = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            total += stat
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// One path's fixed-rate measurements, gathered over one-second slices.
#[derive(Clone, Default)]
struct Phase {
    lat: Vec<f64>,
    errors: u64,
    cpu_ns: u64,
}

impl Phase {
    /// One second at `rate` against `addr`, adding latencies, errors and the proxy's CPU time.
    async fn slice(
        &mut self,
        client: &HttpClient,
        addr: SocketAddr,
        body: Bytes,
        rate: u64,
        pid: Option<u32>,
    ) {
        let cpu0 = pid.map(cpu_ns);
        let (lat, errors) = fixed_rate(client, addr, body, rate, 1).await;
        if let Some((p, c0)) = pid.zip(cpu0) {
            self.cpu_ns += cpu_ns(p).saturating_sub(c0);
        }
        self.lat.extend(lat);
        self.errors += errors;
    }
}

/// The gateway's guardrail time so far (`anshin_gateway_guardrail_seconds_sum`), in seconds, for
/// input and output, from one read of its `/metrics` (NaN where it cannot be read).
async fn guardrail_seconds(client: &HttpClient, gw: SocketAddr) -> (f64, f64) {
    let text = get_text(client, &format!("http://{gw}/metrics"))
        .await
        .unwrap_or_default();
    let sum = |direction: &str| {
        let prefix = format!("anshin_gateway_guardrail_seconds_sum{{direction=\"{direction}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::NAN)
    };
    (sum("input"), sum("output"))
}

/// The body of `GET url`, if it can be read.
async fn get_text(client: &HttpClient, url: &str) -> Option<String> {
    let req = http::Request::get(url).body(Full::new(Bytes::new())).ok()?;
    let body = client
        .request(req)
        .await
        .ok()?
        .into_body()
        .collect()
        .await
        .ok()?;
    Some(String::from_utf8_lossy(&body.to_bytes()).into_owned())
}

/// Fixed-rate phase: latencies in microseconds (sorted) and errors.
async fn fixed_rate(
    client: &HttpClient,
    addr: SocketAddr,
    body: Bytes,
    rate: u64,
    secs: u64,
) -> (Vec<f64>, u64) {
    let n = rate * secs;
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(n as usize);
    for i in 0..n {
        tokio::time::sleep_until(start + gap * i as u32).await;
        let (c, b) = (client.clone(), body.clone());
        tasks.push(tokio::spawn(async move { one(&c, addr, b).await }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        match t.await.ok().flatten() {
            Some(d) => lat.push(d.as_secs_f64() * 1e6),
            None => errors += 1,
        }
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    (lat, errors)
}

/// Closed-loop phase: completed requests per second.
async fn max_throughput(
    client: &HttpClient,
    addr: SocketAddr,
    body: Bytes,
    conc: u64,
    secs: u64,
) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(secs);
    let workers: Vec<_> = (0..conc)
        .map(|_| {
            let (c, b, done) = (client.clone(), body.clone(), done.clone());
            tokio::spawn(async move {
                while Instant::now() < end {
                    if one(&c, addr, b.clone()).await.is_some() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    done.load(Ordering::Relaxed) as f64 / secs as f64
}

/// Pins this process (every thread, including those started later) to `core`, so that the load
/// generator and the echo backend never take the core the proxy under test runs on.
fn pin_self(core: &str) {
    let ok = Command::new("taskset")
        .args(["-a", "-p", "-c", core, &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "taskset could not pin the benchmark to core {core}");
}

fn main() {
    pin_self("0");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let result = rt.block_on(run());
    println!("{}", serde_json::to_string_pretty(&result).expect("json"));
}

async fn run() -> Value {
    let (rate, secs, conc) = (
        env_u64("BENCH_RATE", 200),
        env_u64("BENCH_SECS", 5),
        env_u64("BENCH_CONCURRENCY", 32),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = TestBackend::start(Mode::Echo).await;
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build(HttpConnector::new());
    let (nginx_proc, nginx) = start_nginx(dir.path(), backend.addr);
    let (gw_proc, gw, gw_metrics) = start_gateway(dir.path(), backend.addr);
    wait_up(&client, nginx, "/readyz").await;
    wait_up(&client, gw, "/readyz").await;
    let (nginx_pid, gw_pid) = (nginx_proc.0.id(), gw_proc.0.id());
    let mut targets = vec![
        ("direct", backend.addr, "med-on", None),
        ("nginx", nginx, "med-on", Some(nginx_pid)),
        ("gateway_guardrails_off", gw, "med-off", Some(gw_pid)),
        ("gateway_guardrails_on", gw, "med-on", Some(gw_pid)),
    ];
    if let Ok(paths) = std::env::var("BENCH_PATHS") {
        let wanted: Vec<&str> = paths.split(',').map(str::trim).collect();
        targets.retain(|(name, ..)| *name == "direct" || wanted.contains(name));
    }
    for &(_, addr, model, _) in &targets {
        for _ in 0..50 {
            let _ = one(&client, addr, body(model)).await;
        }
    }
    let mut phases = vec![Phase::default(); targets.len()];
    let guard0 = guardrail_seconds(&client, gw_metrics).await;
    for _ in 0..secs {
        for ((_, addr, model, pid), phase) in targets.iter().zip(&mut phases) {
            phase.slice(&client, *addr, body(model), rate, *pid).await;
        }
    }
    // Detection time per guarded request, from the gateway's own histogram; the off path's requests
    // add only their (near-zero) policy check to the input sum.
    let guarded = targets
        .iter()
        .zip(&phases)
        .find(|((name, ..), _)| *name == "gateway_guardrails_on")
        .map_or(0, |(_, p)| p.lat.len())
        .max(1) as f64;
    let per_request = |after: f64, before: f64| ((after - before) * 1e6 / guarded).round();
    let guard1 = guardrail_seconds(&client, gw_metrics).await;
    let guard_us = json!({
        "input": per_request(guard1.0, guard0.0),
        "output": per_request(guard1.1, guard0.1),
    });
    let mut out = serde_json::Map::new();
    let mut direct = (0.0, 0.0);
    for ((name, addr, model, pid), mut phase) in targets.into_iter().zip(phases) {
        phase.lat.sort_by(|a, b| a.total_cmp(b));
        let lat = &phase.lat;
        let cpu_us = pid.map(|_| (phase.cpu_ns as f64 / 1e3 / lat.len().max(1) as f64).round());
        let (p50, p99) = (pct(lat, 0.5), pct(lat, 0.99));
        if name == "direct" {
            direct = (p50, p99);
        }
        let rps = max_throughput(&client, addr, body(model), conc, secs).await;
        // The echo backend records every body; keep that from growing across paths.
        backend.received.lock().expect("lock").clear();
        out.insert(name.into(), json!({"p50_us": p50.round(), "p99_us": p99.round(), "added_p50_us": (p50 - direct.0).round(),
            "added_p99_us": (p99 - direct.1).round(), "errors": phase.errors, "requests": lat.len(), "max_rps": rps.round(), "proxy_cpu_us_per_request": cpu_us}));
    }
    json!({"benchmark": "anshin-gateway overhead", "rate_rps": rate, "seconds_per_phase": secs, "concurrency": conc,
           "proxy_cores": 1, "prompt_chars": PROMPT.chars().count(), "results": out, "gateway_bin": gateway_bin(),
           "gateway_guardrail_us_per_guarded_request": guard_us,
           "note": "paths interleaved in 1 s slices; each proxy pinned to core 1 (taskset); load generator and echo backend pinned to core 0 in this process; 2-core machine shared with other jobs"})
}
