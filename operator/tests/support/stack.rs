//! The whole stack as a user runs it, for the end-to-end tests under load: operator and gateway as
//! real processes on the local cluster, and a client that counts every request it sends.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anshin_crds::{InferenceEndpoint, Tenant};
use anshin_e2e::fixture::eventually;
use anshin_e2e::process::ManagedProcess;
use anshin_operator::names;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::json;

/// A project binary next to the test executable (built by `cargo build --workspace`).
pub fn bin(name: &str) -> PathBuf {
    let dir = anshin_e2e::cluster::project_bin_dir().expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace` (or the whole test suite)",
        path.display()
    );
    path
}

/// An operator process with identity `name` and a `lease_seconds` leader lease in `ns`, serving its
/// metrics and health on `port`; `models` is the directory its `file://` models may be under.
pub fn start_operator(
    ns: &str,
    kubeconfig: &Path,
    models: &Path,
    log: &Path,
    name: &str,
    lease_seconds: u32,
    port: u16,
) -> ManagedProcess {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anshin-operator"));
    cmd.env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "info")
        .args(["--identity", name, "--lease-namespace", ns])
        .arg(format!("--lease-seconds={lease_seconds}"))
        .arg(format!("--allow-host-path={}", models.display()))
        .arg(format!("--listen=127.0.0.1:{port}"));
    ManagedProcess::spawn(name, &mut cmd, log).expect("operator starts")
}

/// A gateway serving `ns` from the Kubernetes API on `port`, metrics on `metrics_port`.
pub fn start_gateway(
    ns: &str,
    kubeconfig: &Path,
    dir: &Path,
    port: u16,
    metrics_port: u16,
) -> ManagedProcess {
    let mut cmd = Command::new(bin("anshin-gateway"));
    cmd.env("KUBECONFIG", kubeconfig)
        .args(["serve", "--kube", "--kube-namespace", ns])
        .args([
            format!("--listen=127.0.0.1:{port}"),
            format!("--metrics-listen=127.0.0.1:{metrics_port}"),
            format!("--audit-log={}", dir.join("audit.jsonl").display()),
            "--audit-fsync=never".into(),
            "--health-interval=500ms".into(),
        ]);
    ManagedProcess::spawn("gateway", &mut cmd, &dir.join("gateway.log")).expect("gateway starts")
}

/// Creates the object described by `value`.
pub async fn create<K>(api: &Api<K>, value: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(value).expect("object");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("create");
}

/// Chat requests from several workers until `stop` or a bound, counting successes and failures (and
/// the order in which versions answered), as an independent client would.
#[derive(Default)]
pub struct Load {
    /// Answers with a 2xx status and a complete body.
    pub ok: AtomicUsize,
    /// Everything else: error statuses, connection errors, timeouts, broken bodies.
    pub failed: AtomicUsize,
    /// Model versions in the order they answered (consecutive repeats collapsed).
    pub versions: std::sync::Mutex<Vec<String>>,
    /// Set to stop the workers.
    pub stop: AtomicBool,
}

impl Load {
    /// Requests sent so far.
    pub fn sent(&self) -> usize {
        self.ok.load(Ordering::SeqCst) + self.failed.load(Ordering::SeqCst)
    }

    /// Failed requests so far.
    pub fn failed(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }

    /// Successful requests so far.
    pub fn ok(&self) -> usize {
        self.ok.load(Ordering::SeqCst)
    }
}

/// How one worker sends: to `url` with `key`, at most `max_requests` in all workers together, until
/// `deadline`, pausing `pause` after each answer.
#[derive(Clone)]
pub struct Pace {
    /// The gateway's chat completions URL.
    pub url: String,
    /// The tenant's API key.
    pub key: String,
    /// Bound on the requests of all workers together.
    pub max_requests: usize,
    /// No request starts after this instant.
    pub deadline: Instant,
    /// Pause after each answer (zero: as fast as answers come).
    pub pause: Duration,
}

/// One worker of `load`.
pub async fn worker(load: Arc<Load>, pace: Pace) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "患者の血圧について"}], "max_tokens": 4});
    while !load.stop.load(Ordering::SeqCst) && Instant::now() < pace.deadline {
        if load.sent() >= pace.max_requests {
            break;
        }
        let answer = client
            .post(&pace.url)
            .bearer_auth(&pace.key)
            .json(&body)
            .send()
            .await;
        match answer {
            Ok(r) if r.status().is_success() => {
                let version = r
                    .headers()
                    .get("x-anshin-model-version")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                if r.bytes().await.is_ok() {
                    load.ok.fetch_add(1, Ordering::SeqCst);
                    let mut seen = load.versions.lock().expect("lock");
                    if seen.last() != Some(&version) {
                        seen.push(version);
                    }
                } else {
                    load.failed.fetch_add(1, Ordering::SeqCst);
                }
            }
            other => {
                eprintln!("failed request: {:?}", other.map(|r| r.status()));
                load.failed.fetch_add(1, Ordering::SeqCst);
            }
        }
        if !pace.pause.is_zero() {
            tokio::time::sleep(pace.pause).await;
        }
    }
}

/// The Tenant `toto` with key `ehr` and the InferenceEndpoint `chat` serving `tiny-v1` on two replicas,
/// in `ns`; returns the tenant's key once the operator has minted it.
pub async fn chat_endpoint_with_tenant(client: &kube::Client, ns: &str) -> String {
    let tenants: Api<Tenant> = Api::namespaced(client.clone(), ns);
    create(&tenants, json!({"apiVersion": "anshin.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "toto"},
        "spec": {"displayName": "東都病院", "endpoints": ["chat"], "keys": [{"name": "ehr"}],
                 "limits": {"requestsPerMinute": 100000, "tokensPerMinute": 10000000, "maxConcurrent": 64}}})).await;
    let ies: Api<InferenceEndpoint> = Api::namespaced(client.clone(), ns);
    create(&ies, json!({"apiVersion": "anshin.dev/v1alpha1", "kind": "InferenceEndpoint", "metadata": {"name": "chat"},
        "spec": {"modelVersion": "tiny-v1", "replicas": {"min": 2}, "runtime": {"drainTimeoutSeconds": 2}}})).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    eventually("the tenant key", Duration::from_secs(30), || async {
        let s = secrets.get_opt("toto-key-ehr").await.ok()??;
        String::from_utf8(s.data?.get(names::SECRET_KEY_FIELD)?.0.clone()).ok()
    })
    .await
}
