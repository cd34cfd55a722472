//! The operator binary refuses unsafe start-up settings before it contacts any API server.

use std::process::Command;

/// Runs the operator with `args` and no reachable cluster; returns (exit success, stderr).
fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_anshin-operator"))
        .args(args)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("ANSHIN_VERIFIER_IMAGE")
        .arg("--listen=127.0.0.1:0")
        .output()
        .expect("run anshin-operator");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_latest_or_untagged_verifier_image_stops_the_operator_at_start() {
    for image in ["anshin/inference:latest", "anshin/inference"] {
        let (ok, stderr) = run(&["--verifier-image", image]);
        assert!(!ok, "{image} accepted");
        assert!(
            stderr.contains("is not pinned") && stderr.contains("sha256"),
            "{image}: {stderr}"
        );
    }
    let (ok, stderr) = run(&["--inference-image", "anshin/inference:latest"]);
    assert!(
        !ok && stderr.contains("is not pinned"),
        "the old flag name is checked too: {stderr}"
    );
}

#[test]
fn an_unclean_host_path_prefix_stops_the_operator_at_start() {
    let (ok, stderr) = run(&["--allow-host-path", "/var/lib/anshin/../../etc"]);
    assert!(!ok);
    assert!(stderr.contains("--allow-host-path"), "{stderr}");
}

#[test]
fn a_pinned_image_gets_past_the_checks_to_the_cluster_connection() {
    let (ok, stderr) = run(&[
        "--verifier-image",
        "anshin/inference:0.1.0",
        "--allow-host-path",
        "/var/lib/anshin/models",
    ]);
    assert!(!ok, "no cluster to reach");
    assert!(
        !stderr.contains("not pinned") && stderr.contains("Kubernetes client"),
        "{stderr}"
    );
}
