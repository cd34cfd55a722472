//! Child processes that never outlive their owner.
//!
//! Every program the local cluster starts (etcd, the control plane, pod containers) is spawned here as
//! a direct child in its own process group, with its output appended to a log file. Three layers make
//! sure nothing is left running: [`ManagedProcess::stop`] (SIGTERM, grace period, SIGKILL, reap),
//! `Drop` (SIGKILL and reap), and — for a test binary that simply exits — an `atexit` hook that kills and
//! reaps every child still registered, plus `PR_SET_PDEATHSIG` so children die even if the owner is
//! killed with SIGKILL. Signals go to the child's own process group only, identified by its PID.
//!
//! A node agent that restarts in place (a kubelet restart) hands its pod processes over:
//! [`ManagedProcess::detach`] gives up the handle without killing (the PID stays registered for the exit
//! hook) and [`ManagedProcess::adopt`] takes a PID back, but only while `/proc/<pid>/stat` still shows
//! the same start time, so a recycled PID is never adopted. An adopted process is reaped with
//! `waitpid(WNOHANG)` when it is our child; otherwise its end is read from `/proc` (gone or zombie).

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
    handle: Handle,
    log: PathBuf,
    exit: Option<ExitStatus>,
    detached: bool,
}

/// How the process is held: spawned here, or adopted by PID after a hand-over.
#[derive(Debug)]
enum Handle {
    Spawned(Child),
    Adopted { pid: u32, start_time: u64 },
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
            handle: Handle::Spawned(child),
            log: log.to_path_buf(),
            exit: None,
            detached: false,
        })
    }

    /// Takes over process `pid` (started by an earlier owner and [`detach`](Self::detach)ed) if
    /// `/proc/<pid>/stat` still shows `start_time` (field 22, clock ticks since boot), i.e. it is the same
    /// process and not a recycled PID. A process that has already exited (a zombie) is adopted too: its
    /// exit status is then read at the first [`try_exit`](Self::try_exit).
    pub fn adopt(name: &str, pid: u32, start_time: u64, log: &Path) -> Option<Self> {
        let stat = read_stat(pid)?;
        if stat.start_time != start_time || stat.state == 'X' {
            return None;
        }
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        if !live.contains(&pid) {
            live.push(pid);
        }
        Some(Self {
            name: name.to_string(),
            handle: Handle::Adopted { pid, start_time },
            log: log.to_path_buf(),
            exit: None,
            detached: false,
        })
    }

    /// Gives up this handle without stopping the process, for a later [`adopt`](Self::adopt); returns
    /// the PID. The PID stays registered, so the exit hook still kills it if this program exits.
    pub fn detach(mut self) -> u32 {
        self.detached = true;
        self.pid()
    }

    /// The process ID (also its process-group ID).
    pub fn pid(&self) -> u32 {
        match &self.handle {
            Handle::Spawned(child) => child.id(),
            Handle::Adopted { pid, .. } => *pid,
        }
    }

    /// The process's start time (`/proc/<pid>/stat` field 22), while it has not been reaped.
    pub fn start_time(&self) -> Option<u64> {
        match &self.handle {
            Handle::Adopted { start_time, .. } => Some(*start_time),
            Handle::Spawned(_) if self.exit.is_none() => {
                read_stat(self.pid()).map(|s| s.start_time)
            }
            Handle::Spawned(_) => None,
        }
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
            // SAFETY: kill(2) with our own child's process-group id; the child is not yet reaped (or,
            // adopted, was checked against its start time), so the id has not been reused.
            unsafe { libc::kill(-(self.pid() as i32), signal) };
        }
    }

    /// The exit status if the process has exited (reaps it).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_some() {
            return self.exit;
        }
        let status = match &mut self.handle {
            Handle::Spawned(child) => child.try_wait().ok().flatten(),
            Handle::Adopted { pid, start_time } => adopted_exit(*pid, *start_time),
        };
        if let Some(status) = status {
            self.exit = Some(status);
            forget_pid(self.pid());
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
        let status = match &mut self.handle {
            Handle::Spawned(child) => child.wait().ok(),
            Handle::Adopted { pid, start_time } => {
                let (pid, start_time) = (*pid, *start_time);
                // Bounded: a SIGKILLed process is gone (or a zombie) within moments.
                (0..100).find_map(|_| {
                    let exit = adopted_exit(pid, start_time);
                    if exit.is_none() {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    exit
                })
            }
        };
        let status = status.unwrap_or_else(|| ExitStatus::from_raw(libc::SIGKILL));
        self.exit = Some(status);
        forget_pid(self.pid());
        status
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        if !self.detached {
            self.kill_now();
        }
    }
}

/// What the agent needs from `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3: R, S, D, Z (zombie: exited, not yet reaped), X …
    pub state: char,
    /// Field 22: start time in clock ticks after boot; with the PID it names one process for good.
    pub start_time: u64,
}

/// Reads `/proc/<pid>/stat`; `None` when the process does not exist.
pub fn read_stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Parses the text of `/proc/<pid>/stat` (pure). The command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // After field 3 (state), field 22 is the 19th.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_time })
}

/// The exit of an adopted process: reaped with `waitpid(WNOHANG)` when it is our child, otherwise read
/// from `/proc` (gone, a zombie, or a new process under the PID all mean it exited; its exit status is
/// unknown and reported as a SIGKILL, 137).
fn adopted_exit(pid: u32, start_time: u64) -> Option<ExitStatus> {
    let mut raw = 0;
    // SAFETY: waitpid on one PID with WNOHANG; it only reaps that process, and only if it is our child.
    let reaped = unsafe { libc::waitpid(pid as i32, &mut raw, libc::WNOHANG) };
    match reaped {
        r if r == pid as i32 => Some(ExitStatus::from_raw(raw)),
        0 => None,
        _ => match read_stat(pid) {
            Some(s) if s.start_time == start_time && s.state != 'Z' && s.state != 'X' => None,
            _ => Some(ExitStatus::from_raw(libc::SIGKILL)),
        },
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

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let text = "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1000000 200 18446744073709551615";
        assert_eq!(
            parse_stat(text),
            Some(ProcStat {
                state: 'S',
                start_time: 987654
            })
        );
        assert_eq!(parse_stat("4242 (short) Z 1"), None);
    }

    #[tokio::test]
    async fn a_detached_process_keeps_running_and_is_adopted_only_with_its_start_time() {
        let log =
            std::env::temp_dir().join(format!("anshin-process-test3-{}.log", std::process::id()));
        let p = ManagedProcess::spawn("sleep", Command::new("sleep").arg("30"), &log).unwrap();
        let start_time = p.start_time().expect("start time of a running process");
        let pid = p.detach();
        let state = read_stat(pid).map(|s| s.state);
        assert!(matches!(state, Some('R' | 'S')), "still running: {state:?}");
        assert!(ManagedProcess::adopt("sleep", pid, start_time + 1, &log).is_none());
        let mut adopted = ManagedProcess::adopt("sleep", pid, start_time, &log).expect("adopted");
        assert!(adopted.try_exit().is_none());
        let status = adopted.stop(Duration::from_secs(5)).await;
        assert_eq!(
            exit_code(status),
            128 + libc::SIGTERM,
            "reaped as our child"
        );
        assert!(read_stat(pid).is_none(), "reaped, not left a zombie");
        let _ = std::fs::remove_file(log);
    }
}
