//! The real Kubernetes control plane of one local cluster: etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler, all on 127.0.0.1 with free ports.
//!
//! [`ControlPlane::start`] creates certificates, starts the four programs as children of this process,
//! waits until each is healthy and writes a kubeconfig; [`ControlPlane::stop`] stops them in reverse
//! order by PID. Several control planes can run side by side: every port is picked free at start.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::binaries::{BinariesError, ControlPlaneBinaries};
use crate::certs::{CertsError, ClusterCerts};
use crate::components::{
    apiserver_command, controller_manager_command, etcd_command, scheduler_command,
};
use crate::kubeconfig::{self, KubeconfigError};
use crate::process::{ManagedProcess, ProcessError};

/// How long each component may take to become healthy.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(90);

/// Errors starting the control plane.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    /// The binaries are not installed.
    #[error(transparent)]
    Binaries(#[from] BinariesError),
    /// Certificates could not be made.
    #[error(transparent)]
    Certs(#[from] CertsError),
    /// A program could not be started.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// The kubeconfig could not be written or used.
    #[error(transparent)]
    Kubeconfig(#[from] KubeconfigError),
    /// A directory could not be created, or no free port found.
    #[error("control plane setup in {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A component exited or did not become healthy in time.
    #[error(
        "{component} did not become healthy within {timeout:?} ({why}); last log lines of {log}:\n{tail}"
    )]
    Unhealthy {
        /// The component.
        component: String,
        /// Why it is considered unhealthy.
        why: String,
        /// How long was waited.
        timeout: Duration,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
}

/// Ports of one control plane, all on 127.0.0.1.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// etcd client port.
    pub etcd_client: u16,
    /// etcd peer port.
    pub etcd_peer: u16,
    /// API server (HTTPS).
    pub apiserver: u16,
    /// controller-manager plain-HTTP health port.
    pub controller_manager: u16,
    /// scheduler plain-HTTP health port.
    pub scheduler: u16,
}

/// One program of the control plane, for the failure drills of [`ControlPlane::pause`],
/// [`ControlPlane::resume`] and [`ControlPlane::restart`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// etcd.
    Etcd,
    /// kube-apiserver.
    ApiServer,
    /// kube-controller-manager (node lifecycle, Deployments, garbage collection …).
    ControllerManager,
    /// kube-scheduler.
    Scheduler,
}

impl Component {
    /// The process name (also its log file's stem).
    pub fn name(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::ApiServer => "kube-apiserver",
            Component::ControllerManager => "kube-controller-manager",
            Component::Scheduler => "kube-scheduler",
        }
    }
}

/// A running control plane; stopped on [`ControlPlane::stop`] or when dropped.
#[derive(Debug)]
pub struct ControlPlane {
    bins: ControlPlaneBinaries,
    dir: PathBuf,
    ports: Ports,
    certs: ClusterCerts,
    kubeconfig: PathBuf,
    processes: Vec<ManagedProcess>,
}

impl ControlPlane {
    /// Starts a control plane whose state, logs and kubeconfig live in `dir` (created if missing).
    pub async fn start(bins: &ControlPlaneBinaries, dir: &Path) -> Result<Self, ControlPlaneError> {
        for sub in ["certs", "etcd", "logs"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path)
                .map_err(|source| ControlPlaneError::Io { path, source })?;
        }
        let certs = ClusterCerts::create(&dir.join("certs"))?;
        let ports = free_ports(dir)?;
        let kubeconfig = dir.join("kubeconfig");
        kubeconfig::write(&kubeconfig, ports.apiserver, &certs)?;
        let mut cp = Self {
            bins: bins.clone(),
            dir: dir.to_path_buf(),
            ports,
            certs,
            kubeconfig,
            processes: Vec::new(),
        };
        for c in [Component::Etcd, Component::ApiServer] {
            let cmd = cp.command(c);
            cp.spawn(c.name(), cmd)?;
        }
        cp.wait_apiserver().await?;
        for c in [Component::ControllerManager, Component::Scheduler] {
            let cmd = cp.command(c);
            cp.spawn(c.name(), cmd)?;
        }
        cp.wait_healthy(Component::ControllerManager).await?;
        cp.wait_healthy(Component::Scheduler).await?;
        Ok(cp)
    }

    fn command(&self, c: Component) -> Command {
        match c {
            Component::Etcd => etcd_command(&self.bins, &self.dir, &self.ports),
            Component::ApiServer => apiserver_command(&self.bins, &self.certs, &self.ports),
            Component::ControllerManager => controller_manager_command(&self.bins, self),
            Component::Scheduler => scheduler_command(&self.bins, self),
        }
    }

    async fn wait_healthy(&mut self, c: Component) -> Result<(), ControlPlaneError> {
        match c {
            Component::Etcd => Ok(()),
            Component::ApiServer => self.wait_apiserver().await,
            Component::ControllerManager => {
                self.wait_http(c.name(), self.ports.controller_manager)
                    .await
            }
            Component::Scheduler => self.wait_http(c.name(), self.ports.scheduler).await,
        }
    }

    fn process(&self, c: Component) -> Option<&ManagedProcess> {
        self.processes.iter().find(|p| p.name() == c.name())
    }

    /// Freezes `c` (SIGSTOP): it keeps its connections open and answers nothing, as a hung program does.
    pub fn pause(&self, c: Component) {
        if let Some(p) = self.process(c) {
            p.signal(libc::SIGSTOP);
        }
    }

    /// Lets a paused `c` run again (SIGCONT).
    pub fn resume(&self, c: Component) {
        if let Some(p) = self.process(c) {
            p.signal(libc::SIGCONT);
        }
    }

    /// Kills `c` (SIGKILL, a crash), starts it again with the same command line and data, and waits
    /// until it is healthy (the API server: `/readyz`; etcd: the API server's `/readyz` again).
    pub async fn restart(&mut self, c: Component) -> Result<(), ControlPlaneError> {
        if let Some(i) = self.processes.iter().position(|p| p.name() == c.name()) {
            let mut old = self.processes.remove(i);
            old.kill_now();
            let log = old.log_path().to_path_buf();
            let process = ManagedProcess::spawn(c.name(), &mut self.command(c), &log)?;
            self.processes.insert(i, process);
        }
        match c {
            Component::Etcd => self.wait_apiserver().await,
            _ => self.wait_healthy(c).await,
        }
    }

    /// The kubeconfig file (admin token, CA-verified TLS).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The directory holding state, certificates and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The ports in use.
    pub fn ports(&self) -> Ports {
        self.ports
    }

    /// The API server URL.
    pub fn server_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.ports.apiserver)
    }

    /// `(name, pid, log file)` of every component.
    pub fn components(&self) -> Vec<(String, u32, PathBuf)> {
        self.processes
            .iter()
            .map(|p| (p.name().to_string(), p.pid(), p.log_path().to_path_buf()))
            .collect()
    }

    /// A kube client for this cluster, as the admin.
    pub async fn client(&self) -> Result<kube::Client, ControlPlaneError> {
        Ok(kubeconfig::client(&self.kubeconfig).await?)
    }

    /// The last `lines` lines of every component's log, for failure reports.
    pub fn log_tails(&self, lines: usize) -> String {
        self.processes
            .iter()
            .map(|p| {
                format!(
                    "--- {} ({}) ---\n{}",
                    p.name(),
                    p.log_path().display(),
                    tail(p.log_path(), lines)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Stops every component in reverse start order (SIGTERM, then SIGKILL after 10 s).
    pub async fn stop(mut self) {
        while let Some(mut p) = self.processes.pop() {
            p.signal(libc::SIGCONT);
            p.stop(Duration::from_secs(10)).await;
        }
    }

    fn spawn(&mut self, name: &str, mut cmd: Command) -> Result<(), ControlPlaneError> {
        let log = self.dir.join("logs").join(format!("{name}.log"));
        self.processes
            .push(ManagedProcess::spawn(name, &mut cmd, &log)?);
        Ok(())
    }

    async fn wait_apiserver(&mut self) -> Result<(), ControlPlaneError> {
        let client = kubeconfig::client(&self.kubeconfig).await?;
        let ready = || async {
            let req = http::Request::get("/readyz").body(Vec::new()).ok()?;
            client
                .request_text(req)
                .await
                .ok()
                .filter(|body| body.trim() == "ok")
        };
        self.wait_until("kube-apiserver", || async { ready().await.is_some() })
            .await
    }

    async fn wait_http(&mut self, name: &str, port: u16) -> Result<(), ControlPlaneError> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let healthy = || async move {
            let r = crate::http::get(addr, "/healthz", Duration::from_secs(2)).await;
            matches!(r, Ok(r) if r.status == 200)
        };
        self.wait_until(name, healthy).await
    }

    /// Polls `check` until true; fails early if any component exits.
    async fn wait_until<F, Fut>(&mut self, name: &str, check: F) -> Result<(), ControlPlaneError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + HEALTH_TIMEOUT;
        loop {
            if let Some(dead) = self
                .processes
                .iter_mut()
                .find_map(|p| p.try_exit().map(|s| (p.name().to_string(), s)))
            {
                return Err(self.unhealthy(&dead.0, format!("exited with {}", dead.1)));
            }
            if check().await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.unhealthy(name, "timed out".into()));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn unhealthy(&self, component: &str, why: String) -> ControlPlaneError {
        let log = self.dir.join("logs").join(format!("{component}.log"));
        ControlPlaneError::Unhealthy {
            component: component.to_string(),
            why,
            timeout: HEALTH_TIMEOUT,
            tail: tail(&log, 30),
            log,
        }
    }
}

/// The last `lines` lines of a text file (empty if unreadable).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn free_ports(dir: &Path) -> Result<Ports, ControlPlaneError> {
    // Hold all listeners until every port is chosen, so the five are distinct.
    let listeners = (0..5)
        .map(|_| TcpListener::bind(("127.0.0.1", 0)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| ControlPlaneError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    let port = |i: usize| listeners[i].local_addr().map(|a| a.port());
    let io = |source| ControlPlaneError::Io {
        path: dir.to_path_buf(),
        source,
    };
    Ok(Ports {
        etcd_client: port(0).map_err(io)?,
        etcd_peer: port(1).map_err(io)?,
        apiserver: port(2).map_err(io)?,
        controller_manager: port(3).map_err(io)?,
        scheduler: port(4).map_err(io)?,
    })
}
