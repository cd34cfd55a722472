//! Node heartbeats: one task per node renews its Lease and reports its status every interval.
//!
//! Like the kubelet after a control-plane outage, a node renews as soon as the API server answers again:
//! every heartbeat request is bounded by [`REQUEST_TIMEOUT`] (a paused API server would otherwise hold it
//! until it resumes), and after a failure the next try comes after [`retry_delay`] — 250 ms doubling up to
//! the interval ([`super::retry`]) — instead of a whole interval. Nodes beat on their own tasks, so one node's hung request
//! never delays another's. The first success after failures is logged once, with the outage's length.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use tokio::task::JoinHandle;

use super::node::{self, NodeSpec};
use super::retry::{REQUEST_TIMEOUT, retry_delay};

/// Why one heartbeat failed.
#[derive(Debug, thiserror::Error)]
enum BeatError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Api(#[from] kube::Error),
}

/// Starts `spec`'s heartbeat task; it ends when the node is removed from `ready` (node deleted).
pub fn spawn(
    nodes: Api<Node>,
    leases: Api<Lease>,
    spec: NodeSpec,
    ready: Arc<Mutex<BTreeMap<String, bool>>>,
    interval: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut failures = 0u32;
        let mut failing_since: Option<Instant> = None;
        loop {
            tokio::time::sleep(retry_delay(failures, interval)).await;
            let is_ready = ready
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&spec.name)
                .copied();
            let Some(is_ready) = is_ready else { return };
            match beat(&nodes, &leases, &spec, is_ready).await {
                Ok(()) => {
                    if let Some(since) = failing_since.take() {
                        tracing::info!(node = %spec.name, outage_s = since.elapsed().as_secs(),
                            "API server reachable again after {} s; node heartbeat renewed", since.elapsed().as_secs());
                    }
                    failures = 0;
                }
                Err(e) => {
                    if failing_since.is_none() {
                        tracing::warn!(node = %spec.name, error = %e, "node heartbeat failed; retrying with back-off");
                        failing_since = Some(Instant::now());
                    } else {
                        tracing::debug!(node = %spec.name, error = %e, failures, "node heartbeat failed again");
                    }
                    failures = failures.saturating_add(1);
                }
            }
        }
    })
}

/// One heartbeat: the Lease first (what the node-lifecycle controller reads), then the node status.
async fn beat(
    nodes: &Api<Node>,
    leases: &Api<Lease>,
    spec: &NodeSpec,
    ready: bool,
) -> Result<(), BeatError> {
    let both = async {
        node::renew_lease(leases, &spec.name).await?;
        node::report_status(nodes, spec, ready).await
    };
    tokio::time::timeout(REQUEST_TIMEOUT, both)
        .await
        .map_err(|_| BeatError::Timeout(REQUEST_TIMEOUT))?
        .map_err(BeatError::from)
}
