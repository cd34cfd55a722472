//! Instruments for failure drills: operator replicas restarted like a kubelet restarts a container,
//! a sampler that catches two leaders at once, the endpoint's readiness as the API reports it, what
//! must not change across a drill, and the process behind a model pod.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anshin_crds::InferenceEndpoint;
use anshin_crds::inference_endpoint::EndpointPhase;
use anshin_e2e::process::ManagedProcess;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams};
use tokio::task::JoinHandle;

use super::stack::start_operator;

/// The value of metric `name` on `127.0.0.1:port/metrics`, if it answers within 1 s.
pub async fn metric(port: u16, name: &str) -> Option<f64> {
    let addr = format!("127.0.0.1:{port}").parse().ok()?;
    let r = anshin_e2e::http::get(addr, "/metrics", Duration::from_secs(1))
        .await
        .ok()?;
    r.body
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .reduce(|a, b| a + b)
}

/// How to start the operator replicas of a drill.
pub struct OperatorSetup {
    /// Namespace of the leader lease.
    pub ns: String,
    /// Admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// Directory for `file://` models and the logs.
    pub dir: PathBuf,
    /// Leader lease duration.
    pub lease_seconds: u32,
}

/// Operator replicas restarted 1 s after they exit (an operator that loses its lease exits, and its
/// kubelet starts it again), with a sampler counting the instants at which two replicas led at once.
pub struct Replicas {
    /// Metrics ports of the replicas.
    pub ports: Vec<u16>,
    /// Restarts seen.
    pub restarts: Arc<AtomicUsize>,
    /// Samples (every 100 ms) at which more than one replica reported `anshin_operator_leader 1`.
    pub two_leaders: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Replicas {
    /// Starts `n` replicas named `operator-<i>`.
    pub fn start(setup: OperatorSetup, n: usize) -> Replicas {
        let ports: Vec<u16> = (0..n).map(|_| super::free_port()).collect();
        let (stop, restarts) = (Arc::new(AtomicBool::new(false)), Arc::default());
        let setup = Arc::new(setup);
        let mut tasks: Vec<JoinHandle<()>> = ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let (setup, stop, restarts) = (setup.clone(), stop.clone(), Arc::clone(&restarts));
                tokio::spawn(supervise(setup, i, *port, stop, restarts))
            })
            .collect();
        let two_leaders = Arc::new(AtomicUsize::new(0));
        let (p, s, t) = (ports.clone(), stop.clone(), two_leaders.clone());
        tasks.push(tokio::spawn(async move {
            while !s.load(Ordering::SeqCst) {
                let mut leading = 0;
                for port in &p {
                    leading +=
                        usize::from(metric(*port, "anshin_operator_leader").await == Some(1.0));
                }
                if leading > 1 {
                    t.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
        Replicas {
            ports,
            restarts,
            two_leaders,
            stop,
            tasks,
        }
    }

    /// How many replicas report leading now.
    pub async fn leaders(&self) -> usize {
        let mut n = 0;
        for port in &self.ports {
            n += usize::from(metric(*port, "anshin_operator_leader").await == Some(1.0));
        }
        n
    }

    /// Stops the replicas (SIGTERM each).
    pub async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn supervise(
    setup: Arc<OperatorSetup>,
    i: usize,
    port: u16,
    stop: Arc<AtomicBool>,
    restarts: Arc<AtomicUsize>,
) {
    let name = format!("operator-{i}");
    let spawn = |run: usize| {
        let log = setup.dir.join(format!("{name}.{run}.log"));
        let (ns, kc, lease) = (&setup.ns, &setup.kubeconfig, setup.lease_seconds);
        start_operator(ns, kc, &setup.dir, &log, &name, lease, port)
    };
    let mut run = 0;
    let mut process: ManagedProcess = spawn(run);
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some(status) = process.try_exit() {
            eprintln!("{name} exited ({status}); restarting it in 1 s");
            tokio::time::sleep(Duration::from_secs(1)).await;
            run += 1;
            restarts.fetch_add(1, Ordering::SeqCst);
            process = spawn(run);
        }
    }
    process.stop(Duration::from_secs(5)).await;
}

/// Whether the endpoint is wholly Ready as the API reports it: status phase Ready, every pod of it
/// Ready=True, and its Deployment with all replicas ready. `None` when the API does not answer.
pub async fn endpoint_ready(ns: &kube::Client, namespace: &str, endpoint: &str) -> Option<bool> {
    let ies: Api<InferenceEndpoint> = Api::namespaced(ns.clone(), namespace);
    let phase = ies.get(endpoint).await.ok()?.status?.phase;
    let selector = format!("{}={endpoint}", anshin_crds::labels::LABEL_ENDPOINT);
    let lp = ListParams::default().labels(&selector);
    let pods = Api::<Pod>::namespaced(ns.clone(), namespace)
        .list(&lp)
        .await
        .ok()?;
    let pods_ready = !pods.items.is_empty()
        && pods.items.iter().all(|p| {
            let conds = p.status.as_ref().and_then(|s| s.conditions.clone());
            conds.is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        });
    let deployments = Api::<Deployment>::namespaced(ns.clone(), namespace)
        .list(&lp)
        .await
        .ok()?;
    let all_ready = deployments.items.iter().all(|d| {
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        d.status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
            == want
    });
    Some(phase == EndpointPhase::Ready && pods_ready && all_ready)
}

/// A Deployment's generation, replicas and UID.
type DeploymentFacts = (Option<i64>, Option<i32>, Option<String>);

/// What a control-plane outage must not change: Deployments (generation and replicas: no rollout or
/// scale), key Secrets (resourceVersion: no key change), the endpoint's routing.
#[derive(Debug, PartialEq)]
pub struct Unchanged {
    deployments: BTreeMap<String, DeploymentFacts>,
    secrets: BTreeMap<String, (Option<String>, Option<String>)>,
    routing: String,
}

impl Unchanged {
    /// Reads them now.
    pub async fn read(client: &kube::Client, namespace: &str, endpoint: &str) -> Unchanged {
        let lp = ListParams::default();
        let ds = Api::<Deployment>::namespaced(client.clone(), namespace)
            .list(&lp)
            .await
            .expect("list deployments");
        let ss = Api::<Secret>::namespaced(client.clone(), namespace)
            .list(&lp)
            .await
            .expect("list secrets");
        let ie = Api::<InferenceEndpoint>::namespaced(client.clone(), namespace)
            .get(endpoint)
            .await
            .expect("endpoint");
        let routing = ie.status.map(|s| s.routing).unwrap_or_default();
        Unchanged {
            deployments: ds
                .items
                .into_iter()
                .map(|d| {
                    let replicas = d.spec.as_ref().and_then(|s| s.replicas);
                    let m = d.metadata;
                    (m.name.unwrap_or_default(), (m.generation, replicas, m.uid))
                })
                .collect(),
            secrets: ss
                .items
                .into_iter()
                .filter(|s| s.metadata.labels.as_ref().is_some_and(|l| !l.is_empty()))
                .map(|s| {
                    let m = s.metadata;
                    (m.name.unwrap_or_default(), (m.resource_version, m.uid))
                })
                .collect(),
            routing: serde_json::to_string(&routing).unwrap_or_default(),
        }
    }
}

/// The PID of the model server of the pod at `pod_ip` (the workload makes it listen on
/// `$(POD_IP):port`), found in `/proc`.
pub fn model_server_pid(pod_ip: &str) -> Option<i32> {
    let needle = format!("--listen={pod_ip}:");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let args = String::from_utf8_lossy(&cmdline);
        args.split('\0')
            .any(|a| a.starts_with(&needle))
            .then_some(pid)
    })
}
