//! Child processes that never outlive their owner.
//!
//! Every program the local cluster starts (etcd, the control plane, pod containers) is spawned here as
//! a direct child in its own process group, with its output appended to a log file. Three layers make
//! sure nothing is left running: [`ManagedProcess::stop`] (SIGTERM, grace period, SIGKILL, reap),
//! `Drop` (SIGKILL and reap), and — for a test binary that simply exits — an `atexit` hook that kills and
//! reaps every child still registered, plus `PR_SET_PDEATHSIG` so children die even if the owner is
//! killed with SIGKILL. Signals go to the child's own process group only, identified by its PID.

use std::fs::OpenOptions;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// PIDs of live children, killed by the `atexit` hook.
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static ATEXIT: Once = Once::new();

/// Errors starting or stopping a child process.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The log file could not be opened.
    #[error("cannot open log file {path}: {source}")]
    Log {
        /// The log path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `exec` failed (missing program, permissions).
    #[error("cannot start {name} ({program}): {source}")]
    Spawn {
        /// A short name for messages.
        name: String,
        /// The program path.
        program: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A running child process, in its own process group, logging to a file.
#[derive(Debug)]
pub struct ManagedProcess {
    name: String,
    child: Child,
    log: PathBuf,
    exit: Option<ExitStatus>,
}

impl ManagedProcess {
    /// Spawns `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Result<Self, ProcessError> {
        ATEXIT.call_once(|| {
            // SAFETY: registering a plain `extern "C" fn()` with libc's atexit has no preconditions.
            unsafe { libc::atexit(kill_all_at_exit) };
        });
        let open = || OpenOptions::new().create(true).append(true).open(log);
        let out = open().map_err(|source| ProcessError::Log {
            path: log.to_path_buf(),
            source,
        })?;
        let err = open().map_err(|source| ProcessError::Log {
            path: log.to_path_buf(),
            source,
        })?;
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        let child = cmd.spawn().map_err(|source| ProcessError::Spawn {
            name: name.to_string(),
            program: cmd.get_program().to_string_lossy().into_owned(),
            source,
        })?;
        live.push(child.id());
        Ok(Self {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
            exit: None,
        })
    }

    /// The process ID (also its process-group ID).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The short name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Sends `signal` to the process group of this child (no-op once it has been reaped).
    pub fn signal(&self, signal: i32) {
        if self.exit.is_none() {
            // SAFETY: kill(2) with our own child's process-group id; the child is not yet reaped, so the
            // id cannot have been reused.
            unsafe { libc::kill(-(self.child.id() as i32), signal) };
        }
    }

    /// The exit status if the process has exited (reaps it).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none()
            && let Ok(Some(status)) = self.child.try_wait()
        {
            self.exit = Some(status);
            forget_pid(self.child.id());
        }
        self.exit
    }

    /// Waits up to `timeout` for the process to exit.
    pub async fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL; returns the exit status.
    pub async fn stop(&mut self, grace: Duration) -> ExitStatus {
        self.signal(libc::SIGTERM);
        if let Some(status) = self.wait_timeout(grace).await {
            return status;
        }
        self.kill_now()
    }

    /// SIGKILL and reap, blocking briefly.
    pub fn kill_now(&mut self) -> ExitStatus {
        if let Some(status) = self.try_exit() {
            return status;
        }
        self.signal(libc::SIGKILL);
        let status = self
            .child
            .wait()
            .unwrap_or_else(|_| ExitStatus::from_raw(libc::SIGKILL));
        self.exit = Some(status);
        forget_pid(self.child.id());
        status
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// Exit code as Kubernetes reports it: the code, or 128 + signal number.
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

fn forget_pid(pid: u32) {
    let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    live.retain(|p| *p != pid);
}

extern "C" fn kill_all_at_exit() {
    let Ok(live) = LIVE.try_lock() else { return };
    for pid in live.iter() {
        // SAFETY: kill/waitpid on our own children's ids, which are unreaped (still registered).
        unsafe {
            libc::kill(-(*pid as i32), libc::SIGKILL);
            libc::waitpid(*pid as i32, std::ptr::null_mut(), 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stop_terminates_and_reports_signal_exit_code() {
        let log =
            std::env::temp_dir().join(format!("anshin-process-test-{}.log", std::process::id()));
        let mut p = ManagedProcess::spawn("sleep", Command::new("sleep").arg("30"), &log).unwrap();
        assert!(p.try_exit().is_none());
        let status = p.stop(Duration::from_secs(5)).await;
        assert_eq!(exit_code(status), 128 + libc::SIGTERM);
        let _ = std::fs::remove_file(log);
    }

    #[tokio::test]
    async fn exit_code_of_a_failing_program_is_kept() {
        let log =
            std::env::temp_dir().join(format!("anshin-process-test2-{}.log", std::process::id()));
        let mut p = ManagedProcess::spawn("false", &mut Command::new("false"), &log).unwrap();
        let status = p.wait_timeout(Duration::from_secs(5)).await.unwrap();
        assert_eq!(exit_code(status), 1);
        let _ = std::fs::remove_file(log);
    }
}
