//! The test fixture: one local cluster per test binary, one namespace per test, and a dump of the
//! namespace's pods, events and logs (plus the control plane's log tails) when a test fails.
//!
//! ```no_run
//! # async fn t() {
//! let cluster = anshin_e2e::fixture::shared();
//! let ns = cluster.namespace("deployment-rolls-out").await;
//! let client = ns.client(); // a client for this test's own runtime
//! # }
//! ```
//! The cluster runs on its own thread and runtime, so every `#[tokio::test]` (each with its own
//! runtime) can use it. It is never stopped explicitly: when the test binary exits, the processes are
//! killed and reaped by [`crate::process`]'s exit hook (and by `PR_SET_PDEATHSIG` if the binary dies).
//! That thread owns the [`LocalCluster`] and serves [`ClusterOp`]s sent by tests
//! ([`TestCluster::run_op`], e.g. [`TestCluster::restart_node_agent`]) one at a time. Tests of one
//! binary share the cluster, so a test that restarts something belongs in a test binary of its own.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams};
use tokio::sync::{mpsc as tokio_mpsc, oneshot};

use crate::agent::NodeSpec;
use crate::cluster::{ClusterConfig, LocalCluster, default_nodes};
use crate::control_plane::Component;
use crate::control_plane::tail;
use crate::images::ImageTable;

/// The shared cluster of this test binary.
pub struct TestCluster {
    kubeconfig: PathBuf,
    dir: PathBuf,
    logs: Vec<(String, PathBuf)>,
    runtime: tokio::runtime::Handle,
    ops: tokio_mpsc::UnboundedSender<OpRequest>,
}

/// Something a test asks of the shared cluster, done on the thread that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterOp {
    /// Restart the node agent with its pods kept running ([`LocalCluster::restart_agent`]).
    RestartNodeAgent,
    /// Freeze a control-plane program (SIGSTOP) until [`ClusterOp::Resume`].
    Pause(Component),
    /// Let a paused control-plane program run again (SIGCONT).
    Resume(Component),
    /// Kill a control-plane program and start it again; done once it is healthy.
    Restart(Component),
}

/// An operation and where its outcome goes.
type OpRequest = (ClusterOp, oneshot::Sender<Result<(), String>>);

/// Does `op` on the cluster (on the cluster's own thread and runtime).
async fn apply(cluster: &mut LocalCluster, op: ClusterOp) -> Result<(), String> {
    match op {
        ClusterOp::RestartNodeAgent => cluster.restart_agent().await.map_err(|e| e.to_string()),
        ClusterOp::Pause(c) => Ok(cluster.control_plane().pause(c)),
        ClusterOp::Resume(c) => Ok(cluster.control_plane().resume(c)),
        ClusterOp::Restart(c) => {
            (cluster.control_plane_mut().restart(c).await).map_err(|e| e.to_string())
        }
    }
}

static CLUSTER: OnceLock<Result<TestCluster, String>> = OnceLock::new();

/// The shared cluster with the default nodes (`cpu-0`, `cpu-1`, `gpu-0`) and the project's binaries as
/// `anshin/<name>` images; started on first use. Panics with the cause (e.g. missing binaries: run
/// `scripts/setup.sh`) if it cannot start, so the test fails clearly instead of being skipped.
pub fn shared() -> &'static TestCluster {
    shared_with(default_nodes, ImageTable::new)
}

/// Like [`shared`], with extra image entries and other nodes; the first caller in a test binary decides.
pub fn shared_with(
    nodes: fn() -> Vec<NodeSpec>,
    images: fn() -> ImageTable,
) -> &'static TestCluster {
    let started = CLUSTER.get_or_init(|| start(nodes(), images()));
    match started {
        Ok(cluster) => cluster,
        Err(e) => panic!("the local test cluster could not start: {e}"),
    }
}

fn start(nodes: Vec<NodeSpec>, extra_images: ImageTable) -> Result<TestCluster, String> {
    remove_stale_dirs();
    let dir = std::env::temp_dir().join(format!("anshin-e2e-{}", std::process::id()));
    let mut config = ClusterConfig::new(&dir);
    config.nodes = nodes;
    config.images = merge(config.images, extra_images);
    let (tx, rx) = mpsc::channel();
    let (ops, mut op_requests) = tokio_mpsc::unbounded_channel::<OpRequest>();
    std::thread::Builder::new()
        .name("anshin-test-cluster".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return drop(tx.send(Err(e.to_string()))),
            };
            runtime.block_on(async move {
                match LocalCluster::start(config).await {
                    Ok(mut cluster) => {
                        let logs = cluster
                            .control_plane()
                            .components()
                            .into_iter()
                            .map(|(n, _, l)| (n, l))
                            .collect();
                        let info = (
                            cluster.kubeconfig().to_path_buf(),
                            logs,
                            tokio::runtime::Handle::current(),
                        );
                        let _ = tx.send(Ok(info));
                        // Keep the cluster (and this runtime, which runs its agent) until the binary
                        // exits, doing what tests ask of it; `ops` lives in a static, so this never ends.
                        while let Some((op, reply)) = op_requests.recv().await {
                            let _ = reply.send(apply(&mut cluster, op).await);
                        }
                        drop(cluster);
                    }
                    Err(e) => drop(tx.send(Err(e.to_string()))),
                }
            });
        })
        .map_err(|e| e.to_string())?;
    let (kubeconfig, logs, runtime) = rx
        .recv_timeout(Duration::from_secs(240))
        .map_err(|e| e.to_string())??;
    Ok(TestCluster {
        kubeconfig,
        dir,
        logs,
        runtime,
        ops,
    })
}

fn merge(mut base: ImageTable, extra: ImageTable) -> ImageTable {
    for (image, program) in extra.entries() {
        base = base.with(image, program);
    }
    base
}

/// Removes `anshin-e2e-<pid>` directories of test binaries that are no longer running.
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("anshin-e2e-")
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !PathBuf::from(format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl TestCluster {
    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> &PathBuf {
        &self.kubeconfig
    }

    /// A new admin client for the calling runtime.
    pub async fn client(&self) -> kube::Client {
        match crate::kubeconfig::client(&self.kubeconfig).await {
            Ok(client) => client,
            Err(e) => panic!("cannot make a client for the test cluster: {e}"),
        }
    }

    /// Creates a fresh namespace for one test (name derived from `test`), deleted when dropped.
    pub async fn namespace(&'static self, test: &str) -> TestNamespace {
        let client = self.client().await;
        let suffix = crate::certs::random_hex(2).unwrap_or_else(|_| "0000".into());
        let base: String = test
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        let name = format!(
            "{}-{suffix}",
            base.trim_matches('-').chars().take(50).collect::<String>()
        );
        if let Err(e) = crate::cluster::create_namespace(&client, &name).await {
            panic!("cannot create test namespace {name}: {e}");
        }
        TestNamespace {
            name,
            client,
            cluster: self,
        }
    }

    /// Does `op` on the shared cluster and waits for its outcome (from any runtime). Operations run one
    /// at a time; the cluster's agent and other tests go on meanwhile.
    pub async fn run_op(&self, op: ClusterOp) -> Result<(), String> {
        let (reply, outcome) = oneshot::channel();
        self.ops
            .send((op, reply))
            .map_err(|_| "the test cluster's thread is gone".to_string())?;
        outcome
            .await
            .map_err(|_| "the test cluster's thread dropped the operation".to_string())?
    }

    /// Restarts the node agent the way a kubelet restarts: pods keep running and are adopted by the new
    /// agent ([`ClusterOp::RestartNodeAgent`]).
    pub async fn restart_node_agent(&self) -> Result<(), String> {
        self.run_op(ClusterOp::RestartNodeAgent).await
    }

    /// The node agent's pod directories, for reading pod logs.
    pub fn agent_dir(&self) -> PathBuf {
        self.dir.join("agent")
    }

    /// Runs `fut` on the cluster's own runtime and waits (bounded) for its result.
    fn run_blocking<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = mpsc::channel();
        self.runtime.spawn(async move { drop(tx.send(fut.await)) });
        rx.recv_timeout(Duration::from_secs(20)).ok()
    }
}

/// A namespace owned by one test; on drop it is deleted, after a dump if the test is failing.
pub struct TestNamespace {
    name: String,
    client: kube::Client,
    cluster: &'static TestCluster,
}

impl TestNamespace {
    /// The namespace name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An admin client (for the test's runtime); its default namespace is not this one.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// A namespaced API handle in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Pods, events and container logs of this namespace, and the control plane's log tails.
    pub fn dump(&self) -> String {
        let (ns, kubeconfig) = (self.name.clone(), self.cluster.kubeconfig.clone());
        let api_dump = self
            .cluster
            .run_blocking(async move { dump_api(&kubeconfig, &ns).await });
        let mut out = api_dump.unwrap_or_else(|| "(API dump timed out)".into());
        let pods_dir = self.cluster.agent_dir().join("pods");
        for entry in std::fs::read_dir(&pods_dir).into_iter().flatten().flatten() {
            if !entry
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("{}_", self.name))
            {
                continue;
            }
            for log in std::fs::read_dir(entry.path().join("logs"))
                .into_iter()
                .flatten()
                .flatten()
            {
                out += &format!(
                    "--- log {} ---\n{}\n",
                    log.path().display(),
                    tail(&log.path(), 20)
                );
            }
        }
        for (name, log) in &self.cluster.logs {
            out += &format!("--- {name} ({}) ---\n{}\n", log.display(), tail(log, 15));
        }
        out
    }
}

async fn dump_api(kubeconfig: &std::path::Path, ns: &str) -> String {
    let Ok(client) = crate::kubeconfig::client(kubeconfig).await else {
        return "(no client)".into();
    };
    let mut out = format!("=== dump of namespace {ns} ===\n");
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    for pod in pods
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
    {
        out += &pod_line(&pod);
    }
    let events: Api<Event> = Api::namespaced(client, ns);
    let mut items = events
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    items.sort_by_key(|e| e.metadata.creation_timestamp.clone());
    for e in items {
        let obj = format!(
            "{}/{}",
            e.involved_object.kind.unwrap_or_default(),
            e.involved_object.name.unwrap_or_default()
        );
        out += &format!(
            "event {obj} {} {}: {}\n",
            e.type_.unwrap_or_default(),
            e.reason.unwrap_or_default(),
            e.message.unwrap_or_default()
        );
    }
    out
}

/// One line per pod and one per container: phase, node, IP, and each container's state and restarts.
fn pod_line(pod: &Pod) -> String {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_else(|| "<unscheduled>".into());
    let status = pod.status.clone().unwrap_or_default();
    let deleting = if pod.metadata.deletion_timestamp.is_some() {
        " (terminating)"
    } else {
        ""
    };
    let mut out = format!(
        "pod {name}{deleting}: phase={} node={node} ip={} {}\n",
        status.phase.unwrap_or_default(),
        status.pod_ip.unwrap_or_default(),
        status.message.unwrap_or_default()
    );
    for c in status.container_statuses.unwrap_or_default() {
        let state = serde_json::to_string(&c.state).unwrap_or_default();
        let last = serde_json::to_string(&c.last_state).unwrap_or_default();
        out += &format!(
            "  container {} ready={} restarts={} state={state} last={last}\n",
            c.name, c.ready, c.restart_count
        );
    }
    out
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.dump());
        }
        let (ns, kubeconfig) = (self.name.clone(), self.cluster.kubeconfig.clone());
        // Fire and forget on the cluster's runtime: the namespace controller removes its pods.
        self.cluster.runtime.spawn(async move {
            if let Ok(client) = crate::kubeconfig::client(&kubeconfig).await {
                let _ = Api::<Namespace>::all(client)
                    .delete(&ns, &DeleteParams::default())
                    .await;
            }
        });
    }
}

/// Polls `check` every 200 ms until it returns `Some`, for at most `timeout`; panics naming `what`
/// (so a test that waits in vain fails with a message instead of hanging).
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
