//! Objects on the real local API server for the gateway's Kubernetes source: the CRDs, Anshin objects
//! and pods applied by the test (pods are bound to a node without an agent, and their status — Ready,
//! podIP 127.0.0.1 — is written by the test, so each "pod" is an in-test backend on its own port), and
//! the gateway binary started with `--kube`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anshin_e2e::fixture::eventually;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::{Proc, free_addr, gateway_bin, wait_ready};

/// Installs the InferenceEndpoint and Tenant CRDs from `crds/yaml/` (an existing one is kept).
pub async fn install_crds(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for file in ["inferenceendpoint.yaml", "tenant.yaml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
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

/// The API of an Anshin kind (`InferenceEndpoint`/`inferenceendpoints`, `Tenant`/`tenants`) or of pods.
pub fn dyn_api(client: &kube::Client, ns: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let res = if plural == "pods" {
        ApiResource::erase::<k8s_openapi::api::core::v1::Pod>(&())
    } else {
        ApiResource {
            group: "anshin.dev".into(),
            version: "v1alpha1".into(),
            api_version: "anshin.dev/v1alpha1".into(),
            kind: kind.into(),
            plural: plural.into(),
        }
    };
    Api::namespaced_with(client.clone(), ns, &res)
}

/// Server-side applies `v` as `name`, returning the stored object.
pub async fn apply<K>(api: &Api<K>, name: &str, v: Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::apply("gateway-test").force(),
        &Patch::Apply(v),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {name}: {e}"))
}

/// [`apply`], retried until the API server serves the kind (a CRD just installed takes a moment).
pub async fn apply_when_served(api: &Api<DynamicObject>, name: &str, v: Value) -> DynamicObject {
    eventually("the CRD to be served", Duration::from_secs(30), || {
        let (api, v) = (api.clone(), v.clone());
        async move {
            api.patch(
                name,
                &PatchParams::apply("gateway-test").force(),
                &Patch::Apply(v),
            )
            .await
            .ok()
        }
    })
    .await
}

/// Merges `v` into the status of `name`.
pub async fn set_status(api: &Api<DynamicObject>, name: &str, v: Value) {
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": v})),
    )
    .await
    .unwrap_or_else(|e| panic!("status of {name}: {e}"));
}

/// A pod with `labels`, bound to a node that has no agent (the test writes its status).
pub fn pod(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
           "spec": {"nodeName": "no-agent-node", "containers": [{"name": "c", "image": "anshin/none"}]}})
}

/// Pod status: Ready (`"True"`/`"False"`) at 127.0.0.1.
pub fn pod_ready(ready: &str) -> Value {
    json!({"podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": ready}]})
}

/// An ownerReferences entry naming `obj` as controller (what the operator sets on key Secrets).
pub fn owned_by(kind: &str, obj: &DynamicObject) -> Value {
    json!([{"apiVersion": "anshin.dev/v1alpha1", "kind": kind,
            "name": obj.metadata.name.clone().expect("name"),
            "uid": obj.metadata.uid.clone().expect("uid"), "controller": true}])
}

/// Starts the gateway with `--kube` (all namespaces when `namespace` is `None`) and waits for `/readyz`.
pub async fn start_kube_gateway(kubeconfig: &Path, namespace: Option<&str>, audit: &Path) -> Proc {
    let (addr, metrics): (SocketAddr, SocketAddr) = (free_addr(), free_addr());
    let mut cmd = Command::new(gateway_bin());
    cmd.args(["serve", "--kube", "--listen", &addr.to_string()])
        .args(["--metrics-listen", &metrics.to_string()])
        .args(["--audit-fsync", "never", "--audit-log"])
        .arg(audit)
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    if let Some(ns) = namespace {
        cmd.args(["--kube-namespace", ns]);
    }
    let child = cmd.spawn().expect("spawn gateway");
    let p = Proc {
        child,
        addr,
        metrics,
        name: "gateway".into(),
    };
    wait_ready(addr, "/readyz", Duration::from_secs(60)).await;
    p
}
