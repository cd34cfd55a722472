//! The Kubernetes source against the real local API server (`anshin-e2e` fixture): routing follows an
//! InferenceEndpoint's `status.routing` and its pods' readiness, and keys follow Tenant spec + Secrets.
//! Pods are bound to a node that has no agent, and their status (Ready, podIP 127.0.0.1) is written by
//! the test, so each "pod" is an in-test backend on its own port.

mod common;

use std::time::Duration;

use anshin_e2e::fixture::{eventually, shared};
use common::backend::{Mode, TestBackend};
use common::kube_objects::*;
use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject};
use serde_json::json;

const KEY: &str = "sk-kube-hosp-a";

fn routing(a: u16, wa: i32, b: u16, wb: i32) -> serde_json::Value {
    json!({"routing": [
        {"modelVersion": "v1", "digest": "sha256:v1", "weight": wa, "selector": "app=med,version=v1", "port": a},
        {"modelVersion": "v2", "digest": "sha256:v2", "weight": wb, "selector": "app=med,version=v2", "port": b}]})
}

async fn version(addr: std::net::SocketAddr) -> (u16, Option<String>) {
    let r = post(
        addr,
        "/v1/chat/completions",
        Some(KEY),
        &chat_body("med", "頭痛", false),
    )
    .await;
    (r.status, r.header("x-anshin-model-version"))
}

/// The tenant `hosp-a` with `keys`, allowed the endpoint `med`.
fn tenant(keys: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "anshin.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "hosp-a"},
        "spec": {"displayName": "Hospital A", "endpoints": ["med"], "keys": keys,
                 "limits": {"requestsPerMinute": 100000, "tokensPerMinute": 100000000, "maxConcurrent": 10}}})
}

/// The endpoint `med` (v1 → backend `a`, v2 → backend `b` with weight 0) and the tenant `hosp-a`
/// holding [`KEY`], in `ns`; returns the endpoint, tenant and pod APIs.
async fn endpoint_and_tenant(
    client: &kube::Client,
    ns: &str,
    a: &TestBackend,
    b: &TestBackend,
) -> (Api<DynamicObject>, Api<DynamicObject>, Api<DynamicObject>) {
    let ies = dyn_api(client, ns, "InferenceEndpoint", "inferenceendpoints");
    let ie = json!({"apiVersion": "anshin.dev/v1alpha1", "kind": "InferenceEndpoint", "metadata": {"name": "med"},
        "spec": {"modelVersion": "v1", "runtime": {"image": "anshin/anshin-inference"}, "replicas": {"min": 1}}});
    apply_when_served(&ies, "med", ie).await;
    set_status(&ies, "med", routing(a.addr.port(), 100, b.addr.port(), 0)).await;
    let tenants = dyn_api(client, ns, "Tenant", "tenants");
    let hosp_a = apply_when_served(&tenants, "hosp-a", tenant(json!([{"name": "ehr"}]))).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    apply(
        &secrets,
        "hosp-a-key-ehr",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hosp-a-key-ehr",
        "labels": {"anshin.dev/tenant": "hosp-a", "anshin.dev/key-name": "ehr"},
        "ownerReferences": owned_by("Tenant", &hosp_a)}, "stringData": {"api-key": KEY}}),
    )
    .await;
    (ies, tenants, dyn_api(client, ns, "Pod", "pods"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kube_source_follows_endpoint_status_pod_readiness_and_tenant_keys() {
    let cluster = shared();
    let ns = cluster.namespace("gateway-kube-source").await;
    let client = ns.client();
    install_crds(&client).await;
    let (a, b) = (
        TestBackend::start(Mode::Echo).await,
        TestBackend::start(Mode::Echo).await,
    );
    let (ies, tenants, pods) = endpoint_and_tenant(&client, ns.name(), &a, &b).await;
    for (name, v) in [("med-v1", "v1"), ("med-v2", "v2")] {
        apply(&pods, name, pod(name, json!({"app": "med", "version": v}))).await;
        set_status(&pods, name, pod_ready("True")).await;
    }
    let audit = tempfile::tempdir().expect("dir");
    let gw = start_kube_gateway(
        cluster.kubeconfig(),
        Some(ns.name()),
        &audit.path().join("audit.jsonl"),
    )
    .await;
    let addr = gw.addr;

    assert_eq!(version(addr).await, (200, Some("v1".into())));
    set_status(&ies, "med", routing(a.addr.port(), 0, b.addr.port(), 100)).await;
    eventually(
        "traffic to move to v2",
        Duration::from_secs(5),
        || async move { (version(addr).await.1.as_deref() == Some("v2")).then_some(()) },
    )
    .await;
    set_status(&pods, "med-v2", pod_ready("False")).await;
    eventually(
        "v2's only pod turning unready to send traffic back to v1",
        Duration::from_secs(5),
        || async move { (version(addr).await == (200, Some("v1".into()))).then_some(()) },
    )
    .await;
    apply(&tenants, "hosp-a", tenant(json!([{"name": "other"}]))).await;
    eventually(
        "the key removed from the Tenant to be refused",
        Duration::from_secs(5),
        || async move { (version(addr).await.0 == 401).then_some(()) },
    )
    .await;
    assert!(!a.bodies().is_empty() && !b.bodies().is_empty());
}

/// `n` requests one after another; how many did not get a 200.
async fn failures(addr: std::net::SocketAddr, n: usize) -> usize {
    let mut failed = 0;
    for _ in 0..n {
        if version(addr).await.0 != 200 {
            failed += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pods_the_control_plane_marks_unready_keep_serving_while_they_pass_the_gateways_checks() {
    let cluster = shared();
    let ns = cluster.namespace("gateway-last-known-good").await;
    let client = ns.client();
    install_crds(&client).await;
    let (a, b) = (
        TestBackend::start(Mode::Echo).await,
        TestBackend::start(Mode::Echo).await,
    );
    let (_, _, pods) = endpoint_and_tenant(&client, ns.name(), &a, &b).await;
    apply(
        &pods,
        "med-v1",
        pod("med-v1", json!({"app": "med", "version": "v1"})),
    )
    .await;
    set_status(&pods, "med-v1", pod_ready("True")).await;
    // A v2 pod that the API never reported Ready: it must never be used, held or not.
    apply(
        &pods,
        "med-v2",
        pod("med-v2", json!({"app": "med", "version": "v2"})),
    )
    .await;
    set_status(&pods, "med-v2", pod_ready("False")).await;
    let audit = tempfile::tempdir().expect("dir");
    let gw = start_kube_gateway(
        cluster.kubeconfig(),
        Some(ns.name()),
        &audit.path().join("a.jsonl"),
    )
    .await;
    let addr = gw.addr;
    let endpoint = format!("endpoint=\"{}/med\"", ns.name());
    let held = |m: &str| metric_sum(m, "anshin_gateway_backends_held", &[&endpoint]);
    assert_eq!(version(addr).await, (200, Some("v1".into())));
    eventually(
        "an active check of v1's backend",
        Duration::from_secs(10),
        || async {
            let m = metrics_text(&gw).await;
            (metric_sum(
                &m,
                "anshin_gateway_backends_healthy",
                &[&endpoint, "version=\"v1\""],
            ) == 1.0)
                .then_some(())
        },
    )
    .await;

    // The node controller's view after an outage: the only ready pod turns NotReady.
    set_status(&pods, "med-v1", pod_ready("False")).await;
    eventually(
        "the gateway to hold v1's backend",
        Duration::from_secs(5),
        || async { (held(&metrics_text(&gw).await) == 1.0).then_some(()) },
    )
    .await;
    assert_eq!(failures(addr, 20).await, 0, "held backends keep answering");
    assert_eq!(version(addr).await, (200, Some("v1".into())));
    let ready = get(addr, "/readyz", None).await.expect("readyz");
    assert_eq!(ready.status, 200);
    assert!(
        ready.body.contains("last known good") && ready.body.contains("/med"),
        "{}",
        ready.body
    );
    assert!(
        b.bodies().is_empty(),
        "the never-ready v2 pod got no request"
    );

    // A held backend that fails the gateway's own check is dropped: no serving a dead pod.
    a.set_ready(false);
    eventually(
        "the failing held backend to be dropped",
        Duration::from_secs(10),
        || async {
            (held(&metrics_text(&gw).await) == 0.0 && version(addr).await.0 == 503).then_some(())
        },
    )
    .await;

    // Ready again in the API: served normally, nothing held.
    a.set_ready(true);
    set_status(&pods, "med-v1", pod_ready("True")).await;
    eventually(
        "v1 to serve again once the API reports it Ready",
        Duration::from_secs(10),
        || async { (version(addr).await.0 == 200).then_some(()) },
    )
    .await;
    assert_eq!(held(&metrics_text(&gw).await), 0.0);
}
