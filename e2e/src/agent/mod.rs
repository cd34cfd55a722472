//! The node agent: a **process runner for tests** that plays the kubelet for one or more Node objects.
//!
//! It is not a kubelet and isolates nothing. It registers Nodes (labels, capacity incl.
//! `nvidia.com/gpu`, taints), keeps them Ready with status heartbeats and Leases, and runs the pods the
//! real scheduler binds to them: each container is a local process (the image name picks a local
//! program through an [`ImageTable`]), each pod gets its own loopback address `127.x.y.z` as
//! `status.podIP`, init containers run first, probes decide readiness and liveness, `restartPolicy`
//! decides restarts, and deletion is graceful (preStop, SIGTERM, grace period, SIGKILL). There are no images, no namespaces, no cgroups
//! (resource limits are not enforced), no sidecar containers, no `kubectl logs/exec` (logs are files under
//! the agent's directory), no kube-proxy.
//!
//! Data flow: a watcher over all pods → pods bound to one of our nodes go to a per-pod worker task
//! ([`pod::PodWorker`]) over a channel; one heartbeat task per node renews its Lease and reports its
//! status ([`heartbeat`]).
//!
//! After a control-plane outage it behaves like the kubelet: heartbeat requests time out after 5 s and
//! are retried with back-off (250 ms doubling up to the heartbeat interval), so a node is renewed as
//! soon as the API server answers again; each pod worker posts its full status when it changed, when
//! the API holds a different one (the node-lifecycle controller marks pods NotReady while their node is
//! unreachable) and every 10 s in any case ([`sync`]), so such a pod is Ready again within seconds when
//! its probes pass.
//!
//! Two ways to stop: [`NodeAgent::shutdown`] is node loss — every pod process is killed and nothing
//! more is written. [`NodeAgent::detach`] is a kubelet restart — the pod processes keep running, each
//! pod's hand-over file ([`handover`]) records them, and the next [`NodeAgent::start`] on the same
//! directory adopts them (same PIDs, readiness kept, probes go on) and takes its pod address block back.

mod container;
mod env;
mod events;
mod handover;
mod heartbeat;
mod incluster;
mod node;
mod pod;
mod probe;
mod retry;
mod status;
mod sync;
mod volumes;
mod watch;

pub use node::{GPU_RESOURCE, H100_PRODUCT, NodeSpec};

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use crate::images::ImageTable;
use crate::podnet::{PodNet, PodNetError};
use pod::PodCommand;

/// Errors starting or driving the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No loopback address block could be claimed.
    #[error(transparent)]
    PodNet(#[from] PodNetError),
    /// Registering or reporting a node failed.
    #[error("node {node}: {source}")]
    Node {
        /// The node.
        node: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The node is not one of this agent's.
    #[error("node {0} is not played by this agent")]
    UnknownNode(String),
    /// The agent's directory could not be created.
    #[error("agent directory {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// What the agent plays and where it keeps files.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The nodes to register.
    pub nodes: Vec<NodeSpec>,
    /// Image → program.
    pub images: ImageTable,
    /// Pod directories (logs, volumes) and PVC directories go here.
    pub dir: PathBuf,
    /// The API server's port on 127.0.0.1 (exported to pods as KUBERNETES_SERVICE_PORT).
    pub apiserver_port: u16,
    /// Node status and Lease heartbeat interval.
    pub heartbeat: Duration,
}

/// State shared by the agent's tasks.
pub struct AgentCtx {
    client: kube::Client,
    images: ImageTable,
    dir: PathBuf,
    apiserver_port: u16,
    net: Mutex<PodNet>,
    node_index: BTreeMap<String, u8>,
    recorder: Arc<kube::runtime::events::Recorder>,
}

impl AgentCtx {
    fn allocate_ip(&self, pod: &Pod) -> Option<Ipv4Addr> {
        let mut net = self.net.lock().unwrap_or_else(|e| e.into_inner());
        let previous = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok());
        if let Some(ip) = previous.filter(|ip| net.adopt(*ip)) {
            return Some(ip);
        }
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .and_then(|n| self.node_index.get(n));
        net.allocate(*node.unwrap_or(&0))
    }

    fn release_ip(&self, ip: Ipv4Addr) {
        self.net
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .release(ip);
    }
}

/// The file in the agent's directory naming its pod address block, taken back on restart.
const BLOCK_FILE: &str = "podnet-block";

/// A running node agent.
pub struct NodeAgent {
    ctx: Arc<AgentCtx>,
    specs: BTreeMap<String, NodeSpec>,
    ready: Arc<Mutex<BTreeMap<String, bool>>>,
    workers: Arc<Mutex<HashMap<String, UnboundedSender<PodCommand>>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl NodeAgent {
    /// Registers the nodes, reports them Ready, and starts heartbeats and the pod watcher.
    pub async fn start(client: kube::Client, config: AgentConfig) -> Result<Self, AgentError> {
        let io = |source| AgentError::Io {
            path: config.dir.clone(),
            source,
        };
        std::fs::create_dir_all(&config.dir).map_err(io)?;
        let block_file = config.dir.join(BLOCK_FILE);
        let previous_block = std::fs::read_to_string(&block_file)
            .ok()
            .and_then(|b| b.trim().parse().ok());
        let net = PodNet::claim_preferring(previous_block)?;
        std::fs::write(&block_file, net.block().to_string()).map_err(io)?;
        let node_index = config
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i as u8))
            .collect();
        let ctx = Arc::new(AgentCtx {
            client: client.clone(),
            images: config.images.clone(),
            dir: config.dir.clone(),
            apiserver_port: config.apiserver_port,
            net: Mutex::new(net),
            node_index,
            recorder: events::recorder(client.clone()),
        });
        let nodes: Api<Node> = Api::all(client.clone());
        let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
        for spec in &config.nodes {
            let err = |source| AgentError::Node {
                node: spec.name.clone(),
                source,
            };
            node::register(&nodes, spec).await.map_err(err)?;
            node::report_status(&nodes, spec, true).await.map_err(err)?;
            node::renew_lease(&leases, &spec.name).await.map_err(err)?;
        }
        let specs: BTreeMap<String, NodeSpec> = config
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.clone()))
            .collect();
        let ready = Arc::new(Mutex::new(
            specs.keys().map(|k| (k.clone(), true)).collect(),
        ));
        let mut agent = Self {
            ctx,
            specs,
            ready,
            workers: Arc::default(),
            tasks: Vec::new(),
        };
        for spec in agent.specs.values() {
            agent.tasks.push(heartbeat::spawn(
                nodes.clone(),
                leases.clone(),
                spec.clone(),
                agent.ready.clone(),
                config.heartbeat,
            ));
        }
        agent.tasks.push(tokio::spawn(watch::watch_pods(
            agent.ctx.clone(),
            agent.workers.clone(),
        )));
        Ok(agent)
    }

    /// The agent's directory (pod logs are in `pods/<ns>_<name>_<uid8>/logs/<container>.log`).
    pub fn dir(&self) -> &Path {
        &self.ctx.dir
    }

    /// Reports `node` Ready (true) or NotReady (false) now and on every later heartbeat.
    pub async fn set_ready(&self, node: &str, ready: bool) -> Result<(), AgentError> {
        let spec = self
            .specs
            .get(node)
            .ok_or_else(|| AgentError::UnknownNode(node.into()))?;
        self.ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node.into(), ready);
        let nodes: Api<Node> = Api::all(self.ctx.client.clone());
        node::report_status(&nodes, spec, ready)
            .await
            .map_err(|source| AgentError::Node {
                node: node.into(),
                source,
            })
    }

    /// Stops heart-beating `node` and deletes its Node object (the control plane then removes its pods).
    pub async fn delete_node(&self, node: &str) -> Result<(), AgentError> {
        if self
            .ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(node)
            .is_none()
        {
            return Err(AgentError::UnknownNode(node.into()));
        }
        let nodes: Api<Node> = Api::all(self.ctx.client.clone());
        node::delete(&nodes, node)
            .await
            .map_err(|source| AgentError::Node {
                node: node.into(),
                source,
            })
    }

    /// Takes every pod worker's channel out of the registry after sending it `command`.
    fn send_to_all_workers(
        &self,
        command: impl Fn() -> PodCommand,
    ) -> Vec<(String, UnboundedSender<PodCommand>)> {
        let workers: Vec<_> = self
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        for (_, tx) in &workers {
            let _ = tx.send(command());
        }
        workers
    }

    /// Node loss: stops heartbeats and the watcher and kills every pod process; writes nothing more.
    pub async fn shutdown(mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        let workers = self.send_to_all_workers(|| PodCommand::Kill);
        // Workers exit within one tick after Kill; wait for their processes to be reaped.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while workers.iter().any(|(_, tx)| !tx.is_closed())
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Agent restart, as a kubelet restart: stops the heartbeats, the pod watcher and the pod workers
    /// but leaves every pod process running; each worker first writes its pod's hand-over file. A
    /// [`NodeAgent::start`] with the same directory then adopts the processes and takes the same pod
    /// address block back. Returns once this agent's tasks are gone and its block is released (bounded:
    /// a worker busy stopping a deleted pod is waited for up to 10 s).
    pub async fn detach(mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
            let _ = task.await;
        }
        let workers = self.send_to_all_workers(|| PodCommand::Detach);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while (workers.iter().any(|(_, tx)| !tx.is_closed()) || Arc::strong_count(&self.ctx) > 1)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = workers.iter().filter(|(_, tx)| !tx.is_closed()).count();
        if left > 0 {
            tracing::warn!(
                workers = left,
                "pod workers still busy after 10 s; they finish on their own"
            );
            // Dropping their senders would read as Kill; let them finish instead.
            std::mem::forget(workers);
        }
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for tx in self
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            let _ = tx.send(PodCommand::Kill);
        }
    }
}
