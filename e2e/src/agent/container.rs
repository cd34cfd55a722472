//! One container of a pod as a local process: its state machine (Waiting → Running → Terminated →
//! back-off → Running …), restarts per `restartPolicy`, and its probes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Container;

use super::probe::{self, ProbeState, Target};
use crate::process::{ManagedProcess, exit_code};

/// Back-off before restarting a container: doubles from this…
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// …up to this (the kubelet uses 10 s → 5 min; tests need faster turns).
const BACKOFF_CAP: Duration = Duration::from_secs(20);

/// A container's state as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Not running: `reason` like ContainerCreating, CrashLoopBackOff, ErrImagePull.
    Waiting {
        /// Machine-readable reason.
        reason: String,
        /// Details.
        message: String,
    },
    /// Running since `started`.
    Running {
        /// Start time.
        started: Timestamp,
    },
    /// Exited.
    Terminated {
        /// Exit code (128 + signal when killed).
        exit_code: i32,
        /// Completed, Error.
        reason: String,
        /// Start time.
        started: Timestamp,
        /// Exit time.
        finished: Timestamp,
        /// Termination message: with `terminationMessagePolicy: FallbackToLogsOnError`, the tail of a
        /// failed container's log (at most 80 lines and 2048 bytes, as the kubelet does); else empty.
        message: String,
    },
}

/// The restart policy of the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Always restart.
    Always,
    /// Restart on non-zero exit.
    OnFailure,
    /// Never restart.
    Never,
}

impl RestartPolicy {
    /// Parses the pod spec's value (default Always).
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some("OnFailure") => Self::OnFailure,
            Some("Never") => Self::Never,
            _ => Self::Always,
        }
    }

    /// Whether a container that exited with `code` is started again.
    pub fn restarts(self, code: i32) -> bool {
        match self {
            Self::Always => true,
            Self::OnFailure => code != 0,
            Self::Never => false,
        }
    }
}

/// A container and the process playing it.
#[derive(Debug)]
pub struct ContainerRun {
    /// The container spec.
    pub spec: Container,
    /// The running process, if any.
    pub process: Option<ManagedProcess>,
    /// Current state.
    pub state: State,
    /// The previous termination, once restarted.
    pub last_state: Option<State>,
    /// Restarts so far.
    pub restart_count: i32,
    /// Readiness as reported.
    pub ready: bool,
    /// Startup probe passed (or there is none) and the process runs.
    pub started: bool,
    /// Not before this instant may the container (re)start.
    pub not_before: Instant,
    /// No restart will follow the current termination.
    pub done: bool,
    /// Resolved environment of the current run.
    pub env: BTreeMap<String, String>,
    /// Probe bookkeeping: startup, liveness, readiness.
    pub probes: [Option<ProbeState>; 3],
    /// The last probe failure that crossed its threshold, e.g. "Liveness probe failed: …".
    pub probe_failure: Option<String>,
    /// Log file of the current or last run.
    pub log: Option<std::path::PathBuf>,
}

impl ContainerRun {
    /// A container waiting to be created.
    pub fn new(spec: Container) -> Self {
        Self {
            spec,
            process: None,
            state: State::Waiting {
                reason: "ContainerCreating".into(),
                message: String::new(),
            },
            last_state: None,
            restart_count: 0,
            ready: false,
            started: false,
            not_before: Instant::now(),
            done: false,
            env: BTreeMap::new(),
            probes: [None, None, None],
            probe_failure: None,
            log: None,
        }
    }

    /// Whether it waits for its (re)start and the back-off has passed.
    pub fn due_to_start(&self, now: Instant) -> bool {
        self.process.is_none() && !self.done && now >= self.not_before
    }

    /// Starts the process with `argv`, `env` and working dir `dir`, logging to `log`.
    pub fn start(
        &mut self,
        argv: &[String],
        env: BTreeMap<String, String>,
        dir: &Path,
        log: &Path,
    ) -> Result<(), String> {
        let (program, args) = argv.split_first().ok_or("empty command")?;
        let mut cmd = Command::new(program);
        cmd.args(args).env_clear().envs(&env).current_dir(dir);
        let process =
            ManagedProcess::spawn(&self.spec.name, &mut cmd, log).map_err(|e| e.to_string())?;
        let now = Instant::now();
        self.process = Some(process);
        self.log = Some(log.to_path_buf());
        self.env = env;
        self.state = State::Running {
            started: Timestamp::now(),
        };
        self.ready = false;
        self.started = self.spec.startup_probe.is_none();
        self.probes = [
            &self.spec.startup_probe,
            &self.spec.liveness_probe,
            &self.spec.readiness_probe,
        ]
        .map(|p| p.as_ref().map(|p| ProbeState::new(p, now)));
        Ok(())
    }

    /// Marks a failure to create the container; retried after a short pause.
    pub fn fail_to_start(&mut self, reason: &str, message: String) {
        self.state = State::Waiting {
            reason: reason.into(),
            message,
        };
        self.not_before = Instant::now() + Duration::from_secs(2);
    }

    /// Notices an exited process: records the termination and schedules a restart per `policy`.
    pub fn reap(&mut self, policy: RestartPolicy) -> bool {
        let Some(status) = self.process.as_mut().and_then(|p| p.try_exit()) else {
            return false;
        };
        self.process = None;
        self.record_exit(exit_code(status), policy);
        true
    }

    /// Records an exit with `code` and decides about the restart.
    pub fn record_exit(&mut self, code: i32, policy: RestartPolicy) {
        let started = match self.state {
            State::Running { started } => started,
            _ => Timestamp::now(),
        };
        let reason = if code == 0 { "Completed" } else { "Error" };
        let terminated = State::Terminated {
            exit_code: code,
            reason: reason.into(),
            started,
            finished: Timestamp::now(),
            message: self.termination_message(code),
        };
        self.ready = false;
        self.started = false;
        if policy.restarts(code) {
            let delay = BACKOFF_BASE
                .saturating_mul(1 << self.restart_count.clamp(0, 16))
                .min(BACKOFF_CAP);
            self.last_state = Some(terminated);
            self.restart_count += 1;
            self.not_before = Instant::now() + delay;
            self.state = State::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: format!(
                    "back-off {}s restarting failed container={}",
                    delay.as_secs(),
                    self.spec.name
                ),
            };
        } else {
            self.done = true;
            self.state = terminated;
        }
    }

    /// The kubelet's FallbackToLogsOnError: a failed container's message is the tail of its log.
    fn termination_message(&self, code: i32) -> String {
        let fallback =
            self.spec.termination_message_policy.as_deref() == Some("FallbackToLogsOnError");
        match (&self.log, fallback && code != 0) {
            (Some(log), true) => log_tail(log, 80, 2048),
            _ => String::new(),
        }
    }

    /// Graceful stop: the preStop hook (bounded by `deadline`), SIGTERM, wait until `deadline`, SIGKILL.
    pub async fn terminate(
        &mut self,
        ip: IpAddr,
        work_dir: &Path,
        mounts: &[(String, PathBuf)],
        deadline: Instant,
    ) {
        if self.process.is_none() {
            return;
        }
        if let Some(hook) = self
            .spec
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.clone())
        {
            let target = Target {
                ip,
                container: &self.spec,
                env: &self.env,
                work_dir,
                mounts,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let result = match (&hook.exec, &hook.http_get) {
                (Some(exec), _) => probe::exec_action(exec, &target, left).await,
                (_, Some(http)) => probe::http_get(http, &target, left).await,
                _ => Ok(()),
            };
            if let Err(e) = result {
                tracing::warn!(container = %self.spec.name, error = %e, "preStop hook failed");
            }
        }
        if let Some(p) = self.process.as_mut() {
            p.signal(libc::SIGTERM);
            if p.wait_timeout(deadline.saturating_duration_since(Instant::now()))
                .await
                .is_none()
            {
                p.kill_now();
            }
        }
        self.reap(RestartPolicy::Never);
    }

    /// Runs the probes that are due; returns true when liveness or startup failed (kill the process).
    pub async fn run_probes(&mut self, target: &Target<'_>) -> bool {
        let now = Instant::now();
        let specs = [
            self.spec.startup_probe.clone(),
            self.spec.liveness_probe.clone(),
            self.spec.readiness_probe.clone(),
        ];
        for (i, spec) in specs.iter().enumerate() {
            let Some(probe) = spec else { continue };
            // Liveness and readiness wait for the startup probe, as in the kubelet.
            if (i > 0 && !self.started) || (i == 0 && self.started) {
                continue;
            }
            let Some(state) = self.probes[i].as_mut().filter(|s| now >= s.next) else {
                continue;
            };
            let result = probe::run(probe, target).await;
            let kind = ["Startup", "Liveness", "Readiness"][i];
            let transition = state.record(probe, result.is_ok(), Instant::now());
            if let (Some(false), Err(e)) = (transition, &result) {
                self.probe_failure = Some(format!("{kind} probe failed: {e}"));
            }
            match (i, transition) {
                (0, Some(true)) => self.started = true,
                (0 | 1, Some(false)) => {
                    tracing::info!(container = %self.spec.name, error = ?result.err(), "probe failed; killing container");
                    return true;
                }
                (2, Some(ok)) => self.ready = ok,
                _ => {}
            }
        }
        if self.spec.readiness_probe.is_none() {
            self.ready = self.started;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> ContainerRun {
        let mut c = ContainerRun::new(Container {
            name: "c".into(),
            ..Default::default()
        });
        c.state = State::Running {
            started: Timestamp::now(),
        };
        c
    }

    #[test]
    fn never_policy_keeps_the_termination() {
        let mut c = run();
        c.record_exit(1, RestartPolicy::Never);
        assert!(c.done);
        assert!(
            matches!(c.state, State::Terminated { exit_code: 1, ref reason, .. } if reason == "Error")
        );
        assert_eq!(c.restart_count, 0);
    }

    #[test]
    fn always_policy_backs_off_and_counts_restarts() {
        let mut c = run();
        c.record_exit(0, RestartPolicy::Always);
        assert!(!c.done);
        assert_eq!(c.restart_count, 1);
        assert!(
            matches!(c.state, State::Waiting { ref reason, .. } if reason == "CrashLoopBackOff")
        );
        assert!(matches!(
            c.last_state,
            Some(State::Terminated { exit_code: 0, .. })
        ));
        assert!(!RestartPolicy::OnFailure.restarts(0));
        assert!(RestartPolicy::OnFailure.restarts(2));
    }
}

/// The last `lines` lines of `path`, at most `bytes` bytes (cut at a character boundary).
pub fn log_tail(path: &Path, lines: usize, bytes: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let all: Vec<&str> = text.trim_end().lines().collect();
    let mut tail = all[all.len().saturating_sub(lines)..].join("\n");
    while tail.len() > bytes {
        let cut = tail.char_indices().nth(1).map_or(tail.len(), |(i, _)| i);
        tail.drain(..cut);
    }
    tail
}

#[cfg(test)]
mod tail_tests {
    use super::log_tail;

    #[test]
    fn tail_keeps_the_last_lines_within_the_byte_limit() {
        let dir = std::env::temp_dir().join(format!("anshin-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("c.log");
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&file, text).expect("write");
        let tail = log_tail(&file, 80, 2048);
        assert!(
            tail.starts_with("line 20\n") && tail.ends_with("line 99"),
            "{tail}"
        );
        assert_eq!(log_tail(&file, 80, 7), "line 99");
        assert_eq!(log_tail(&dir.join("missing.log"), 80, 2048), "");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
