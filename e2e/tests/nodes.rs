//! Node failures: the agent can report a node NotReady or delete it, and the agent process can be
//! killed (node loss: its pods die with it, the control plane notices) and restarted (pods run again);
//! a pod the control plane marked NotReady (as the node-lifecycle controller does during an outage) is
//! made Ready again by the agent while its probes pass.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use anshin_e2e::agent::{AgentConfig, NodeAgent, NodeSpec};
use anshin_e2e::fixture::{eventually, shared};
use anshin_e2e::images::ImageTable;
use anshin_e2e::process::ManagedProcess;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

async fn ready_status(nodes: &Api<Node>, name: &str) -> Option<String> {
    let node = nodes.get_opt(name).await.ok()??;
    let conds = node.status?.conditions?;
    conds
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status)
}

#[tokio::test]
async fn agent_marks_a_node_not_ready_and_deletes_it_on_demand() {
    let cluster = shared();
    let client = cluster.client().await;
    let dir = std::env::temp_dir().join(format!("anshin-e2e-flaky-{}", std::process::id()));
    let mut spec = NodeSpec::cpu("flaky-0");
    spec.taints.push(
        serde_json::from_value(
            json!({ "key": "anshin.dev/test", "value": "flaky", "effect": "NoSchedule" }),
        )
        .expect("taint"),
    );
    let config = AgentConfig {
        nodes: vec![spec],
        images: ImageTable::new(),
        dir: dir.clone(),
        apiserver_port: 0,
        heartbeat: Duration::from_secs(1),
    };
    let agent = NodeAgent::start(client.clone(), config)
        .await
        .expect("agent started");
    let nodes: Api<Node> = Api::all(client);
    assert_eq!(
        ready_status(&nodes, "flaky-0").await.as_deref(),
        Some("True")
    );
    agent
        .set_ready("flaky-0", false)
        .await
        .expect("marked NotReady");
    eventually(
        "flaky-0 to stay NotReady across heartbeats",
        WAIT,
        || async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            (ready_status(&nodes, "flaky-0").await.as_deref() == Some("False")).then_some(())
        },
    )
    .await;
    agent.delete_node("flaky-0").await.expect("node deleted");
    eventually("flaky-0 to be gone", WAIT, || async {
        nodes.get_opt("flaky-0").await.ok()?.is_none().then_some(())
    })
    .await;
    agent.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

fn spawn_agent(kubeconfig: &std::path::Path, dir: &std::path::Path) -> ManagedProcess {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anshin-node-agent"));
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--dir")
        .arg(dir);
    cmd.args([
        "--node",
        "edge-0",
        "--taint",
        "anshin.dev/test=edge:NoSchedule",
    ]);
    cmd.args([
        "--image",
        &format!("anshin/testpod={}", env!("CARGO_BIN_EXE_anshin-testpod")),
    ]);
    ManagedProcess::spawn("node-agent", &mut cmd, &dir.join("agent.log"))
        .expect("agent process started")
}

async fn ready_ip(pods: &Api<Pod>, min_restarts: i32) -> String {
    eventually(
        &format!("the edge pod ready with {min_restarts}+ restarts"),
        WAIT,
        || async {
            let status = pods.get("edge").await.ok()?.status?;
            let c = status.container_statuses?.into_iter().next()?;
            (c.ready && c.restart_count >= min_restarts)
                .then_some(status.pod_ip)
                .flatten()
        },
    )
    .await
}

async fn answers(ip: &str) -> bool {
    let addr: SocketAddr = format!("{ip}:8080").parse().expect("pod ip");
    anshin_e2e::http::get(addr, "/", Duration::from_secs(2))
        .await
        .is_ok()
}

#[tokio::test]
async fn killed_agent_takes_its_pods_down_and_the_control_plane_notices() {
    let cluster = shared();
    let ns = cluster.namespace("node-loss").await;
    let dir = std::env::temp_dir().join(format!("anshin-e2e-edge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("agent dir");
    let mut agent = spawn_agent(cluster.kubeconfig(), &dir);
    let nodes: Api<Node> = Api::all(ns.client());
    eventually("edge-0 to be Ready", WAIT, || async {
        (ready_status(&nodes, "edge-0").await.as_deref() == Some("True")).then_some(())
    })
    .await;

    let pods: Api<Pod> = ns.api();
    let pod = json!({ "metadata": { "name": "edge" }, "spec": {
        "nodeSelector": { "kubernetes.io/hostname": "edge-0" },
        "tolerations": [{ "key": "anshin.dev/test", "operator": "Exists", "effect": "NoSchedule" }],
        "containers": [{ "name": "main", "image": "anshin/testpod", "args": ["--port", "8080"],
            "env": [{ "name": "POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } }],
            "readinessProbe": { "tcpSocket": { "port": 8080 }, "periodSeconds": 1 } }] } });
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(pod).expect("pod"),
    )
    .await
    .expect("pod created");
    let ip = ready_ip(&pods, 0).await;
    assert!(answers(&ip).await);

    agent.kill_now();
    eventually("the pod's process to die with its agent", WAIT, || async {
        (!answers(&ip).await).then_some(())
    })
    .await;

    // A restarted agent runs the pod again, counting the lost process as a restart.
    agent = spawn_agent(cluster.kubeconfig(), &dir);
    let ip = ready_ip(&pods, 1).await;
    assert!(answers(&ip).await, "restarted pod answers on {ip}");

    agent.kill_now();
    eventually(
        "the node-lifecycle controller to mark edge-0 Unknown",
        WAIT,
        || async {
            (ready_status(&nodes, "edge-0").await.as_deref() == Some("Unknown")).then_some(())
        },
    )
    .await;
    eventually(
        "the pod on the lost node to be evicted (deletion started)",
        WAIT,
        || async {
            pods.get("edge")
                .await
                .ok()?
                .metadata
                .deletion_timestamp
                .map(|_| ())
        },
    )
    .await;
    // Clean up as an administrator would after losing a node for good. (The pod GC controller would
    // also remove pods of a deleted Node, but only after a 40 s quarantine plus its 20 s period.)
    let force = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    pods.delete("edge", &force)
        .await
        .expect("pod of the lost node force-deleted");
    nodes
        .delete("edge-0", &DeleteParams::default())
        .await
        .expect("lost node deleted");
    let _ = std::fs::remove_dir_all(dir);
}

async fn ready_condition(pods: &Api<Pod>, name: &str) -> Option<(String, jiff::Timestamp)> {
    let conds = pods.get_status(name).await.ok()?.status?.conditions?;
    let ready = conds.into_iter().find(|c| c.type_ == "Ready")?;
    Some((ready.status, ready.last_transition_time?.0))
}

#[tokio::test]
async fn pod_marked_not_ready_by_the_control_plane_is_ready_again_within_seconds() {
    let ns = shared().namespace("marked-not-ready").await;
    let pods: Api<Pod> = ns.api();
    let pod = json!({ "metadata": { "name": "marked" }, "spec": { "containers": [{
        "name": "main", "image": "anshin/testpod", "args": ["--port", "8080"],
        "env": [{ "name": "POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } }],
        "readinessProbe": { "tcpSocket": { "port": 8080 }, "periodSeconds": 1 } }] } });
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(pod).expect("pod"),
    )
    .await
    .expect("pod created");
    eventually("the pod to be Ready", WAIT, || async {
        let (status, _) = ready_condition(&pods, "marked").await?;
        (status == "True").then_some(())
    })
    .await;

    // What the node-lifecycle controller writes for the pods of a node it finds unreachable.
    let mut conditions = pods
        .get_status("marked")
        .await
        .expect("pod")
        .status
        .and_then(|s| s.conditions)
        .expect("conditions");
    let marked_at = jiff::Timestamp::now();
    for c in conditions.iter_mut().filter(|c| c.type_ == "Ready") {
        c.status = "False".into();
        c.reason = Some("NodeNotReady".into());
        c.message = None;
        c.last_transition_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            marked_at,
        ));
    }
    let patch = json!({ "status": { "conditions": conditions } });
    pods.patch_status("marked", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("pod marked NotReady");
    let start = Instant::now();

    let since = eventually(
        "the agent to report the pod Ready again",
        Duration::from_secs(5),
        || async {
            let (status, since) = ready_condition(&pods, "marked").await?;
            (status == "True").then_some(since)
        },
    )
    .await;
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(
        since.as_second() >= marked_at.as_second(),
        "a real transition back to Ready gets a new time: {since} < {marked_at}"
    );
}
