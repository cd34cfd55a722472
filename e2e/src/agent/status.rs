//! The pod status a kubelet would report, computed from the containers' states (pure).

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use serde_json::{Value, json};

use super::container::{ContainerRun, RestartPolicy, State};

/// Pod phase from the containers: Succeeded/Failed when all are done, Pending until each has started
/// once, Running otherwise.
pub fn phase(containers: &[ContainerRun]) -> &'static str {
    if !containers.is_empty() && containers.iter().all(|c| c.done) {
        let ok = containers
            .iter()
            .all(|c| matches!(c.state, State::Terminated { exit_code: 0, .. }));
        return if ok { "Succeeded" } else { "Failed" };
    }
    let never_ran = |c: &ContainerRun| c.process.is_none() && c.last_state.is_none() && !c.done;
    if containers.iter().any(never_ran) {
        "Pending"
    } else {
        "Running"
    }
}

/// Where a pod's init containers stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitOutcome {
    /// All succeeded (or there are none).
    Done,
    /// Some still have to run or succeed.
    Running,
    /// One failed and will not be restarted.
    Failed,
}

/// The outcome of the init containers (pure).
pub fn init_outcome(init: &[ContainerRun]) -> InitOutcome {
    let succeeded =
        |c: &ContainerRun| c.done && matches!(c.state, State::Terminated { exit_code: 0, .. });
    if init.iter().any(|c| c.done && !succeeded(c)) {
        InitOutcome::Failed
    } else if init.iter().all(succeeded) {
        InitOutcome::Done
    } else {
        InitOutcome::Running
    }
}

/// The JSON of one container state.
pub fn state_json(state: &State) -> Value {
    match state {
        State::Waiting { reason, message } => {
            json!({ "waiting": { "reason": reason, "message": message } })
        }
        State::Running { started } => json!({ "running": { "startedAt": started.to_string() } }),
        State::Terminated {
            exit_code,
            reason,
            started,
            finished,
            message,
        } => {
            let mut t = json!({
                "exitCode": exit_code, "reason": reason, "startedAt": started.to_string(),
                "finishedAt": finished.to_string(), "containerID": "anshin://exited" });
            if !message.is_empty() {
                t["message"] = json!(message);
            }
            json!({ "terminated": t })
        }
    }
}

fn container_status(c: &ContainerRun) -> Value {
    let pid = c.process.as_ref().map(|p| p.pid()).unwrap_or(0);
    json!({
        "name": c.spec.name,
        "image": c.spec.image.clone().unwrap_or_default(),
        "imageID": format!("anshin-local://{}", c.spec.image.clone().unwrap_or_default()),
        "containerID": format!("anshin://{pid}"),
        "ready": c.ready,
        "started": c.started,
        "restartCount": c.restart_count,
        "state": state_json(&c.state),
        "lastState": c.last_state.as_ref().map(state_json).unwrap_or_else(|| json!({})),
    })
}

/// Inputs of the status besides the containers.
#[derive(Debug, Clone)]
pub struct PodFacts<'a> {
    /// The pod as last seen (for condition transition times).
    pub pod: &'a Pod,
    /// The pod's IP.
    pub pod_ip: &'a str,
    /// When the agent started the pod.
    pub start_time: Timestamp,
    /// Set when the pod cannot run at all (phase Failed with this reason and message).
    pub failure: Option<(&'a str, &'a str)>,
    /// How many of the containers are init containers (they come first).
    pub init_count: usize,
}

/// The full `status` object for a status-subresource merge patch.
pub fn pod_status(facts: &PodFacts<'_>, all: &[ContainerRun]) -> Value {
    let (init, containers) = all.split_at(facts.init_count.min(all.len()));
    let initialized = init_outcome(init);
    let phase = match (facts.failure, initialized) {
        (Some(_), _) | (_, InitOutcome::Failed) => "Failed",
        (_, InitOutcome::Running) => "Pending",
        (_, InitOutcome::Done) => phase(containers),
    };
    let terminal = phase == "Succeeded" || phase == "Failed";
    let all_ready = !terminal && !containers.is_empty() && containers.iter().all(|c| c.ready);
    let not_ready: Vec<&str> = containers
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.spec.name.as_str())
        .collect();
    let (reason, message) = if terminal {
        ("PodCompleted", String::new())
    } else {
        (
            "ContainersNotReady",
            format!("containers with unready status: [{}]", not_ready.join(" ")),
        )
    };
    let cond = |t: &str, ok: bool| {
        let status = if ok { "True" } else { "False" };
        let mut c = json!({ "type": t, "status": status, "lastProbeTime": null,
                            "lastTransitionTime": transition_time(facts.pod, t, status) });
        if !ok {
            c["reason"] = json!(reason);
            c["message"] = json!(message);
        }
        c
    };
    let mut status = json!({
        "phase": phase,
        "hostIP": "127.0.0.1",
        "podIP": facts.pod_ip,
        "podIPs": [ { "ip": facts.pod_ip } ],
        "startTime": facts.start_time.to_string(),
        "conditions": [ cond("Initialized", initialized == InitOutcome::Done), cond("Ready", all_ready), cond("ContainersReady", all_ready),
                        cond("PodScheduled", true) ],
        "containerStatuses": containers.iter().map(container_status).collect::<Vec<_>>(),
    });
    if !init.is_empty() {
        status["initContainerStatuses"] =
            json!(init.iter().map(container_status).collect::<Vec<_>>());
    }
    if let Some((reason, message)) = facts.failure {
        status["reason"] = json!(reason);
        status["message"] = json!(message);
    }
    status
}

fn transition_time(pod: &Pod, type_: &str, status: &str) -> String {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_ && c.status == status))
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0.to_string())
        .unwrap_or_else(|| Timestamp::now().to_string())
}

/// Status with the volatile parts removed, to decide whether a patch is needed.
pub fn fingerprint(status: &Value) -> String {
    let mut s = status.clone();
    if let Some(conds) = s["conditions"].as_array_mut() {
        for c in conds {
            c["lastTransitionTime"] = Value::Null;
        }
    }
    s.to_string()
}

/// What of a pod status the control plane acts on: phase, IP, conditions (type → status) and each
/// container's ready flag — timestamps, reasons and messages left out.
#[derive(Debug, PartialEq, Eq)]
struct Essentials {
    phase: Option<String>,
    pod_ip: Option<String>,
    conditions: BTreeMap<String, String>,
    ready: BTreeMap<String, bool>,
}

fn essentials(status: &Value) -> Essentials {
    let text = |v: &Value| v.as_str().map(str::to_string);
    let conditions = status["conditions"].as_array().into_iter().flatten();
    let containers = ["containerStatuses", "initContainerStatuses"]
        .iter()
        .flat_map(|k| status[*k].as_array().into_iter().flatten());
    Essentials {
        phase: text(&status["phase"]),
        pod_ip: text(&status["podIP"]),
        conditions: conditions
            .filter_map(|c| Some((text(&c["type"])?, text(&c["status"])?)))
            .collect(),
        ready: containers
            .filter_map(|c| Some((text(&c["name"])?, c["ready"].as_bool().unwrap_or(false))))
            .collect(),
    }
}

/// Whether the status the API holds (`seen`, from the watcher) differs from the one the agent computed
/// in what the control plane acts on: then the agent posts its own again (pure). This is how a pod that
/// the node-lifecycle controller marked NotReady during an outage becomes Ready again once its probes
/// pass. Conditions the agent does not compute (readiness gates' own) are not compared.
pub fn differs_from_api(computed: &Value, seen: Option<&PodStatus>) -> bool {
    let seen = seen
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(Value::Null);
    let ours = essentials(computed);
    let mut theirs = essentials(&seen);
    theirs
        .conditions
        .retain(|type_, _| ours.conditions.contains_key(type_));
    ours != theirs
}

/// The pod's restart policy.
pub fn restart_policy(pod: &Pod) -> RestartPolicy {
    RestartPolicy::parse(pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()))
}

/// Labels that identify a pod in logs.
pub fn pod_key(pod: &Pod) -> String {
    let m = &pod.metadata;
    format!(
        "{}/{}",
        m.namespace.as_deref().unwrap_or("default"),
        m.name.as_deref().unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Container;

    fn c(state: State, done: bool) -> ContainerRun {
        let mut run = ContainerRun::new(Container {
            name: "c".into(),
            ..Default::default()
        });
        run.state = state;
        run.done = done;
        run
    }

    fn terminated(code: i32) -> State {
        let now = Timestamp::now();
        State::Terminated {
            exit_code: code,
            reason: "x".into(),
            started: now,
            finished: now,
            message: String::new(),
        }
    }

    #[test]
    fn phases_follow_container_outcomes() {
        assert_eq!(phase(&[c(terminated(0), true)]), "Succeeded");
        assert_eq!(
            phase(&[c(terminated(0), true), c(terminated(1), true)]),
            "Failed"
        );
        assert_eq!(
            phase(&[c(
                State::Waiting {
                    reason: "ContainerCreating".into(),
                    message: String::new()
                },
                false
            )]),
            "Pending"
        );
    }

    #[test]
    fn init_containers_gate_the_pod() {
        let waiting = || State::Waiting {
            reason: "PodInitializing".into(),
            message: String::new(),
        };
        assert_eq!(init_outcome(&[]), InitOutcome::Done);
        assert_eq!(
            init_outcome(&[c(terminated(0), true), c(waiting(), false)]),
            InitOutcome::Running
        );
        assert_eq!(
            init_outcome(&[c(terminated(0), true), c(terminated(2), true)]),
            InitOutcome::Failed
        );
        let pod = Pod::default();
        let facts = PodFacts {
            pod: &pod,
            pod_ip: "127.3.0.2",
            start_time: Timestamp::now(),
            failure: None,
            init_count: 1,
        };
        let s = pod_status(&facts, &[c(terminated(1), true), c(waiting(), false)]);
        assert_eq!(s["phase"], "Failed");
        assert_eq!(
            s["initContainerStatuses"][0]["state"]["terminated"]["exitCode"],
            1
        );
        assert_eq!(s["conditions"][0]["status"], "False");
    }

    fn running_ready_status() -> Value {
        let mut run = c(
            State::Running {
                started: Timestamp::now(),
            },
            false,
        );
        run.ready = true;
        run.started = true;
        let pod = Pod::default();
        let facts = PodFacts {
            pod: &pod,
            pod_ip: "127.3.0.2",
            start_time: Timestamp::now(),
            failure: None,
            init_count: 0,
        };
        pod_status(&facts, &[run])
    }

    fn as_api(status: &Value) -> PodStatus {
        serde_json::from_value(status.clone()).expect("a pod status")
    }

    #[test]
    fn the_node_controllers_not_ready_mark_is_overwritten_by_a_ready_pod() {
        let ours = running_ready_status();
        assert!(
            !differs_from_api(&ours, Some(&as_api(&ours))),
            "equal: no post"
        );
        let mut marked = ours.clone();
        marked["conditions"][1] = json!({ "type": "Ready", "status": "False", "reason": "NodeNotReady",
            "lastTransitionTime": "2026-01-01T00:00:00Z" });
        assert!(differs_from_api(&ours, Some(&as_api(&marked))));
        assert!(differs_from_api(&ours, None), "nothing posted yet");
    }

    #[test]
    fn timestamps_and_foreign_conditions_are_not_differences() {
        let ours = running_ready_status();
        let mut seen = ours.clone();
        seen["conditions"][1]["lastTransitionTime"] = json!("2020-01-01T00:00:00Z");
        seen["conditions"][1]["reason"] = json!("whatever");
        seen["startTime"] = json!("2020-01-01T00:00:00Z");
        seen["conditions"]
            .as_array_mut()
            .expect("conditions")
            .push(json!({ "type": "example.com/gate", "status": "False" }));
        assert!(!differs_from_api(&ours, Some(&as_api(&seen))));
        let mut unready = ours.clone();
        unready["containerStatuses"][0]["ready"] = json!(false);
        assert!(differs_from_api(&ours, Some(&as_api(&unready))));
        let mut moved = ours.clone();
        moved["podIP"] = json!("127.3.0.9");
        assert!(differs_from_api(&ours, Some(&as_api(&moved))));
    }

    #[test]
    fn status_reports_ip_and_unready_conditions() {
        let pod = Pod::default();
        let facts = PodFacts {
            pod: &pod,
            pod_ip: "127.3.0.2",
            start_time: Timestamp::now(),
            failure: None,
            init_count: 0,
        };
        let s = pod_status(
            &facts,
            &[c(
                State::Running {
                    started: Timestamp::now(),
                },
                false,
            )],
        );
        assert_eq!(s["podIP"], "127.3.0.2");
        assert_eq!(s["conditions"][1]["type"], "Ready");
        assert_eq!(s["conditions"][1]["status"], "False");
        assert_eq!(s["containerStatuses"][0]["restartCount"], 0);
    }
}
