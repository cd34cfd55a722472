//! Two operator processes against the real API server: only the leader reconciles, and when it is
//! killed the standby takes the lease over within 15 s and carries on.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use anshin_crds::Tenant;
use anshin_e2e::fixture::{eventually, shared};
use anshin_e2e::process::ManagedProcess;
use anshin_operator::runtime::startup;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use serde_json::json;
use support::drill::metric;
use support::free_port;

fn operator(
    name: &str,
    ns: &str,
    kubeconfig: &std::path::Path,
    dir: &std::path::Path,
) -> (ManagedProcess, u16) {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anshin-operator"));
    cmd.env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "info")
        .args([
            "--identity",
            name,
            "--lease-namespace",
            ns,
            "--lease-seconds",
            "10",
        ])
        .arg(format!("--listen=127.0.0.1:{port}"));
    let process = ManagedProcess::spawn(name, &mut cmd, &dir.join(format!("{name}.log")))
        .expect("operator starts");
    (process, port)
}

fn tenant(name: &str) -> Tenant {
    serde_json::from_value(json!({
        "apiVersion": "anshin.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
        "spec": {"displayName": name, "endpoints": ["*"], "keys": [{"name": "k"}]}
    }))
    .expect("tenant")
}

#[tokio::test]
async fn only_the_leader_reconciles_and_a_standby_takes_over_within_15_seconds() {
    let cluster = shared();
    let ns = cluster.namespace("leader-election").await;
    startup::install_crds(&ns.client())
        .await
        .expect("install CRDs");
    let dir = tempfile::tempdir().expect("log dir");
    let kubeconfig = cluster.kubeconfig().clone();
    let mut replicas = vec![
        operator("operator-a", ns.name(), &kubeconfig, dir.path()),
        operator("operator-b", ns.name(), &kubeconfig, dir.path()),
    ];
    let leases: Api<Lease> = ns.api();
    let holder = eventually("a leader", Duration::from_secs(60), || async {
        leases
            .get_opt("anshin-operator")
            .await
            .ok()??
            .spec?
            .holder_identity
    })
    .await;
    let (leader, standby) = if holder == "operator-a" {
        (0, 1)
    } else {
        (1, 0)
    };

    let tenants: Api<Tenant> = ns.api();
    tenants
        .create(&PostParams::default(), &tenant("first"))
        .await
        .expect("tenant");
    eventually(
        "the leader to mint the first key",
        Duration::from_secs(30),
        || async {
            tenants
                .get("first")
                .await
                .ok()?
                .status
                .filter(|s| s.active_keys == 1)
        },
    )
    .await;
    let leader_reconciles = metric(replicas[leader].1, "anshin_operator_reconciles_total").await;
    assert!(
        leader_reconciles.is_some_and(|n| n >= 1.0),
        "leader reconciled: {leader_reconciles:?}"
    );
    assert_eq!(
        metric(replicas[standby].1, "anshin_operator_leader").await,
        Some(0.0),
        "standby is not leader"
    );
    assert_eq!(
        metric(replicas[standby].1, "anshin_operator_reconciles_total").await,
        None,
        "standby never reconciles"
    );

    let killed_at = Instant::now();
    replicas[leader].0.kill_now();
    let new_holder = eventually(
        "the standby to take the lease",
        Duration::from_secs(30),
        || async {
            let h = leases
                .get_opt("anshin-operator")
                .await
                .ok()??
                .spec?
                .holder_identity?;
            (h != holder).then_some(h)
        },
    )
    .await;
    let handover = killed_at.elapsed();
    println!(
        "leader {holder} killed; {new_holder} took over after {:.1} s",
        handover.as_secs_f64()
    );
    assert!(
        handover < Duration::from_secs(15),
        "handover took {handover:?}"
    );
    tenants
        .create(&PostParams::default(), &tenant("second"))
        .await
        .expect("tenant");
    eventually(
        "the new leader to mint the second key",
        Duration::from_secs(30),
        || async {
            tenants
                .get("second")
                .await
                .ok()?
                .status
                .filter(|s| s.active_keys == 1)
        },
    )
    .await;
    for (process, _) in &mut replicas {
        process.stop(Duration::from_secs(5)).await;
    }
}
