//! The agent's pod watcher: pods bound to one of its nodes go to their per-pod worker (started on first
//! sight, sent every later change), deletions end the worker, and a finished pod being deleted is
//! removed at once as the kubelet does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use super::AgentCtx;
use super::pod::{PodCommand, PodWorker};
use super::status;

/// Watches all pods and hands those bound to our nodes to their workers (one per pod UID).
pub async fn watch_pods(
    ctx: Arc<AgentCtx>,
    workers: Arc<Mutex<HashMap<String, UnboundedSender<PodCommand>>>>,
) {
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let mut events = watcher(pods, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                on_pod(&ctx, &workers, pod)
            }
            Ok(watcher::Event::Delete(pod)) => {
                let uid = pod.metadata.uid.unwrap_or_default();
                if let Some(tx) = workers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&uid)
                {
                    let _ = tx.send(PodCommand::Gone);
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pod watch error; retrying"),
        }
    }
}

fn on_pod(
    ctx: &Arc<AgentCtx>,
    workers: &Mutex<HashMap<String, UnboundedSender<PodCommand>>>,
    pod: Pod,
) {
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default();
    if !ctx.node_index.contains_key(node) {
        return;
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let mut workers = workers.lock().unwrap_or_else(|e| e.into_inner());
    workers.retain(|_, tx| !tx.is_closed());
    if let Some(tx) = workers.get(&uid) {
        let _ = tx.send(PodCommand::Update(Box::new(pod)));
        return;
    }
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending");
    let terminal = phase == "Succeeded" || phase == "Failed";
    if pod.metadata.deletion_timestamp.is_some() && terminal {
        // Nothing runs for a finished pod: complete its deletion as the kubelet would.
        tokio::spawn(delete_now(ctx.client.clone(), pod));
        return;
    }
    if terminal {
        return;
    }
    let Some(ip) = ctx.allocate_ip(&pod) else {
        tracing::error!(pod = %status::pod_key(&pod), "no free loopback address for the pod");
        return;
    };
    let (tx, rx) = unbounded_channel();
    workers.insert(uid, tx);
    tokio::spawn(PodWorker::new(ctx.clone(), pod, ip).run(rx));
}

async fn delete_now(client: kube::Client, pod: Pod) {
    let api: Api<Pod> = Api::namespaced(
        client,
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    );
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    let _ = api
        .delete(pod.metadata.name.as_deref().unwrap_or_default(), &dp)
        .await;
}
