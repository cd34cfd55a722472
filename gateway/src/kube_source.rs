//! The routing table from the Kubernetes API: reflectors (list + watch) over InferenceEndpoints,
//! Tenants, tenant key Secrets (label `anshin.dev/tenant`), endpoint backend key Secrets (label
//! `anshin.dev/backend-key-of`) and Pods, in one namespace or all. Every event
//! wakes a rebuild of the whole snapshot with the pure [`crate::kube_table::build`] (coalesced: at
//! most one rebuild per 100 ms), so the request path is the same as with the file source. Pods are
//! watched directly (readiness from their `Ready` condition) so it works on every Kubernetes version
//! and without kube-proxy.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use anshin_crds::{InferenceEndpoint, Tenant};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use crate::kube_table::build;
use crate::metrics::Metrics;
use crate::table::{Peer, SharedTable};
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

/// Starts one reflector; every change (and every re-list) notifies `changed`.
fn reflect<K>(api: Api<K>, config: watcher::Config, changed: Arc<Notify>) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config)).default_backoff();
    tokio::spawn(async move {
        stream
            .for_each(|ev| {
                if let Err(e) = &ev {
                    tracing::warn!(kind = %K::kind(&Default::default()), error = %e, "watch error; retrying");
                }
                changed.notify_one();
                async {}
            })
            .await;
    });
    store
}

/// Connects, starts the watchers, waits for their first lists, publishes the first snapshot, and
/// returns the task that keeps rebuilding it.
pub async fn start(
    namespace: Option<String>,
    peers: Vec<Peer>,
    table: SharedTable,
    metrics: Metrics,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::try_default()
        .await
        .map_err(KubeSourceError::Client)?;
    let ns = namespace.as_deref();
    let changed = Arc::new(Notify::new());
    let ies = reflect(
        api::<InferenceEndpoint>(&client, ns),
        watcher::Config::default(),
        changed.clone(),
    );
    let tenants = reflect(
        api::<Tenant>(&client, ns),
        watcher::Config::default(),
        changed.clone(),
    );
    let secrets = reflect(
        api::<Secret>(&client, ns),
        watcher::Config::default().labels(LABEL_TENANT),
        changed.clone(),
    );
    let backend_keys = reflect(
        api::<Secret>(&client, ns),
        watcher::Config::default().labels(LABEL_BACKEND_KEY),
        changed.clone(),
    );
    let pods = reflect(
        api::<Pod>(&client, ns),
        watcher::Config::default(),
        changed.clone(),
    );
    for ready in [
        ies.wait_until_ready().await.is_ok(),
        tenants.wait_until_ready().await.is_ok(),
        secrets.wait_until_ready().await.is_ok(),
        backend_keys.wait_until_ready().await.is_ok(),
        pods.wait_until_ready().await.is_ok(),
    ] {
        anyhow::ensure!(ready, "a Kubernetes watcher stopped before its first list");
    }
    let rebuild = move || {
        let mut all_secrets = secrets.state();
        all_secrets.extend(backend_keys.state());
        let snap = build(
            &ies.state(),
            &tenants.state(),
            &all_secrets,
            &pods.state(),
            &peers,
        );
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
        loop {
            changed.notified().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            rebuild();
        }
    }))
}
