//! Every example in `examples/` reaches the state its comment describes, applied to the real local API
//! server (schema and the operator's webhook) with the operator running in this process.
//!
//! The examples' artifacts (`pvc://models/…`) do not exist here, so the endpoint examples are served
//! from a ModelVersion of the same name made from the tiny fixture model; the ModelVersion example
//! itself is accepted and its verification starts. The TrainingJob and GlobalEndpoint examples are
//! sketches: they are accepted and marked `NotActedOn`, and nothing runs for them.

mod support;

use std::path::Path;
use std::time::Duration;

use anshin_crds::conditions::find_condition;
use anshin_crds::global_endpoint::GlobalPhase;
use anshin_crds::inference_endpoint::EndpointPhase;
use anshin_crds::model_version::ModelVersionPhase;
use anshin_crds::tenant::TenantPhase;
use anshin_crds::{GlobalEndpoint, InferenceEndpoint, ModelVersion, Tenant, TrainingJob};
use anshin_e2e::fixture::{TestNamespace, eventually};
use anshin_inference::cli::Cli;
use anshin_operator::endpoint::workload;
use anshin_operator::model_version::verify;
use clap::Parser;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use support::operator::cluster;
use support::{files_of, object};

/// `examples/<name>` as a JSON value.
fn example_value(name: &str) -> Value {
    let path = format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `examples/<name>` moved into `ns`, with `edit` applied, as a typed object.
fn example_in<T: DeserializeOwned>(name: &str, ns: &TestNamespace, edit: fn(&mut Value)) -> T {
    let mut value = example_value(name);
    value["metadata"]["namespace"] = json!(ns.name());
    edit(&mut value);
    object(value)
}

async fn create<K>(api: &Api<K>, obj: &K, what: &str)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::Serialize + DeserializeOwned,
{
    if let Err(e) = api.create(&PostParams::default(), obj).await {
        panic!("the API server (schema + webhook) refused {what}: {e}");
    }
}

/// The server arguments the operator gives a model-server pod of `ie`, as the pod would run them.
fn server_argv(ie: &InferenceEndpoint, mv: &ModelVersion) -> Vec<String> {
    let deployment = workload::deployment(ie, mv, 2).expect("deployment");
    let pod = deployment
        .spec
        .and_then(|s| s.template.spec)
        .expect("pod spec");
    let args = pod.containers[0].args.clone().expect("args");
    std::iter::once("anshin-inference".to_owned())
        .chain(
            args.into_iter()
                .map(|a| a.replace("$(POD_IP)", "127.0.0.1")),
        )
        .collect()
}

#[test]
fn the_endpoint_examples_runtime_args_are_flags_the_server_has() {
    let ie: InferenceEndpoint = object(example_value("inferenceendpoint.yaml"));
    let mv: ModelVersion = object(example_value("modelversion.yaml"));
    let argv = server_argv(&ie, &mv);
    if let Err(e) = Cli::try_parse_from(&argv) {
        panic!("anshin-inference would exit on {argv:?}:\n{e}");
    }
    let mut wrong = ie.clone();
    wrong.spec.runtime.args = vec!["--max-batch-size=32".into()];
    assert!(
        Cli::try_parse_from(server_argv(&wrong, &mv)).is_err(),
        "the parser refuses a flag it does not have"
    );
}

#[tokio::test]
async fn the_tenant_example_mints_both_keys_and_is_ready() {
    let ns = cluster().namespace("example-tenant").await;
    let tenants: Api<Tenant> = ns.api();
    let tenant: Tenant = example_in("tenant.yaml", &ns, |_| {});
    create(&tenants, &tenant, "examples/tenant.yaml").await;
    let name = "toto-university-hospital";
    let status = eventually(
        "the tenant to be Ready",
        Duration::from_secs(60),
        || async {
            let s = tenants.get(name).await.ok()?.status?;
            (s.phase == TenantPhase::Ready).then_some(s)
        },
    )
    .await;
    assert_eq!(status.active_keys, 2);
    assert!(find_condition(&status.conditions, "NotActedOn").is_none());
}

#[tokio::test]
async fn the_model_version_example_is_accepted_and_its_verification_starts() {
    let ns = cluster().namespace("example-mv").await;
    let mvs: Api<ModelVersion> = ns.api();
    let mv: ModelVersion = example_in("modelversion.yaml", &ns, |_| {});
    create(&mvs, &mv, "examples/modelversion.yaml").await;
    let jobs: Api<Job> = ns.api();
    let created = mvs.get("med-ja-v2-sft").await.expect("the ModelVersion");
    let job = verify::object_name(&created);
    eventually(
        "the verification Job and phase Verifying",
        Duration::from_secs(60),
        || async {
            let phase = mvs.get("med-ja-v2-sft").await.ok()?.status?.phase;
            let started = jobs.get_opt(&job).await.ok()?.is_some();
            (started && phase == ModelVersionPhase::Verifying).then_some(())
        },
    )
    .await;
}

/// A verified ModelVersion `name` made from the tiny fixture model in `dir`.
async fn tiny_version(ns: &TestNamespace, name: &str, dir: &Path) {
    let model = anshin_inference::fixture::write_hf(dir, false).expect("tiny model");
    let mvs: Api<ModelVersion> = ns.api();
    let mv: ModelVersion = object(json!({
        "apiVersion": "anshin.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": name},
        "spec": {"model": "tiny-ja", "version": name,
            "artifact": {"uri": format!("file://{}", model.display()), "files": files_of(&model)},
            "lineage": {"method": "Scratch"}}
    }));
    create(&mvs, &mv, "the tiny ModelVersion").await;
    eventually(
        &format!("{name} to be Verified"),
        Duration::from_secs(90),
        || async {
            let phase = mvs.get(name).await.ok()?.status?.phase;
            (phase == ModelVersionPhase::Verified).then_some(())
        },
    )
    .await;
}

/// Waits until endpoint `name` is Ready with `replicas` ready pods that never restarted.
async fn serves(ns: &TestNamespace, name: &str, replicas: i32) {
    let ies: Api<InferenceEndpoint> = ns.api();
    let status = eventually(
        &format!("{name} Ready with {replicas} pods"),
        Duration::from_secs(150),
        || async {
            let s = ies.get(name).await.ok()?.status?;
            (s.phase == EndpointPhase::Ready && s.ready_replicas == replicas).then_some(s)
        },
    )
    .await;
    assert!(find_condition(&status.conditions, "NotActedOn").is_none());
    let pods: Api<Pod> = ns.api();
    let list = pods.list(&Default::default()).await.expect("list pods");
    for p in &list.items {
        let restarts: i32 = p
            .status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten())
            .map(|c| c.restart_count)
            .sum();
        assert_eq!(restarts, 0, "{:?} restarted", p.metadata.name);
    }
}

#[tokio::test]
async fn the_endpoint_example_serves_two_pods_with_its_runtime_args() {
    let ns = cluster().namespace("example-ie").await;
    let dir = tempfile::tempdir().expect("temp dir");
    tiny_version(&ns, "med-ja-v2-sft", dir.path()).await;
    let ies: Api<InferenceEndpoint> = ns.api();
    let ie: InferenceEndpoint = example_in("inferenceendpoint.yaml", &ns, |_| {});
    create(&ies, &ie, "examples/inferenceendpoint.yaml").await;
    serves(&ns, "med-ja-chat", 2).await;
}

#[tokio::test]
async fn the_demo_endpoint_serves_once_its_model_version_is_filled_in() {
    let ns = cluster().namespace("example-demo").await;
    let dir = tempfile::tempdir().expect("temp dir");
    tiny_version(&ns, "demo-model", dir.path()).await;
    let ies: Api<InferenceEndpoint> = ns.api();
    let ie: InferenceEndpoint = example_in("demo/inferenceendpoint.yaml", &ns, |v| {
        v["spec"]["modelVersion"] = json!("demo-model");
    });
    create(&ies, &ie, "examples/demo/inferenceendpoint.yaml").await;
    serves(&ns, "med-ja-chat", 1).await;
}

#[tokio::test]
async fn the_sketch_examples_are_accepted_and_marked_not_acted_on() {
    let ns = cluster().namespace("example-sketches").await;
    let tjs: Api<TrainingJob> = ns.api();
    let tj: TrainingJob = example_in("trainingjob.yaml", &ns, |_| {});
    create(&tjs, &tj, "examples/trainingjob.yaml").await;
    let ges: Api<GlobalEndpoint> = ns.api();
    let ge: GlobalEndpoint = example_in("globalendpoint.yaml", &ns, |_| {});
    create(&ges, &ge, "examples/globalendpoint.yaml").await;
    eventually(
        "both sketches marked NotActedOn",
        Duration::from_secs(60),
        || async {
            let t = tjs.get("med-ja-cpt-2026-11").await.ok()?.status?;
            let g = ges.get("med-ja-global").await.ok()?.status?;
            let marked = |c: &[anshin_crds::Condition]| {
                find_condition(c, "NotActedOn").is_some_and(|c| c.is_true())
            };
            (marked(&t.conditions) && marked(&g.conditions) && g.phase == GlobalPhase::Pending)
                .then_some(())
        },
    )
    .await;
    let pods: Api<Pod> = ns.api();
    let list = pods.list(&Default::default()).await.expect("list pods");
    assert!(list.items.is_empty(), "nothing runs for a sketch");
}
