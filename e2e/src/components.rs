//! Command lines of the four control-plane programs, tuned for a small loopback-only test cluster.
//!
//! Choices worth knowing: etcd runs without fsync (test data); the API server serves only on
//! 127.0.0.1 with token authentication and RBAC, has no insecure port, and uses
//! `--endpoint-reconciler-type=none` (its own loopback address cannot be an Endpoints address); pods
//! tolerate not-ready/unreachable nodes for 10 s instead of 300 s so node-loss tests are quick; the
//! controller-manager runs the node-lifecycle controller (NotReady nodes get tainted, their pods
//! evicted) but not the cloud, IPAM, route, volume-attach or PV controllers, which need real
//! infrastructure.

use std::path::Path;
use std::process::Command;

use crate::binaries::ControlPlaneBinaries;
use crate::certs::ClusterCerts;
use crate::control_plane::{ControlPlane, Ports};

/// The Service ClusterIP range (addresses are allocated but nothing routes them: no kube-proxy).
pub const SERVICE_CIDR: &str = "10.96.0.0/24";

/// Controllers the controller-manager runs: all but those that need cloud or storage infrastructure.
pub const CONTROLLERS: &str = "*,-nodeipam,-cloud-node-lifecycle,-service,-route,-attachdetach,\
                               -persistentvolume-binder,-persistentvolume-expander";

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// `etcd` on loopback ports, data in `<dir>/etcd`.
pub fn etcd_command(bins: &ControlPlaneBinaries, dir: &Path, ports: &Ports) -> Command {
    let client = format!("http://127.0.0.1:{}", ports.etcd_client);
    let peer = format!("http://127.0.0.1:{}", ports.etcd_peer);
    let mut cmd = Command::new(&bins.etcd);
    cmd.args([
        "--name",
        "anshin-local",
        "--data-dir",
        &path(&dir.join("etcd")),
    ])
    .args([
        "--listen-client-urls",
        &client,
        "--advertise-client-urls",
        &client,
    ])
    .args([
        "--listen-peer-urls",
        &peer,
        "--initial-advertise-peer-urls",
        &peer,
    ])
    .args(["--initial-cluster", &format!("anshin-local={peer}")])
    .args(["--unsafe-no-fsync", "--log-level", "warn"]);
    // etcd reads ETCD_* variables as flags; never pass any from our own environment.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ETCD_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// `kube-apiserver` with TLS, token auth, RBAC and service-account tokens.
pub fn apiserver_command(
    bins: &ControlPlaneBinaries,
    certs: &ClusterCerts,
    ports: &Ports,
) -> Command {
    let mut cmd = Command::new(&bins.apiserver);
    cmd.args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"])
        .arg(format!("--secure-port={}", ports.apiserver))
        .args(["--insecure-port=0", "--endpoint-reconciler-type=none"])
        .arg(format!(
            "--etcd-servers=http://127.0.0.1:{}",
            ports.etcd_client
        ))
        .arg(format!("--tls-cert-file={}", path(&certs.serving_crt)))
        .arg(format!(
            "--tls-private-key-file={}",
            path(&certs.serving_key)
        ))
        .arg(format!("--client-ca-file={}", path(&certs.ca_crt)))
        .arg(format!("--token-auth-file={}", path(&certs.tokens_csv)))
        .args(["--authorization-mode=RBAC", "--anonymous-auth=true"])
        .arg("--service-account-issuer=https://kubernetes.default.svc")
        .arg(format!(
            "--service-account-key-file={}",
            path(&certs.sa_pub)
        ))
        .arg(format!(
            "--service-account-signing-key-file={}",
            path(&certs.sa_key)
        ))
        .arg(format!("--service-cluster-ip-range={SERVICE_CIDR}"))
        .args([
            "--allow-privileged=true",
            "--default-not-ready-toleration-seconds=10",
        ])
        .args(["--default-unreachable-toleration-seconds=10", "--v=1"]);
    cmd
}

/// `kube-controller-manager` talking to the API server as the admin, health on a plain-HTTP port.
pub fn controller_manager_command(bins: &ControlPlaneBinaries, cp: &ControlPlane) -> Command {
    let kubeconfig = path(cp.kubeconfig());
    let certs = cp.dir().join("certs");
    let mut cmd = Command::new(&bins.controller_manager);
    cmd.args(["--address=127.0.0.1", "--secure-port=0"])
        .arg(format!("--port={}", cp.ports().controller_manager))
        .arg(format!("--kubeconfig={kubeconfig}"))
        .args([
            "--leader-elect=false",
            "--use-service-account-credentials=false",
        ])
        .arg(format!(
            "--service-account-private-key-file={}",
            path(&certs.join("sa.key"))
        ))
        .arg(format!("--root-ca-file={}", path(&certs.join("ca.crt"))))
        .arg(format!("--controllers={CONTROLLERS}"))
        .args([
            "--node-monitor-period=2s",
            "--node-monitor-grace-period=16s",
        ])
        .args(["--concurrent-deployment-syncs=5", "--v=1"]);
    cmd
}

/// `kube-scheduler` talking to the API server as the admin, health on a plain-HTTP port.
pub fn scheduler_command(bins: &ControlPlaneBinaries, cp: &ControlPlane) -> Command {
    let mut cmd = Command::new(&bins.scheduler);
    cmd.args(["--address=127.0.0.1", "--secure-port=0"])
        .arg(format!("--port={}", cp.ports().scheduler))
        .arg(format!("--kubeconfig={}", path(cp.kubeconfig())))
        .args(["--leader-elect=false", "--v=1"]);
    cmd
}
