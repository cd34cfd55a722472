//! Agent restart with pods kept running (what a kubelet restart is): the hand-over file.
//!
//! On [`super::NodeAgent::detach`] each pod worker writes `agent-state.json` in its pod directory — per
//! running container its PID, the process's start time (`/proc/<pid>/stat` field 22), start timestamp,
//! restart count, readiness and startup state — and lets go of the processes without stopping them. The
//! next agent on the same directory reads and removes the file when it takes the pod on
//! ([`take`]) and adopts every process that still runs under the same PID *and* start time, so a
//! recycled PID is never taken for a container. Readiness is kept, as the kubelet keeps it across its
//! restarts since 1.21; probes go on from there.

use std::path::{Path, PathBuf};
use std::time::Instant;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use serde::{Deserialize, Serialize};

use super::container::{ContainerRun, State};
use super::probe::ProbeState;
use super::status;
use crate::process::ManagedProcess;

/// The hand-over file's name in a pod's directory.
pub const STATE_FILE: &str = "agent-state.json";

/// One running container as handed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerHandover {
    /// Container name.
    pub name: String,
    /// PID (also the process-group ID).
    pub pid: u32,
    /// `/proc/<pid>/stat` field 22 when handed over.
    pub start_time: u64,
    /// When the container started (its `state.running.startedAt`, RFC 3339).
    pub started_at: String,
    /// Restarts so far.
    pub restart_count: i32,
    /// Readiness as last reported.
    pub ready: bool,
    /// Whether the startup probe had passed.
    pub started: bool,
}

/// The hand-over file: the running containers of one pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodHandover {
    /// The containers whose processes were left running.
    pub containers: Vec<ContainerHandover>,
}

/// Writes the hand-over file for `containers` into `dir`, then lets go of their processes without
/// stopping them. If the file cannot be written nobody could adopt them, so they are killed instead
/// (as on node loss) rather than left running unmanaged; the error is returned.
pub fn hand_over(dir: &Path, containers: &mut [ContainerRun]) -> std::io::Result<()> {
    let running = containers.iter().filter_map(|c| {
        let p = c.process.as_ref()?;
        let State::Running { started } = c.state else {
            return None;
        };
        Some(ContainerHandover {
            name: c.spec.name.clone(),
            pid: p.pid(),
            start_time: p.start_time()?,
            started_at: started.to_string(),
            restart_count: c.restart_count,
            ready: c.ready,
            started: c.started,
        })
    });
    let state = PodHandover {
        containers: running.collect(),
    };
    let written = serde_json::to_vec(&state)
        .map_err(std::io::Error::other)
        .and_then(|bytes| write_atomically(&dir.join(STATE_FILE), &bytes));
    for c in containers.iter_mut() {
        if let Some(p) = c.process.take() {
            if written.is_ok() {
                p.detach();
            } else {
                drop(p); // SIGKILL and reap
            }
        }
    }
    written
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Reads and removes the hand-over file in `dir` (a later agent must not adopt from a stale one).
pub fn take(dir: &Path) -> Option<PodHandover> {
    let path = dir.join(STATE_FILE);
    let bytes = std::fs::read(&path).ok()?;
    let _ = std::fs::remove_file(&path);
    match serde_json::from_slice(&bytes) {
        Ok(state) => Some(state),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "unreadable hand-over file; its processes are not adopted");
            None
        }
    }
}

/// Takes the process of `entry` on as `c`'s, if it still runs under the same PID and start time:
/// Running since its start, readiness and startup as handed over, probes due now (their initial delays
/// count from the container's start, long past). Returns false when the process is gone.
pub fn adopt(c: &mut ContainerRun, entry: &ContainerHandover, log: PathBuf) -> bool {
    let Some(process) = ManagedProcess::adopt(&c.spec.name, entry.pid, entry.start_time, &log)
    else {
        return false;
    };
    let now = Instant::now();
    c.process = Some(process);
    c.log = Some(log);
    c.state = State::Running {
        started: entry
            .started_at
            .parse()
            .unwrap_or_else(|_| Timestamp::now()),
    };
    c.restart_count = entry.restart_count;
    c.ready = entry.ready;
    c.started = entry.started;
    c.probes = [
        &c.spec.startup_probe,
        &c.spec.liveness_probe,
        &c.spec.readiness_probe,
    ]
    .map(|p| {
        p.as_ref().map(|p| ProbeState::new(p, now)).map(|mut s| {
            s.next = now;
            s
        })
    });
    true
}

/// Takes `pod` (in directory `dir`) on from an earlier agent run. Restart counts come from its API
/// status. A container the API shows running is adopted from the hand-over file when its process still
/// runs, and otherwise counted as killed (exit 137) and restarted per the restart policy. When a process
/// was adopted the pod was never down, so its init containers that succeeded stay done instead of
/// running again. Returns whether any process was adopted.
pub fn take_over(
    pod: &Pod,
    dir: &Path,
    containers: &mut [ContainerRun],
    init_count: usize,
) -> bool {
    let policy = status::restart_policy(pod);
    let api = pod.status.clone().unwrap_or_default();
    let previous: Vec<ContainerStatus> = (api.init_container_statuses.into_iter().flatten())
        .chain(api.container_statuses.into_iter().flatten())
        .collect();
    let handed = take(dir).unwrap_or_default();
    let (init, apps) = containers.split_at_mut(init_count.min(containers.len()));
    let mut adopted = false;
    for c in apps.iter_mut() {
        let Some(prev) = previous.iter().find(|p| p.name == c.spec.name) else {
            continue;
        };
        c.restart_count = prev.restart_count;
        let state = prev.state.as_ref();
        let Some(running) = state.and_then(|s| s.running.as_ref()) else {
            continue;
        };
        let log = dir.join("logs").join(format!("{}.log", c.spec.name));
        let entry = handed.containers.iter().find(|h| h.name == c.spec.name);
        if entry.is_some_and(|entry| adopt(c, entry, log)) {
            adopted = true;
            continue;
        }
        let started = running.started_at.as_ref().map(|t| t.0);
        c.state = State::Running {
            started: started.unwrap_or_else(Timestamp::now),
        };
        c.record_exit(137, policy);
    }
    for c in init.iter_mut() {
        let Some(prev) = previous.iter().find(|p| p.name == c.spec.name) else {
            continue;
        };
        c.restart_count = prev.restart_count;
        let succeeded = prev.state.as_ref().and_then(|s| s.terminated.as_ref());
        if let Some(t) = succeeded.filter(|t| adopted && t.exit_code == 0) {
            let time = |t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
                t.map(|t| t.0).unwrap_or_else(Timestamp::now)
            };
            c.state = State::Terminated {
                exit_code: 0,
                reason: t.reason.clone().unwrap_or_else(|| "Completed".into()),
                started: time(t.started_at.as_ref()),
                finished: time(t.finished_at.as_ref()),
                message: String::new(),
            };
            c.done = true;
        }
    }
    adopted
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Container;
    use std::process::Command;

    fn container(name: &str) -> ContainerRun {
        ContainerRun::new(Container {
            name: name.into(),
            readiness_probe: Some(Default::default()),
            ..Default::default()
        })
    }

    #[test]
    fn a_handed_over_container_is_adopted_with_its_pid_readiness_and_restarts() {
        let dir = std::env::temp_dir().join(format!("anshin-handover-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let log = dir.join("c.log");
        let mut before = container("web");
        let process = ManagedProcess::spawn("web", Command::new("sleep").arg("30"), &log)
            .expect("sleep starts");
        let pid = process.pid();
        let started = Timestamp::now();
        before.process = Some(process);
        before.state = State::Running { started };
        (before.ready, before.started, before.restart_count) = (true, true, 2);
        let mut waiting = container("never-ran");
        hand_over(&dir, &mut [before, waiting]).expect("hand-over written");

        let state = take(&dir).expect("hand-over file");
        assert_eq!(state.containers.len(), 1, "only running containers");
        assert!(take(&dir).is_none(), "read once");
        let mut after = container("web");
        assert!(adopt(&mut after, &state.containers[0], log.clone()));
        assert_eq!(after.process.as_ref().map(|p| p.pid()), Some(pid));
        assert_eq!(after.state, State::Running { started });
        assert!(after.ready && after.started);
        assert_eq!(after.restart_count, 2);
        assert!(
            after.probes[2]
                .as_ref()
                .is_some_and(|p| p.next <= Instant::now())
        );

        after.process.take().expect("adopted").kill_now();
        waiting = container("web");
        assert!(
            !adopt(&mut waiting, &state.containers[0], log),
            "a process that is gone is not adopted"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
