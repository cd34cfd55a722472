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
use kube::api::Api;
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
    let ies = dyn_api(
        &client,
        ns.name(),
        "InferenceEndpoint",
        "inferenceendpoints",
    );
    let ie = json!({"apiVersion": "anshin.dev/v1alpha1", "kind": "InferenceEndpoint", "metadata": {"name": "med"},
        "spec": {"modelVersion": "v1", "runtime": {"image": "anshin/anshin-inference"}, "replicas": {"min": 1}}});
    apply_when_served(&ies, "med", ie).await;
    set_status(&ies, "med", routing(a.addr.port(), 100, b.addr.port(), 0)).await;
    let tenants = dyn_api(&client, ns.name(), "Tenant", "tenants");
    let tenant = |keys: serde_json::Value| {
        json!({"apiVersion": "anshin.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "hosp-a"},
        "spec": {"displayName": "Hospital A", "endpoints": ["med"], "limits": {"requestsPerMinute": 1000, "tokensPerMinute": 1000000, "maxConcurrent": 10}, "keys": keys}})
    };
    let hosp_a = apply_when_served(&tenants, "hosp-a", tenant(json!([{"name": "ehr"}]))).await;
    let secrets: Api<Secret> = ns.api();
    apply(
        &secrets,
        "hosp-a-key-ehr",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hosp-a-key-ehr",
        "labels": {"anshin.dev/tenant": "hosp-a", "anshin.dev/key-name": "ehr"},
        "ownerReferences": owned_by("Tenant", &hosp_a)}, "stringData": {"api-key": KEY}}),
    )
    .await;
    let pods = dyn_api(&client, ns.name(), "Pod", "pods");
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
