//! The node agent restarted while its pods keep running, as a kubelet restart: the pods stay Ready and
//! keep serving, their processes and restart counts are unchanged, and the new agent manages them (a
//! deletion stops the process gracefully, a killed process is restarted). This binary has its own
//! cluster because the restart affects every pod on it.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anshin_e2e::fixture::{eventually, shared};
use anshin_e2e::process::read_stat;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn web_pod(name: &str, sigterm_file: &Path) -> Pod {
    serde_json::from_value(json!({ "metadata": { "name": name }, "spec": {
        "terminationGracePeriodSeconds": 5,
        "containers": [{ "name": "main", "image": "anshin/testpod",
            "args": ["--port", "8080", "--sigterm-file", sigterm_file.to_string_lossy()],
            "env": [{ "name": "POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } }],
            "readinessProbe": { "tcpSocket": { "port": 8080 }, "periodSeconds": 1 } }] } }))
    .expect("pod JSON")
}

/// What one look at a pod shows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    ready: String,
    container_id: String,
    restarts: i32,
}

async fn look(pods: &Api<Pod>, name: &str) -> Option<(Seen, String)> {
    let status = pods.get_status(name).await.ok()?.status?;
    let ready = status
        .conditions?
        .into_iter()
        .find(|c| c.type_ == "Ready")?
        .status;
    let c = status.container_statuses?.into_iter().next()?;
    let seen = Seen {
        ready,
        container_id: c.container_id.unwrap_or_default(),
        restarts: c.restart_count,
    };
    Some((seen, status.pod_ip?))
}

fn pid_of(container_id: &str) -> u32 {
    container_id
        .strip_prefix("anshin://")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("container ID {container_id:?} names no PID"))
}

/// Looks at `names` every 100 ms (status and one HTTP request each) until `stop`; returns every distinct
/// status seen per pod, and the number of failed requests.
async fn observe(
    pods: Api<Pod>,
    targets: Vec<(String, String)>,
    stop: Arc<AtomicBool>,
) -> (Vec<BTreeSet<Seen>>, u32, u32) {
    let mut seen = vec![BTreeSet::new(); targets.len()];
    let (mut looks, mut failed) = (0, 0);
    while !stop.load(Ordering::Relaxed) {
        for (i, (name, ip)) in targets.iter().enumerate() {
            match look(&pods, name).await {
                Some((s, _)) => drop(seen[i].insert(s)),
                None => failed += 1,
            }
            let addr: SocketAddr = format!("{ip}:8080").parse().expect("pod address");
            if anshin_e2e::http::get(addr, "/", Duration::from_secs(2))
                .await
                .is_err()
            {
                failed += 1;
            }
        }
        looks += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (seen, looks, failed)
}

#[tokio::test]
async fn restarting_the_node_agent_keeps_pods_running_and_ready() {
    let cluster = shared();
    let ns = cluster.namespace("agent-restart").await;
    let pods: Api<Pod> = ns.api();
    let dir = std::env::temp_dir().join(format!("anshin-e2e-restart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("test dir");
    let names = ["kept", "deleted"];
    for name in names {
        let pod = web_pod(name, &dir.join(format!("{name}.sigterm")));
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("pod created");
    }
    let mut before = Vec::new();
    for name in names {
        let seen = eventually(&format!("{name} to be Ready"), WAIT, || async {
            look(&pods, name).await.filter(|(s, _)| s.ready == "True")
        })
        .await;
        before.push(seen);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let targets = names
        .iter()
        .zip(&before)
        .map(|(n, (_, ip))| (n.to_string(), ip.clone()))
        .collect();
    let observer = tokio::spawn(observe(pods.clone(), targets, stop.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster
        .restart_node_agent()
        .await
        .expect("node agent restarted");
    // Long enough for the new agent to probe, post its status and sync it once.
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    let (seen, looks, failed) = observer.await.expect("observer");
    assert!(looks >= 20, "observed {looks} times");
    assert_eq!(failed, 0, "no failed requests or lookups");
    for ((name, (first, _)), seen) in names.iter().zip(&before).zip(&seen) {
        let all: Vec<&Seen> = seen.iter().collect();
        assert_eq!(
            all,
            [first],
            "{name}: always Ready with the same process and no restart"
        );
        let pid = pid_of(&first.container_id);
        let state = read_stat(pid).map(|s| s.state);
        assert!(
            matches!(state, Some('R' | 'S')),
            "{name}: process {pid} runs: {state:?}"
        );
    }

    // The new agent manages the adopted processes: a deletion stops one gracefully…
    let deleted_pid = pid_of(&before[1].0.container_id);
    pods.delete("deleted", &DeleteParams::default())
        .await
        .expect("pod deleted");
    eventually("the deleted pod to be gone", WAIT, || async {
        pods.get_opt("deleted").await.ok()?.is_none().then_some(())
    })
    .await;
    let sigterm = std::fs::read_to_string(dir.join("deleted.sigterm")).unwrap_or_default();
    assert_eq!(sigterm, "sigterm\n", "the adopted process got SIGTERM");
    assert!(
        read_stat(deleted_pid).is_none(),
        "process {deleted_pid} exited and was reaped"
    );

    // …and a killed one is restarted per the restart policy.
    let kept_pid = pid_of(&before[0].0.container_id);
    // SAFETY: kill(2) on the pod process this test's cluster started, whose PID was just checked alive.
    unsafe { libc::kill(kept_pid as i32, libc::SIGKILL) };
    let restarted = eventually("the killed process to be restarted", WAIT, || async {
        let (s, _) = look(&pods, "kept").await?;
        (s.restarts == 1 && s.ready == "True").then_some(s)
    })
    .await;
    assert_ne!(restarted.container_id, before[0].0.container_id);
    let last = pods.get_status("kept").await.expect("pod").status;
    let exit = last
        .and_then(|s| s.container_statuses)
        .and_then(|c| c.into_iter().next())
        .and_then(|c| c.last_state?.terminated)
        .map(|t| t.exit_code);
    assert_eq!(exit, Some(137), "the kill is recorded as the last state");
    let _ = std::fs::remove_dir_all(dir);
}
