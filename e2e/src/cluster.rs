//! A whole local cluster: the control plane plus a node agent playing its nodes.
//!
//! This is what `anshin-local up` and the test fixture start. The default nodes are two CPU nodes
//! (`cpu-0`, `cpu-1`) and one 8×H100 node (`gpu-0`, tainted `nvidia.com/gpu=present:NoSchedule`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};

use crate::agent::{AgentConfig, AgentError, NodeAgent, NodeSpec};
use crate::binaries::ControlPlaneBinaries;
use crate::control_plane::{ControlPlane, ControlPlaneError};
use crate::images::ImageTable;

/// Errors starting a local cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The control plane failed.
    #[error(transparent)]
    ControlPlane(#[from] ControlPlaneError),
    /// The node agent failed.
    #[error("node agent: {0}")]
    Agent(#[from] AgentError),
    /// An API call failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: kube::Error,
    },
    /// Something did not happen in time.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    /// The cluster was started without nodes, so there is no node agent to act on.
    #[error("the cluster has no node agent (it was started without nodes)")]
    NoAgent,
}

/// How to start a local cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// State, logs, kubeconfig and pod directories.
    pub dir: PathBuf,
    /// Nodes the agent plays (none: no agent).
    pub nodes: Vec<NodeSpec>,
    /// Image → program table of the agent.
    pub images: ImageTable,
}

impl ClusterConfig {
    /// Default nodes and the project's binaries (next to the running executable) as images.
    pub fn new(dir: &Path) -> Self {
        let images = project_bin_dir()
            .map(|d| ImageTable::new().with_project_binaries(&d))
            .unwrap_or_default();
        Self {
            dir: dir.to_path_buf(),
            nodes: default_nodes(),
            images,
        }
    }
}

/// `cpu-0`, `cpu-1` and the 8×H100 `gpu-0`.
pub fn default_nodes() -> Vec<NodeSpec> {
    vec![
        NodeSpec::cpu("cpu-0"),
        NodeSpec::cpu("cpu-1"),
        NodeSpec::h100("gpu-0"),
    ]
}

/// Cargo's profile directory of the running executable (`target/debug` for binaries and tests alike).
pub fn project_bin_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    Some(if dir.ends_with("deps") {
        dir.parent()?.to_path_buf()
    } else {
        dir.to_path_buf()
    })
}

/// A running local cluster.
pub struct LocalCluster {
    control_plane: ControlPlane,
    agent: Option<NodeAgent>,
    agent_config: Option<AgentConfig>,
    client: kube::Client,
}

impl LocalCluster {
    /// Starts the control plane from the installed binaries, then the node agent.
    pub async fn start(config: ClusterConfig) -> Result<Self, ClusterError> {
        let bins = ControlPlaneBinaries::locate().map_err(ControlPlaneError::from)?;
        let control_plane = ControlPlane::start(&bins, &config.dir.join("control-plane")).await?;
        let client = control_plane.client().await?;
        let agent_config = (!config.nodes.is_empty()).then(|| AgentConfig {
            nodes: config.nodes,
            images: config.images,
            dir: config.dir.join("agent"),
            apiserver_port: control_plane.ports().apiserver,
            heartbeat: Duration::from_secs(3),
        });
        let agent = match &agent_config {
            Some(c) => Some(NodeAgent::start(client.clone(), c.clone()).await?),
            None => None,
        };
        let cluster = Self {
            control_plane,
            agent,
            agent_config,
            client,
        };
        cluster.wait_service_account("default").await?;
        Ok(cluster)
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        self.control_plane.kubeconfig()
    }

    /// A client made at start (bound to the runtime that started the cluster).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The control plane.
    pub fn control_plane(&self) -> &ControlPlane {
        &self.control_plane
    }

    /// The control plane, for failure drills ([`ControlPlane::restart`]).
    pub fn control_plane_mut(&mut self) -> &mut ControlPlane {
        &mut self.control_plane
    }

    /// The node agent, if nodes were configured.
    pub fn agent(&self) -> Option<&NodeAgent> {
        self.agent.as_ref()
    }

    /// Restarts the node agent the way a kubelet restarts: the pods keep running, and the new agent
    /// adopts their processes (same PIDs, readiness kept) — see [`NodeAgent::detach`].
    pub async fn restart_agent(&mut self) -> Result<(), ClusterError> {
        let (Some(agent), Some(config)) = (self.agent.take(), self.agent_config.clone()) else {
            return Err(ClusterError::NoAgent);
        };
        agent.detach().await;
        self.agent = Some(NodeAgent::start(self.client.clone(), config).await?);
        Ok(())
    }

    /// Creates namespace `name` and waits until pods can be created in it.
    pub async fn create_namespace(&self, name: &str) -> Result<(), ClusterError> {
        create_namespace(&self.client, name).await
    }

    async fn wait_service_account(&self, ns: &str) -> Result<(), ClusterError> {
        wait_service_account(&self.client, ns).await
    }

    /// Node loss for every node, then the control plane stopped; nothing is left running.
    pub async fn stop(self) {
        if let Some(agent) = self.agent {
            agent.shutdown().await;
        }
        self.control_plane.stop().await;
    }
}

/// Creates namespace `name` and waits until pods can be created in it (its `default` ServiceAccount
/// has a token, which takes the controller-manager a moment).
pub async fn create_namespace(client: &kube::Client, name: &str) -> Result<(), ClusterError> {
    let ns: Namespace = serde_json::from_value(serde_json::json!({ "metadata": { "name": name } }))
        .map_err(|e| ClusterError::Api {
            what: format!("namespace {name}"),
            source: kube::Error::SerdeError(e),
        })?;
    let api: Api<Namespace> = Api::all(client.clone());
    api.create(&PostParams::default(), &ns)
        .await
        .map_err(|source| ClusterError::Api {
            what: format!("create namespace {name}"),
            source,
        })?;
    wait_service_account(client, name).await
}

/// Waits (up to 60 s) until `ns/default` ServiceAccount has its token secret.
pub async fn wait_service_account(client: &kube::Client, ns: &str) -> Result<(), ClusterError> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let timeout = Duration::from_secs(60);
    let deadline = Instant::now() + timeout;
    loop {
        let sa = api.get_opt("default").await.ok().flatten();
        if sa.and_then(|sa| sa.secrets).is_some_and(|s| !s.is_empty()) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ClusterError::Timeout(
                timeout,
                format!("the default ServiceAccount token in {ns}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
