//! Helpers shared by the gateway's integration tests: real `anshin-inference serve` processes on the
//! tiny fixture model, the gateway binary with a routing file, an in-test echo/recording backend, and
//! a small async HTTP client. Every process is killed when its guard drops.
#![allow(dead_code)]

pub mod audit;
pub mod backend;
pub mod kube_objects;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};

/// A child process killed (and reaped) on drop.
pub struct Proc {
    pub child: Child,
    pub addr: SocketAddr,
    /// Where its `/metrics` is served (the gateway's own listener; the inference server's API port).
    pub metrics: SocketAddr,
    pub name: String,
}

/// The two addresses of a gateway: the API and its metrics listener.
#[derive(Clone, Copy, Debug)]
pub struct Addrs {
    pub api: SocketAddr,
    pub metrics: SocketAddr,
}

impl Proc {
    /// Kills the process now (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free loopback port (bound then released).
pub fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr")
}

/// The cargo target directory's profile folder (where `anshin-inference` is built).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// The `anshin-inference` binary; panics with what to run when it is missing.
pub fn inference_bin() -> PathBuf {
    let p = profile_dir().join("anshin-inference");
    assert!(
        p.exists(),
        "{} is missing: build it first with `cargo build -p anshin-inference` (cargo test --workspace builds it)",
        p.display()
    );
    p
}

/// The gateway binary under test.
pub fn gateway_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_anshin-gateway"))
}

/// Writes the tiny fixture model once per directory and returns its path.
pub fn fixture_model(dir: &Path) -> PathBuf {
    anshin_inference::fixture::write_hf(&dir.join("hf"), false).expect("fixture model written")
}

/// Starts `anshin-inference serve` on the fixture model and waits until it is ready.
pub async fn start_inference(model: &Path, name: &str) -> Proc {
    start_inference_with(model, name, &[]).await
}

/// [`start_inference`] requiring the backend key in `key_file` (`--api-key-file`) on its API routes.
pub async fn start_inference_with_key(model: &Path, name: &str, key_file: &Path) -> Proc {
    let flag = format!("--api-key-file={}", key_file.display());
    start_inference_with(model, name, &[&flag]).await
}

async fn start_inference_with(model: &Path, name: &str, extra_args: &[&str]) -> Proc {
    let addr = free_addr();
    let child = Command::new(inference_bin())
        .args(["serve", "--model"])
        .arg(model)
        .args([
            "--listen",
            &addr.to_string(),
            "--model-id",
            "tiny",
            "--default-max-tokens",
            "24",
            "--drain-timeout",
            "1s",
        ])
        .args(extra_args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn anshin-inference");
    let p = Proc {
        child,
        addr,
        metrics: addr,
        name: name.into(),
    };
    wait_ready(addr, "/readyz", Duration::from_secs(90)).await;
    p
}

/// Starts the gateway binary on `routing` with an audit log, and waits until it is ready.
pub async fn start_gateway(routing: &Path, audit: &Path) -> Proc {
    start_gateway_with(routing, audit, &[], &[]).await
}

/// [`start_gateway`] with extra flags and environment variables.
pub async fn start_gateway_with(
    routing: &Path,
    audit: &Path,
    extra_args: &[&str],
    env: &[(&str, &str)],
) -> Proc {
    let (cmd, addr) = gateway_command(routing, audit, extra_args, env);
    spawn_gateway(cmd, addr).await
}

/// The command [`start_gateway_with`] runs (logs on stderr only with `ANSHIN_TEST_LOGS`), and the
/// addresses the gateway will listen on; for tests that change more (limits, where stderr goes).
pub fn gateway_command(
    routing: &Path,
    audit: &Path,
    extra_args: &[&str],
    env: &[(&str, &str)],
) -> (Command, Addrs) {
    let addrs = Addrs {
        api: free_addr(),
        metrics: free_addr(),
    };
    let mut cmd = Command::new(gateway_bin());
    cmd.args(["serve", "--listen", &addrs.api.to_string()])
        .args([
            "--metrics-listen",
            &addrs.metrics.to_string(),
            "--routing-file",
        ])
        .arg(routing)
        .arg("--audit-log")
        .arg(audit)
        .args([
            "--audit-fsync",
            "never",
            "--health-interval",
            "500ms",
            "--reload-interval",
            "100ms",
            "--connect-timeout",
            "500ms",
        ])
        .args(extra_args)
        .envs(env.iter().copied())
        .env(
            "RUST_LOG",
            std::env::var("ANSHIN_TEST_LOGS").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(if std::env::var_os("ANSHIN_TEST_LOGS").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        });
    (cmd, addrs)
}

/// Spawns a gateway command that listens on `addr` and waits until it is ready.
pub async fn spawn_gateway(mut cmd: Command, addrs: Addrs) -> Proc {
    let child = cmd.spawn().expect("spawn anshin-gateway");
    let p = Proc {
        child,
        addr: addrs.api,
        metrics: addrs.metrics,
        name: "gateway".into(),
    };
    wait_ready(addrs.api, "/readyz", Duration::from_secs(60)).await;
    p
}

/// Polls `GET path` until 200, panicking after `limit`.
pub async fn wait_ready(addr: SocketAddr, path: &str, limit: Duration) {
    let start = Instant::now();
    loop {
        if let Ok(r) = get(addr, path, None).await
            && r.status == 200
        {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "{addr}{path} not ready after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Hex SHA-256 of a key (what the routing file holds).
pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A response read to the end.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Reply {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// The `data:` payloads of an SSE body.
    pub fn sse_data(&self) -> Vec<String> {
        self.body
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(str::to_owned)
            .collect()
    }

    /// The concatenated streamed text (chat deltas or completion text).
    pub fn streamed_text(&self) -> String {
        self.sse_data()
            .iter()
            .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
            .filter_map(|v| {
                let c = &v["choices"][0];
                c["delta"]["content"]
                    .as_str()
                    .or(c["text"].as_str())
                    .map(str::to_owned)
            })
            .collect()
    }
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// Sends one request with an optional bearer key and reads the whole response.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<String>,
) -> Result<Reply, String> {
    send_with_headers(addr, method, path, key, &[], body).await
}

/// [`send`] with extra request headers.
pub async fn send_with_headers(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> Result<Reply, String> {
    let mut b = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(k) = key {
        b = b.header("authorization", format!("Bearer {k}"));
    }
    for (name, value) in headers {
        b = b.header(*name, *value);
    }
    b = b.header("content-type", "application/json");
    let req = b
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(120), client().request(req))
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// `GET`.
pub async fn get(addr: SocketAddr, path: &str, key: Option<&str>) -> Result<Reply, String> {
    send(addr, "GET", path, key, None).await
}

/// `POST` a JSON body.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    key: Option<&str>,
    body: &serde_json::Value,
) -> Reply {
    send(addr, "POST", path, key, Some(body.to_string()))
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// A chat request body.
pub fn chat_body(model: &str, text: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": text}], "stream": stream,
                       "max_tokens": 12, "temperature": 0})
}

/// Writes a routing file atomically (write + rename, as editors and ConfigMap updates do).
pub fn write_routing(path: &Path, yaml: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, yaml).expect("write routing file");
    std::fs::rename(&tmp, path).expect("rename routing file");
}

/// The text of `p`'s `/metrics` (the gateway's metrics listener, the inference server's API port).
pub async fn metrics_text(p: &Proc) -> String {
    get(p.metrics, "/metrics", None)
        .await
        .expect("metrics")
        .body
}

/// Sum of a metric's samples whose line contains every `labels` fragment.
pub fn metric_sum(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
