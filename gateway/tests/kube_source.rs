//! The Kubernetes source against the real local API server (`anshin-e2e` fixture): routing follows an
//! InferenceEndpoint's `status.routing` and its pods' readiness, and keys follow Tenant spec + Secrets.
//! Pods are bound to a node that has no agent, and their status (Ready, podIP 127.0.0.1) is written by
//! the test, so each "pod" is an in-test backend on its own port.

mod common;

use std::time::Duration;

use anshin_e2e::fixture::{eventually, shared};
use common::backend::{Mode, TestBackend};
use common::*;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

const KEY: &str = "sk-kube-hosp-a";

async fn install_crds(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for file in ["inferenceendpoint.yaml", "tenant.yaml"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../crds/yaml")
            .join(file);
        let text = std::fs::read_to_string(&path).expect("CRD yaml");
        let crd: CustomResourceDefinition = serde_saphyr::from_str(&text).expect("CRD");
        match crds.create(&PostParams::default(), &crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => panic!("creating CRD {file}: {e}"),
        }
    }
}

async fn apply<K>(api: &Api<K>, name: &str, v: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::apply("gateway-test").force(),
        &Patch::Apply(v),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {name}: {e}"));
}

async fn status(client: &kube::Client, ns: &str, plural: &str, name: &str, v: serde_json::Value) {
    let gvk = if plural == "pods" {
        kube::api::ApiResource::erase::<Pod>(&())
    } else {
        kube::api::ApiResource {
            group: "anshin.dev".into(),
            version: "v1alpha1".into(),
            api_version: "anshin.dev/v1alpha1".into(),
            kind: "InferenceEndpoint".into(),
            plural: plural.into(),
        }
    };
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(client.clone(), ns, &gvk);
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": v})),
    )
    .await
    .unwrap_or_else(|e| panic!("status of {name}: {e}"));
}

fn pod(name: &str, version: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "med", "version": version}},
           "spec": {"nodeName": "no-agent-node", "containers": [{"name": "c", "image": "anshin/none"}]}})
}

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
    let ies: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns.name(),
        &kube::api::ApiResource {
            group: "anshin.dev".into(),
            version: "v1alpha1".into(),
            api_version: "anshin.dev/v1alpha1".into(),
            kind: "InferenceEndpoint".into(),
            plural: "inferenceendpoints".into(),
        },
    );
    let ie = json!({"apiVersion": "anshin.dev/v1alpha1", "kind": "InferenceEndpoint", "metadata": {"name": "med"},
        "spec": {"modelVersion": "v1", "runtime": {"image": "anshin/anshin-inference"}, "replicas": {"min": 1}}});
    eventually(
        "the InferenceEndpoint CRD to be served",
        Duration::from_secs(30),
        || {
            let (ies, ie) = (ies.clone(), ie.clone());
            async move {
                ies.patch(
                    "med",
                    &PatchParams::apply("gateway-test").force(),
                    &Patch::Apply(ie),
                )
                .await
                .ok()
            }
        },
    )
    .await;
    status(
        &client,
        ns.name(),
        "inferenceendpoints",
        "med",
        routing(a.addr.port(), 100, b.addr.port(), 0),
    )
    .await;
    let tenants: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns.name(),
        &kube::api::ApiResource {
            group: "anshin.dev".into(),
            version: "v1alpha1".into(),
            api_version: "anshin.dev/v1alpha1".into(),
            kind: "Tenant".into(),
            plural: "tenants".into(),
        },
    );
    let tenant = |keys: serde_json::Value| {
        json!({"apiVersion": "anshin.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "hosp-a"},
        "spec": {"displayName": "Hospital A", "endpoints": ["med"], "limits": {"requestsPerMinute": 1000, "tokensPerMinute": 1000000, "maxConcurrent": 10}, "keys": keys}})
    };
    eventually(
        "the Tenant CRD to be served",
        Duration::from_secs(30),
        || {
            let (t, v) = (tenants.clone(), tenant(json!([{"name": "ehr"}])));
            async move {
                t.patch(
                    "hosp-a",
                    &PatchParams::apply("gateway-test").force(),
                    &Patch::Apply(v),
                )
                .await
                .ok()
            }
        },
    )
    .await;
    let secrets: Api<Secret> = ns.api();
    apply(&secrets, "hosp-a-key-ehr", json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hosp-a-key-ehr",
        "labels": {"anshin.dev/tenant": "hosp-a", "anshin.dev/key-name": "ehr"}}, "stringData": {"api-key": KEY}})).await;
    let pods: Api<Pod> = ns.api();
    let ready =
        |r: &str| json!({"podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": r}]});
    for (name, v) in [("med-v1", "v1"), ("med-v2", "v2")] {
        apply(&pods, name, pod(name, v)).await;
        status(&client, ns.name(), "pods", name, ready("True")).await;
    }

    let addr = free_addr();
    let mut child = std::process::Command::new(gateway_bin())
        .args([
            "serve",
            "--kube",
            "--kube-namespace",
            ns.name(),
            "--listen",
            &addr.to_string(),
            "--audit-log",
        ])
        .arg(tempfile::tempdir().expect("dir").keep().join("audit.jsonl"))
        .env("KUBECONFIG", cluster.kubeconfig())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn gateway");
    let _guard = scopeguard(&mut child);
    wait_ready(addr, "/readyz", Duration::from_secs(60)).await;

    assert_eq!(version(addr).await, (200, Some("v1".into())));
    status(
        &client,
        ns.name(),
        "inferenceendpoints",
        "med",
        routing(a.addr.port(), 0, b.addr.port(), 100),
    )
    .await;
    eventually(
        "traffic to move to v2",
        Duration::from_secs(5),
        || async move { (version(addr).await.1.as_deref() == Some("v2")).then_some(()) },
    )
    .await;
    status(&client, ns.name(), "pods", "med-v2", ready("False")).await;
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

/// Kills the gateway when the test ends, even on panic.
fn scopeguard(child: &mut std::process::Child) -> impl Drop + '_ {
    struct G<'a>(&'a mut std::process::Child);
    impl Drop for G<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    G(child)
}
