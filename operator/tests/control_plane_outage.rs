//! Static stability end to end: the endpoint keeps serving when the control plane fails, and recovers
//! by itself. The operator (two replicas with leader election, restarted when they exit), the gateway
//! and two model pods run on the local cluster; a client sends a light, bounded load (4 workers, one
//! request every 2 s each) through the gateway and counts every answer while, one after another:
//! 1. the kube-apiserver is paused (SIGSTOP) for 60 s;
//! 2. the kube-apiserver is killed and started again;
//! 3. etcd is paused for 30 s;
//! 4. the node agent is restarted while the pods keep running;
//! 5. during a 20 s API-server pause a model server really dies: the gateway's own checks eject it.
//!
//! Each scenario: 0 failed requests during and 20 s after; the endpoint wholly Ready in the API (status
//! phase, pods, Deployment) within 10 s of the resume; never two operator leaders at once; and at the end
//! no Deployment, key Secret or routing changed. `ANSHIN_OUTAGE_ROUNDS=N` repeats the five scenarios
//! (the failure this guards against was a race); one JSON line per scenario is printed.
//! The scenarios break the shared control plane, so they live in this binary of their own.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anshin_crds::ModelVersion;
use anshin_crds::model_version::ModelVersionPhase;
use anshin_e2e::control_plane::Component;
use anshin_e2e::fixture::{ClusterOp, TestCluster, eventually, shared};
use anshin_operator::runtime::startup;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::json;
use support::drill::{
    OperatorSetup, Replicas, Unchanged, endpoint_ready, metric, model_server_pid,
};
use support::stack::{Load, Pace, chat_endpoint_with_tenant, create, start_gateway, worker};
use support::{files_of, free_port};

/// How long the client keeps counting after a scenario's recovery action.
const AFTER: Duration = Duration::from_secs(20);
/// The endpoint must be wholly Ready again within this long after the control plane is back.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// What one scenario measured.
struct Outcome {
    requests: usize,
    failed: usize,
    /// From the control plane being back until the endpoint was last seen not wholly Ready.
    not_ready_for: Duration,
    /// Samples (every 250 ms after the recovery) at which it was not wholly Ready.
    not_ready_samples: usize,
    /// Most backends the gateway served on last known good at any sample.
    held_max: f64,
}

/// The running stack a scenario acts on.
struct Stack {
    cluster: &'static TestCluster,
    client: kube::Client,
    ns: String,
    url: String,
    key: String,
    gateway_metrics: u16,
}

impl Stack {
    async fn op(&self, op: ClusterOp) {
        self.cluster.run_op(op).await.expect("cluster operation");
    }

    /// Runs `drill` under load; `drill` returns once the control plane is back (the resume). Then the
    /// load goes on for [`AFTER`] while the endpoint's readiness is sampled.
    async fn under_load<F, Fut>(&self, drill: F) -> Outcome
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let load = Arc::new(Load::default());
        let pace = Pace {
            url: self.url.clone(),
            key: self.key.clone(),
            max_requests: 2_000,
            deadline: Instant::now() + Duration::from_secs(240),
            pause: Duration::from_secs(2),
        };
        let workers: Vec<_> = (0..4)
            .map(|_| tokio::spawn(worker(load.clone(), pace.clone())))
            .collect();
        tokio::time::sleep(Duration::from_secs(3)).await;
        drill().await;
        let back = Instant::now();
        let (mut last_not_ready, mut not_ready_samples, mut held_max) = (None, 0, 0.0f64);
        while back.elapsed() < AFTER {
            if endpoint_ready(&self.client, &self.ns, "chat").await != Some(true) {
                last_not_ready = Some(Instant::now());
                not_ready_samples += 1;
            }
            let held = metric(self.gateway_metrics, "anshin_gateway_backends_held").await;
            held_max = held_max.max(held.unwrap_or(0.0));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        load.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for w in workers {
            let _ = w.await;
        }
        Outcome {
            requests: load.sent(),
            failed: load.failed(),
            not_ready_for: last_not_ready.map_or(Duration::ZERO, |t| t - back),
            not_ready_samples,
            held_max,
        }
    }

    async fn pause(&self, c: Component, for_: Duration) -> Outcome {
        self.under_load(|| async move {
            self.op(ClusterOp::Pause(c)).await;
            tokio::time::sleep(for_).await;
            self.op(ClusterOp::Resume(c)).await;
        })
        .await
    }

    /// A model server dies (SIGKILL) while the API server is paused: the gateway must stop using it
    /// by its own checks, since the API cannot tell it.
    async fn backend_dies_during_outage(&self) -> Outcome {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns);
        let lp =
            ListParams::default().labels(&format!("{}=chat", anshin_crds::labels::LABEL_ENDPOINT));
        let ip = pods.list(&lp).await.expect("pods").items[0]
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .expect("pod IP");
        let pid = model_server_pid(&ip).expect("the model server process of the pod");
        let endpoint = format!("endpoint=\"{}/chat\"", self.ns);
        let port = self.gateway_metrics;
        self.under_load(|| async move {
            self.op(ClusterOp::Pause(Component::ApiServer)).await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            // The model server found by its pod IP, started by this test's cluster.
            let killed = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            assert!(killed.is_ok_and(|s| s.success()), "kill {pid}");
            let ejected = eventually(
                "the gateway to eject the dead backend",
                Duration::from_secs(10),
                || async {
                    let m = anshin_e2e::http::get(
                        format!("127.0.0.1:{port}").parse().ok()?,
                        "/metrics",
                        Duration::from_secs(1),
                    )
                    .await
                    .ok()?;
                    let healthy: f64 = m
                        .body
                        .lines()
                        .filter(|l| {
                            l.starts_with("anshin_gateway_backends_healthy")
                                && l.contains(&endpoint)
                        })
                        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                        .sum();
                    (healthy == 1.0).then_some(())
                },
            );
            ejected.await;
            tokio::time::sleep(Duration::from_secs(15)).await;
            self.op(ClusterOp::Resume(Component::ApiServer)).await;
        })
        .await
    }
}

fn report(round: usize, scenario: &str, o: &Outcome) {
    println!(
        "{}",
        json!({"round": round, "scenario": scenario, "requests": o.requests, "failed": o.failed,
               "not_ready_after_recovery_s": o.not_ready_for.as_secs_f64(),
               "not_ready_samples": o.not_ready_samples, "gateway_held_backends_max": o.held_max})
    );
}

async fn deploy(cluster: &'static TestCluster, dir: &std::path::Path) -> (Stack, Replicas) {
    let ns = cluster.namespace("control-plane-outage").await;
    let client = ns.client();
    startup::install_crds(&client).await.expect("CRDs");
    let replicas = Replicas::start(
        OperatorSetup {
            ns: ns.name().into(),
            kubeconfig: cluster.kubeconfig().clone(),
            dir: dir.to_path_buf(),
            lease_seconds: 4,
        },
        2,
    );
    let (port, gateway_metrics) = (free_port(), free_port());
    let gateway = start_gateway(ns.name(), cluster.kubeconfig(), dir, port, gateway_metrics);
    std::mem::forget(gateway); // killed with the test binary (atexit hook of anshin_e2e::process)
    let model = anshin_inference::fixture::write_hf(&dir.join("model"), false).expect("tiny model");
    let mvs: Api<ModelVersion> = ns.api();
    create(&mvs, json!({"apiVersion": "anshin.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": "tiny-v1"},
        "spec": {"model": "tiny", "version": "tiny-v1", "lineage": {"method": "Scratch"},
                 "artifact": {"uri": format!("file://{}", model.display()), "files": files_of(&model)}}})).await;
    eventually("tiny-v1 verified", Duration::from_secs(90), || async {
        (mvs.get("tiny-v1").await.ok()?.status?.phase == ModelVersionPhase::Verified).then_some(())
    })
    .await;
    let key = chat_endpoint_with_tenant(&ns.client(), ns.name()).await;
    eventually(
        "the endpoint wholly Ready",
        Duration::from_secs(120),
        || async {
            endpoint_ready(&client, ns.name(), "chat")
                .await
                .filter(|r| *r)
        },
    )
    .await;
    let stack = Stack {
        cluster,
        client: client.clone(),
        ns: ns.name().into(),
        url: format!("http://127.0.0.1:{port}/v1/chat/completions"),
        key,
        gateway_metrics,
    };
    std::mem::forget(ns); // the namespace outlives the scenarios; the cluster goes with the binary
    (stack, replicas)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_endpoint_keeps_serving_through_control_plane_failures_and_recovers_by_itself() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster = shared();
    let dir = tempfile::tempdir().expect("dir");
    let (stack, replicas) = deploy(cluster, dir.path()).await;
    let served = stack.under_load(|| async {}).await;
    assert_eq!(served.failed, 0, "the baseline load must pass");
    let before = Unchanged::read(&stack.client, &stack.ns, "chat").await;
    let rounds: usize = std::env::var("ANSHIN_OUTAGE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut outcomes = Vec::new();
    for round in 1..=rounds {
        let api = Component::ApiServer;
        let o = stack.pause(api, Duration::from_secs(60)).await;
        outcomes.push((round, "apiserver paused 60 s", o));
        let o = stack
            .under_load(|| async { stack.op(ClusterOp::Restart(api)).await })
            .await;
        outcomes.push((round, "apiserver killed and restarted", o));
        let o = stack.pause(Component::Etcd, Duration::from_secs(30)).await;
        outcomes.push((round, "etcd paused 30 s", o));
        let o = stack
            .under_load(|| async { stack.op(ClusterOp::RestartNodeAgent).await })
            .await;
        outcomes.push((round, "node agent restarted", o));
        let o = stack.backend_dies_during_outage().await;
        outcomes.push((
            round,
            "model server killed during a 20 s apiserver pause",
            o,
        ));
        for (r, name, o) in outcomes.iter().filter(|(r, ..)| *r == round) {
            report(*r, name, o);
        }
    }
    let two_leaders = replicas
        .two_leaders
        .load(std::sync::atomic::Ordering::SeqCst);
    let restarts = replicas.restarts.load(std::sync::atomic::Ordering::SeqCst);
    eventually(
        "exactly one operator leader",
        Duration::from_secs(30),
        || async { (replicas.leaders().await == 1).then_some(()) },
    )
    .await;
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(stack.client.clone(), &stack.ns);
    let marked = events.list(&ListParams::default()).await.map_or(0, |l| {
        l.items
            .iter()
            .filter(|e| e.reason.as_deref() == Some("NodeNotReady"))
            .map(|e| e.count.unwrap_or(1))
            .sum::<i32>()
    });
    println!(
        "operator restarts: {restarts}; samples with two leaders: {two_leaders}; pods marked NotReady by the node controller: {marked}"
    );
    let leader_gauges: Vec<Option<f64>> = {
        let mut v = Vec::new();
        for p in &replicas.ports {
            v.push(metric(*p, "anshin_operator_leader").await);
        }
        v
    };
    for (round, name, o) in &outcomes {
        assert_eq!(
            o.failed, 0,
            "round {round}, {name}: {} of {} requests failed",
            o.failed, o.requests
        );
        assert!(
            o.not_ready_for <= READY_WITHIN,
            "round {round}, {name}: the endpoint was not wholly Ready {:?} after recovery",
            o.not_ready_for
        );
    }
    assert_eq!(
        two_leaders, 0,
        "two operators led at once; gauges now {leader_gauges:?}"
    );
    let after = Unchanged::read(&stack.client, &stack.ns, "chat").await;
    assert_eq!(
        before, after,
        "no rollout, scale, key or routing change across the outages"
    );
    replicas.stop().await;
}
