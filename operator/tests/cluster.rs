//! The controllers against the real local API server (Kubernetes 1.20 built from source, pods run by
//! the node agent as local processes): tenant keys, artifact verification, and an endpoint that serves
//! a real model server and switches versions blue/green without ever leaving the routing table empty.

mod support;
#[path = "cluster/tenants.rs"]
mod tenants;
#[path = "cluster/verification.rs"]
mod verification;

use std::path::Path;
use std::time::Duration;

use anshin_crds::inference_endpoint::EndpointPhase;
use anshin_crds::model_version::ModelVersionPhase;
use anshin_crds::{InferenceEndpoint, ModelVersion};
use anshin_e2e::fixture::eventually;
use anshin_operator::names;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use support::operator::cluster;
use support::{files_of, object};

fn model_version(name: &str, dir: &Path, files: &[serde_json::Value]) -> ModelVersion {
    object(json!({
        "apiVersion": "anshin.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": name},
        "spec": {
            "model": "tiny-ja", "version": name,
            "artifact": {"uri": format!("file://{}", dir.display()), "files": files},
            "lineage": {"method": "Scratch"}
        }
    }))
}

async fn wait_phase(api: &Api<ModelVersion>, name: &str, want: ModelVersionPhase) -> ModelVersion {
    eventually(
        &format!("{name} to be {want:?}"),
        Duration::from_secs(90),
        || async {
            let mv = api.get(name).await.ok()?;
            (mv.status.as_ref()?.phase == want).then_some(mv)
        },
    )
    .await
}

#[tokio::test]
async fn a_wrong_digest_rejects_the_version_and_names_the_file() {
    let ns = cluster().namespace("verify-reject").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let model = anshin_inference::fixture::write_hf(dir.path(), false).expect("tiny model");
    let mut files = files_of(&model);
    let bad = files
        .iter()
        .position(|f| f["path"] == "config.json")
        .expect("config.json listed");
    files[bad]["sha256"] = json!(format!("sha256:{}", "0".repeat(64)));
    let mvs: Api<ModelVersion> = ns.api();
    mvs.create(
        &PostParams::default(),
        &model_version("tampered", &model, &files),
    )
    .await
    .expect("create");
    let mv = wait_phase(&mvs, "tampered", ModelVersionPhase::Rejected).await;
    let condition = &mv.status.expect("status").conditions[0];
    assert_eq!(condition.reason, "DigestMismatch");
    assert!(
        condition.message.contains("config.json"),
        "message names the file: {}",
        condition.message
    );
    // An endpoint naming the rejected version never gets pods, and says why.
    let ies: Api<InferenceEndpoint> = ns.api();
    let ie: InferenceEndpoint = object(json!({
        "apiVersion": "anshin.dev/v1alpha1", "kind": "InferenceEndpoint", "metadata": {"name": "chat"},
        "spec": {"modelVersion": "tampered"}
    }));
    ies.create(&PostParams::default(), &ie)
        .await
        .expect("create endpoint");
    let reason = eventually(
        "the endpoint to report the rejection",
        Duration::from_secs(30),
        || async {
            let s = ies.get("chat").await.ok()?.status?;
            s.conditions
                .into_iter()
                .find(|c| c.type_ == "ModelVersionResolved")
                .map(|c| c.reason)
        },
    )
    .await;
    assert_eq!(reason, "ModelVersionRejected");
    let deployments: Api<Deployment> = ns.api();
    let list = deployments
        .list(&Default::default())
        .await
        .expect("list deployments");
    assert!(list.items.is_empty(), "a rejected version is never served");
}

#[tokio::test]
async fn an_endpoint_serves_a_verified_version_and_switches_blue_green() {
    let ns = cluster().namespace("endpoint-bluegreen").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let model = anshin_inference::fixture::write_hf(dir.path(), false).expect("tiny model");
    let files = files_of(&model);
    let mvs: Api<ModelVersion> = ns.api();
    for name in ["tiny-v1", "tiny-v2"] {
        mvs.create(&PostParams::default(), &model_version(name, &model, &files))
            .await
            .expect("create mv");
    }
    let v1 = wait_phase(&mvs, "tiny-v1", ModelVersionPhase::Verified).await;
    wait_phase(&mvs, "tiny-v2", ModelVersionPhase::Verified).await;

    let ies: Api<InferenceEndpoint> = ns.api();
    let ie: InferenceEndpoint = object(json!({
        "apiVersion": "anshin.dev/v1alpha1", "kind": "InferenceEndpoint", "metadata": {"name": "chat"},
        "spec": {"modelVersion": "tiny-v1", "replicas": {"min": 1}, "runtime": {"drainTimeoutSeconds": 2}}
    }));
    ies.create(&PostParams::default(), &ie)
        .await
        .expect("create endpoint");
    let status = eventually(
        "the endpoint to be Ready",
        Duration::from_secs(120),
        || async {
            let s = ies.get("chat").await.ok()?.status?;
            (s.phase == EndpointPhase::Ready).then_some(s)
        },
    )
    .await;
    assert_eq!(status.routing.len(), 1);
    assert_eq!(status.routing[0].weight, 100);
    assert_eq!(status.routing[0].digest, v1.status.expect("status").digest);
    let pods: Api<Pod> = ns.api();
    answers_models(&pods, &status.routing[0].selector).await;
    let policies: Api<k8s_openapi::api::networking::v1::NetworkPolicy> = ns.api();
    let policy = policies
        .get(&names::network_policy("chat"))
        .await
        .expect("the endpoint's NetworkPolicy exists");
    let ingress = policy.spec.and_then(|s| s.ingress).expect("ingress rules");
    assert_eq!(ingress.len(), 1, "one rule: gateway pods to the model port");

    // `kubectl scale` goes through the scale subresource to spec.replicas.desired.
    let scale = json!({"spec": {"replicas": 2}});
    ies.patch_scale("chat", &PatchParams::default(), &Patch::Merge(&scale))
        .await
        .expect("scale");
    let deployments: Api<Deployment> = ns.api();
    eventually(
        "two ready pods after kubectl scale",
        Duration::from_secs(90),
        || async {
            let s = ies.get("chat").await.ok()?.status?;
            (s.ready_replicas == 2 && s.replicas == 2).then_some(())
        },
    )
    .await;
    let scaled = ies.get_scale("chat").await.expect("read scale");
    assert_eq!(scaled.status.as_ref().map(|s| s.replicas), Some(2));
    assert!(
        scaled
            .status
            .and_then(|s| s.selector)
            .is_some_and(|sel| sel.contains("anshin.dev/endpoint"))
    );

    let patch = json!({"spec": {"modelVersion": "tiny-v2"}});
    ies.patch("chat", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("switch version");
    eventually(
        "v2 stable and v1 removed",
        Duration::from_secs(120),
        || async {
            let s = ies.get("chat").await.ok()?.status?;
            // At every observation the routing table sends all traffic to one version with ready pods.
            let total: i32 = s.routing.iter().map(|r| r.weight).sum();
            assert_eq!(
                total, 100,
                "routing never empty during the switch: {:?}",
                s.routing
            );
            let old_gone = deployments
                .get_opt(&names::version_workload("chat", "tiny-v1"))
                .await
                .ok()?
                .is_none();
            (s.stable_version.as_deref() == Some("tiny-v2")
                && old_gone
                && s.phase == EndpointPhase::Ready)
                .then_some(())
        },
    )
    .await;
    let status = ies
        .get("chat")
        .await
        .expect("endpoint")
        .status
        .expect("status");
    answers_models(&pods, &status.routing[0].selector).await;
}

/// Every ready pod selected by `selector` answers `/v1/models` with the endpoint's backend key from
/// the Secret the operator minted, and only with it (401 without).
async fn answers_models(pods: &Api<Pod>, selector: &str) {
    let list = pods
        .list(&kube::api::ListParams::default().labels(selector))
        .await
        .expect("list pods");
    let ips: Vec<String> = list
        .items
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect();
    assert!(!ips.is_empty(), "pods of {selector}");
    let ns = list.items[0].metadata.namespace.clone().expect("namespace");
    let secrets: Api<Secret> = Api::namespaced(pods.clone().into_client(), &ns);
    let secret = secrets
        .get(&anshin_crds::labels::backend_key_secret("chat"))
        .await
        .expect("the endpoint's backend key Secret");
    let key = String::from_utf8(
        secret.data.expect("data")[names::SECRET_KEY_FIELD]
            .0
            .clone(),
    )
    .expect("utf8");
    let client = reqwest::Client::new();
    for ip in ips {
        let url = format!("http://{ip}:8000/v1/models");
        let get = |key: Option<&str>| {
            let mut req = client.get(&url).timeout(Duration::from_secs(5));
            if let Some(k) = key {
                req = req.bearer_auth(k);
            }
            req.send()
        };
        let with = get(Some(&key)).await.expect("GET with the key");
        assert_eq!(with.status(), 200, "pod {ip} answers with the backend key");
        assert!(with.text().await.unwrap_or_default().contains("chat"));
        let without = get(None).await.expect("GET without a key");
        assert_eq!(
            without.status(),
            401,
            "pod {ip} refuses a caller without the key"
        );
    }
}

#[tokio::test]
async fn invalid_objects_are_rejected_by_the_api_server_with_the_webhooks_message() {
    let ns = cluster().namespace("webhook").await;
    let ies: Api<InferenceEndpoint> = ns.api();
    let mvs: Api<ModelVersion> = ns.api();
    let refused = |e: kube::Error| e.to_string();
    let endpoint = |min: i32, max: i32| -> InferenceEndpoint {
        object(json!({
            "apiVersion": "anshin.dev/v1alpha1", "kind": "InferenceEndpoint", "metadata": {"name": "chat"},
            "spec": {"modelVersion": "does-not-exist", "replicas": {"min": min, "max": max}}
        }))
    };
    let err = ies
        .create(&PostParams::default(), &endpoint(3, 1))
        .await
        .map_err(refused)
        .expect_err("min > max");
    assert!(
        err.contains("replicas.min must be less than or equal to replicas.max"),
        "{err}"
    );
    assert!(
        err.contains("does-not-exist") && err.contains("does not exist"),
        "missing model version: {err}"
    );

    let files = vec![json!({"path": "config.json", "sha256": "sha256:NOT-HEX", "size": 1})];
    let err = mvs
        .create(
            &PostParams::default(),
            &model_version("bad-digest", Path::new("/tmp"), &files),
        )
        .await
        .map_err(refused)
        .expect_err("bad digest format");
    assert!(err.contains("sha256"), "{err}");
    println!("API server refused: {err}");
}
