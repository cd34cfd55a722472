//! The routing table from the Kubernetes API: reflectors (list + watch) over InferenceEndpoints,
//! Tenants, tenant key Secrets (label `anshin.dev/tenant`), endpoint backend key Secrets (label
//! `anshin.dev/backend-key-of`) and Pods, in one namespace or all. Every event
//! wakes a rebuild of the whole snapshot with the pure [`crate::kube_table::build`] (coalesced: at
//! most one rebuild per 100 ms), so the request path is the same as with the file source. Pods are
//! watched directly (readiness from their `Ready` condition) so it works on every Kubernetes version
//! and without kube-proxy.
//!
//! Static stability: the reflectors keep their last state while the API server is down, so the table
//! stays as it was; a rebuilt snapshot passes through [`crate::last_good::keep_last_good`], so an
//! endpoint whose backends the control plane all reports unready keeps those that still pass the
//! gateway's checks. A ticker ([`watch_health`]) publishes each watch's age and whether the API server
//! answers (`anshin_gateway_kube_watch_age_seconds`, `anshin_gateway_kube_api_unreachable_seconds`,
//! `/readyz` detail) and re-evaluates held backends every second.

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anshin_crds::{InferenceEndpoint, Tenant};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use crate::kube_table::{build, present_pod_ips};
use crate::last_good::{BackendFacts, held_backends, keep_last_good};
use crate::metrics::Metrics;
use crate::routing::Backends;
use crate::table::{Peer, SharedTable, Snapshot};
use anshin_crds::labels::{LABEL_BACKEND_KEY, LABEL_TENANT};

/// Why the Kubernetes source could not start.
#[derive(Debug, thiserror::Error)]
pub enum KubeSourceError {
    /// No kubeconfig or in-cluster configuration.
    #[error("connecting to the Kubernetes API (set KUBECONFIG or run in a pod): {0}")]
    Client(#[source] kube::Error),
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The watched resources, as named in the `resource` label of the watch-age metric.
const RESOURCES: [&str; 5] = [
    "inferenceendpoints",
    "tenants",
    "tenant_keys",
    "backend_keys",
    "pods",
];

/// When each watch last delivered something, in milliseconds since `epoch`.
struct WatchClock {
    epoch: Instant,
    last_ms: [AtomicU64; RESOURCES.len()],
}

impl WatchClock {
    fn new() -> Arc<Self> {
        Arc::new(WatchClock {
            epoch: Instant::now(),
            last_ms: Default::default(),
        })
    }

    fn mark(&self, i: usize) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_ms[i].store(now, Ordering::Relaxed);
    }

    fn age_secs(&self, i: usize) -> u64 {
        let now = self.epoch.elapsed().as_millis() as u64;
        now.saturating_sub(self.last_ms[i].load(Ordering::Relaxed)) / 1000
    }
}

/// Starts one reflector (watch number `i` of [`RESOURCES`]); every change (and every re-list) notifies
/// `changed` and marks the watch's clock. Errors are retried with backoff; the store keeps its state.
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    i: usize,
    clock: Arc<WatchClock>,
    changed: Arc<Notify>,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config)).default_backoff();
    tokio::spawn(async move {
        stream
            .for_each(|ev| {
                match &ev {
                    Ok(_) => clock.mark(i),
                    Err(e) => {
                        tracing::warn!(resource = RESOURCES[i], error = %e, "watch error; retrying")
                    }
                }
                changed.notify_one();
                async {}
            })
            .await;
    });
    store
}

/// What [`keep_last_good`] needs: the pods the API still lists, and the gateway's own checks.
struct Facts<'a> {
    pod_ips: HashSet<String>,
    backends: &'a Backends,
}

impl BackendFacts for Facts<'_> {
    fn present(&self, addr: &str) -> bool {
        let ip = addr.rsplit_once(':').map_or(addr, |(ip, _)| ip);
        self.pod_ips.contains(ip)
    }

    fn passes_checks(&self, addr: &str) -> bool {
        self.backends.passes_checks(addr)
    }
}

/// Logs and counts endpoints that start or stop being served on last known good backends.
fn report_held(previous: &Snapshot, next: &Snapshot, metrics: &Metrics) {
    for id in next.held.iter().filter(|h| !previous.held.contains(h)) {
        tracing::warn!(endpoint = %id, backends = held_backends(next, id),
            "the control plane reports no ready backend; serving the last known good backends that pass the gateway's checks");
    }
    for id in previous.held.iter().filter(|h| !next.held.contains(h)) {
        tracing::info!(endpoint = %id, "the control plane reports ready backends again; no longer holding");
    }
    for id in next.endpoints.keys() {
        let held = held_backends(next, id) as i64;
        metrics.backends_held.with_label_values(&[id]).set(held);
    }
}

/// Every second: the age of each watch, whether the API server answers `/readyz` (within 2 s), and a
/// rebuild while an endpoint is held, so a held backend that starts failing checks is dropped.
async fn watch_health(
    client: Client,
    clock: Arc<WatchClock>,
    table: SharedTable,
    metrics: Metrics,
    changed: Arc<Notify>,
) {
    let mut last_answer = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for (i, resource) in RESOURCES.iter().enumerate() {
            let age = clock.age_secs(i) as i64;
            metrics.watch_age.with_label_values(&[resource]).set(age);
        }
        let probe = http::Request::get("/readyz").body(Vec::new());
        let answered = match probe {
            Ok(req) => matches!(
                tokio::time::timeout(Duration::from_secs(2), client.request_text(req)).await,
                Ok(Ok(_))
            ),
            Err(_) => false,
        };
        if answered {
            last_answer = Instant::now();
        }
        let silent = (!answered).then(|| last_answer.elapsed());
        metrics
            .kube_api_unreachable
            .set(silent.map_or(0, |d| d.as_secs() as i64));
        table.set_source_unreachable(silent);
        if !table.get().held.is_empty() {
            changed.notify_one();
        }
    }
}

/// Connects, starts the watchers, waits for their first lists, publishes the first snapshot, and
/// returns the task that keeps rebuilding it. `backends` is the gateway's backend state (its checks).
pub async fn start(
    namespace: Option<String>,
    peers: Vec<Peer>,
    table: SharedTable,
    metrics: Metrics,
    backends: Backends,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::try_default()
        .await
        .map_err(KubeSourceError::Client)?;
    let ns = namespace.as_deref();
    let changed = Arc::new(Notify::new());
    let clock = WatchClock::new();
    let cfg = watcher::Config::default;
    let (c, n) = (&clock, &changed);
    let ies = reflect(
        api::<InferenceEndpoint>(&client, ns),
        cfg(),
        0,
        c.clone(),
        n.clone(),
    );
    let tenants = reflect(api::<Tenant>(&client, ns), cfg(), 1, c.clone(), n.clone());
    let secrets = reflect(
        api::<Secret>(&client, ns),
        cfg().labels(LABEL_TENANT),
        2,
        c.clone(),
        n.clone(),
    );
    let backend_keys = reflect(
        api::<Secret>(&client, ns),
        cfg().labels(LABEL_BACKEND_KEY),
        3,
        c.clone(),
        n.clone(),
    );
    let pods = reflect(api::<Pod>(&client, ns), cfg(), 4, c.clone(), n.clone());
    for ready in [
        ies.wait_until_ready().await.is_ok(),
        tenants.wait_until_ready().await.is_ok(),
        secrets.wait_until_ready().await.is_ok(),
        backend_keys.wait_until_ready().await.is_ok(),
        pods.wait_until_ready().await.is_ok(),
    ] {
        anyhow::ensure!(ready, "a Kubernetes watcher stopped before its first list");
    }
    let health = tokio::spawn(watch_health(
        client.clone(),
        clock,
        table.clone(),
        metrics.clone(),
        changed.clone(),
    ));
    let rebuild = move || {
        let mut all_secrets = secrets.state();
        all_secrets.extend(backend_keys.state());
        let pods = pods.state();
        let next = build(&ies.state(), &tenants.state(), &all_secrets, &pods, &peers);
        let previous = table.get();
        let facts = Facts {
            pod_ips: present_pod_ips(&pods),
            backends: &backends,
        };
        let snap = keep_last_good(&previous, next, &facts);
        report_held(&previous, &snap, &metrics);
        tracing::debug!(
            endpoints = snap.endpoints.len(),
            tenants = snap.tenants.len(),
            keys = snap.keys.len(),
            "routing table rebuilt from Kubernetes"
        );
        table.set(snap);
        metrics.reloads.with_label_values(&["kube", "ok"]).inc();
    };
    rebuild();
    Ok(tokio::spawn(async move {
        // Dropping the rebuild task's handle would not stop the ticker: stop it with this task.
        let _health = AbortOnDrop(health);
        loop {
            changed.notified().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            rebuild();
        }
    }))
}

/// Aborts a task when dropped (also when the task holding it is aborted).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
