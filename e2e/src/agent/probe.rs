//! Container probes (HTTP GET, TCP socket, exec) and lifecycle hooks, run against a pod's loopback IP.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, ExecAction, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// What a probe or hook needs to know about the container.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// The pod's IP.
    pub ip: IpAddr,
    /// The container (for named ports).
    pub container: &'a Container,
    /// Its resolved environment (for exec).
    pub env: &'a BTreeMap<String, String>,
    /// Working directory for exec.
    pub work_dir: &'a Path,
    /// Mounts whose paths are rewritten in exec commands.
    pub mounts: &'a [(String, PathBuf)],
}

/// Outcome of one probe run: success, or failure with a message for events and logs.
pub type ProbeResult = Result<(), String>;

/// Bookkeeping for one probe of one container.
#[derive(Debug, Clone)]
pub struct ProbeState {
    /// Consecutive successes.
    pub successes: i32,
    /// Consecutive failures.
    pub failures: i32,
    /// When it may run next.
    pub next: Instant,
}

impl ProbeState {
    /// A probe that first runs after its initial delay from `start`.
    pub fn new(probe: &Probe, start: Instant) -> Self {
        let delay = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        Self {
            successes: 0,
            failures: 0,
            next: start + delay,
        }
    }

    /// Records a result; returns `Some(true)` when the success threshold was just reached,
    /// `Some(false)` when the failure threshold was reached, `None` otherwise.
    pub fn record(&mut self, probe: &Probe, ok: bool, now: Instant) -> Option<bool> {
        self.next = now + Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
        if ok {
            self.failures = 0;
            self.successes += 1;
            (self.successes >= probe.success_threshold.unwrap_or(1).max(1)).then_some(true)
        } else {
            self.successes = 0;
            self.failures += 1;
            (self.failures >= probe.failure_threshold.unwrap_or(3).max(1)).then_some(false)
        }
    }
}

/// Runs `probe` once against `target`, bounded by its `timeoutSeconds`.
pub async fn run(probe: &Probe, target: &Target<'_>) -> ProbeResult {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(http) = &probe.http_get {
        return http_get(http, target, timeout).await;
    }
    if let Some(tcp) = &probe.tcp_socket {
        let addr = SocketAddr::new(
            host(tcp.host.as_deref(), target.ip),
            port(&tcp.port, target.container)?,
        );
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {addr}: {e}")),
            Err(_) => Err(format!("dial tcp {addr}: timeout")),
        };
    }
    if let Some(exec) = &probe.exec {
        return exec_action(exec, target, timeout).await;
    }
    Err("probe has no handler the agent supports (httpGet, tcpSocket, exec)".into())
}

/// Runs an HTTP GET handler: success for status 200–399.
pub async fn http_get(http: &HTTPGetAction, target: &Target<'_>, timeout: Duration) -> ProbeResult {
    if http
        .scheme
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"))
    {
        return Err("HTTPS probes are not supported by the anshin node agent".into());
    }
    let addr = SocketAddr::new(
        host(http.host.as_deref(), target.ip),
        port(&http.port, target.container)?,
    );
    let path = http.path.as_deref().unwrap_or("/");
    match crate::http::get(addr, path, timeout).await {
        Ok(r) if (200..400).contains(&r.status) => Ok(()),
        Ok(r) => Err(format!("HTTP probe failed with statuscode: {}", r.status)),
        Err(e) => Err(e.to_string()),
    }
}

/// Runs an exec handler (command on PATH or absolute, in the container's env and dir): success on exit 0.
pub async fn exec_action(exec: &ExecAction, target: &Target<'_>, timeout: Duration) -> ProbeResult {
    let argv: Vec<String> = exec
        .command
        .iter()
        .flatten()
        .map(|a| super::volumes::rewrite(a, target.mounts))
        .collect();
    let Some((program, args)) = argv.split_first() else {
        return Err("exec handler has an empty command".into());
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(target.env)
        .current_dir(target.work_dir)
        .kill_on_drop(true);
    cmd.stdin(std::process::Stdio::null());
    match tokio::time::timeout(timeout, cmd.output()).await {
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => Err(format!(
            "command {argv:?} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(Err(e)) => Err(format!("command {argv:?}: {e}")),
        Err(_) => Err(format!("command {argv:?} timed out after {timeout:?}")),
    }
}

fn host(host: Option<&str>, pod_ip: IpAddr) -> IpAddr {
    host.and_then(|h| h.parse().ok()).unwrap_or(pod_ip)
}

/// A numeric port, or a named container port.
pub fn port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).map_err(|_| format!("invalid port {p}")),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("container has no port named {name:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(json: serde_json::Value) -> Probe {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn thresholds_decide_transitions() {
        let p = probe(
            serde_json::json!({ "failureThreshold": 2, "successThreshold": 1, "periodSeconds": 1 }),
        );
        let now = Instant::now();
        let mut s = ProbeState::new(&p, now);
        assert_eq!(s.record(&p, false, now), None);
        assert_eq!(s.record(&p, false, now), Some(false));
        assert_eq!(s.record(&p, true, now), Some(true));
        assert_eq!(s.next, now + Duration::from_secs(1));
    }

    #[test]
    fn named_ports_resolve_from_the_container() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "ports": [{ "name": "http", "containerPort": 8080 }]
        }))
        .unwrap();
        assert_eq!(port(&IntOrString::String("http".into()), &c), Ok(8080));
        assert!(port(&IntOrString::String("grpc".into()), &c).is_err());
    }
}
