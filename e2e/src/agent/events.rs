//! Events about pods, as the kubelet reports them (Started, BackOff, Failed, Unhealthy, Killing),
//! derived from changes of the containers' states between two status reports.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use super::container::{ContainerRun, State};

/// What of a container is compared between reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    state: String,
    probe_failure: Option<String>,
}

/// A recorder reporting as `anshin-node-agent`.
pub fn recorder(client: kube::Client) -> Arc<Recorder> {
    let reporter = Reporter {
        controller: "anshin-node-agent".into(),
        instance: None,
    };
    Arc::new(Recorder::new(client, reporter))
}

/// The snapshots of `containers`, to compare with the next report.
pub fn snapshot(containers: &[ContainerRun]) -> Vec<Snapshot> {
    containers
        .iter()
        .map(|c| Snapshot {
            state: key(&c.state),
            probe_failure: c.probe_failure.clone(),
        })
        .collect()
}

fn key(state: &State) -> String {
    match state {
        State::Waiting { reason, message } => format!("waiting {reason} {message}"),
        State::Running { started } => format!("running {started}"),
        State::Terminated {
            exit_code,
            finished,
            ..
        } => format!("terminated {exit_code} {finished}"),
    }
}

/// Events for what changed since `before` (pure).
pub fn transitions(
    before: &[Snapshot],
    containers: &[ContainerRun],
) -> Vec<(EventType, String, String)> {
    let mut out = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        let old = before.get(i).cloned().unwrap_or_default();
        let name = &c.spec.name;
        if key(&c.state) != old.state {
            match &c.state {
                State::Running { .. } => out.push((
                    EventType::Normal,
                    "Started".into(),
                    format!("Started container {name}"),
                )),
                State::Waiting { reason, .. } if reason == "CrashLoopBackOff" => out.push((
                    EventType::Warning,
                    "BackOff".into(),
                    format!("Back-off restarting failed container {name}"),
                )),
                State::Waiting { reason, message } if reason != "ContainerCreating" => out.push((
                    EventType::Warning,
                    "Failed".into(),
                    format!("Error: {reason}: {message}"),
                )),
                _ => {}
            }
        }
        if let Some(failure) = c
            .probe_failure
            .as_ref()
            .filter(|f| old.probe_failure.as_ref() != Some(f))
        {
            out.push((EventType::Warning, "Unhealthy".into(), failure.clone()));
        }
    }
    out
}

/// Publishes events about `pod` in the background (an event lost is not worth blocking a pod for).
pub fn publish(recorder: &Arc<Recorder>, pod: &Pod, events: Vec<(EventType, String, String)>) {
    if events.is_empty() {
        return;
    }
    let (recorder, reference) = (recorder.clone(), pod.object_ref(&()));
    tokio::spawn(async move {
        for (type_, reason, note) in events {
            let ev = Event {
                type_,
                reason,
                note: Some(note),
                action: "Kubelet".into(),
                secondary: None,
            };
            if let Err(e) = recorder.publish(&ev, &reference).await {
                tracing::debug!(error = %e, "event not recorded");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;
    use k8s_openapi::api::core::v1::Container;

    #[test]
    fn start_backoff_and_probe_failures_become_events() {
        let mut c = ContainerRun::new(Container {
            name: "web".into(),
            ..Default::default()
        });
        let before = snapshot(std::slice::from_ref(&c));
        c.state = State::Running {
            started: Timestamp::now(),
        };
        let reasons = |evs: Vec<(EventType, String, String)>| {
            evs.into_iter().map(|e| e.1).collect::<Vec<_>>()
        };
        assert_eq!(
            reasons(transitions(&before, std::slice::from_ref(&c))),
            ["Started"]
        );
        let before = snapshot(std::slice::from_ref(&c));
        c.probe_failure = Some("Liveness probe failed".into());
        c.record_exit(1, super::super::container::RestartPolicy::Always);
        assert_eq!(
            reasons(transitions(&before, std::slice::from_ref(&c))),
            ["BackOff", "Unhealthy"]
        );
        assert!(
            transitions(
                &snapshot(std::slice::from_ref(&c)),
                std::slice::from_ref(&c)
            )
            .is_empty()
        );
    }
}
