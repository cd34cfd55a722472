//! Fields the operator does not act on yet, against the real local API server with the operator
//! running in this process: the object gets the condition `NotActedOn` naming them and one Warning
//! Event, and loses the condition when it stops using them.

mod support;

use std::time::Duration;

use anshin_crds::conditions::find_condition;
use anshin_crds::{Condition, ConditionStatus, InferenceEndpoint, ModelVersion, TrainingJob};
use anshin_e2e::fixture::{TestNamespace, eventually};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use support::object;
use support::operator::cluster;

const WAIT: Duration = Duration::from_secs(60);

/// The `NotActedOn` condition of an object's status, once it has one.
async fn not_acted_on<F, Fut>(what: &str, conditions: F) -> Condition
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<Vec<Condition>>>,
{
    eventually(what, WAIT, || async {
        find_condition(&conditions().await?, "NotActedOn").cloned()
    })
    .await
}

/// The Warning Events with reason `NotActedOn` about the object `name`.
async fn warnings(ns: &TestNamespace, name: &str) -> Vec<Event> {
    let events: Api<Event> = ns.api();
    let list = events.list(&Default::default()).await.expect("list events");
    list.items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("NotActedOn"))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect()
}

/// Exactly one NotActedOn Warning Event about `name`, published once (no repeat series).
async fn one_warning(ns: &TestNamespace, name: &str, mentions: &str) {
    let found = eventually("the NotActedOn Warning Event", WAIT, || async {
        let w = warnings(ns, name).await;
        (!w.is_empty()).then_some(w)
    })
    .await;
    assert_eq!(found.len(), 1, "one Event: {found:?}");
    let event = &found[0];
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(event.series.is_none(), "published once: {event:?}");
    assert!(
        event.note.as_deref().is_some_and(|n| n.contains(mentions)),
        "the note names {mentions}: {event:?}"
    );
}

fn assert_names(c: &Condition, field: &str) {
    assert_eq!(c.status, ConditionStatus::True);
    assert_eq!(c.reason, "FieldsNotActedOn");
    assert!(c.message.contains(field), "names {field}: {}", c.message);
    assert!(c.message.contains("not acted on yet"), "{}", c.message);
}

#[tokio::test]
async fn an_endpoint_with_autoscaling_is_told_and_warned_once_until_the_field_goes() {
    let ns = cluster().namespace("unacted-endpoint").await;
    // An artifact the operator does not fetch yet: the version stays Pending, no Job, no pods.
    let mvs: Api<ModelVersion> = ns.api();
    let mv: ModelVersion = object(json!({
        "apiVersion": "anshin.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": "later"},
        "spec": {"model": "tiny-ja", "version": "later",
            "artifact": {"uri": "s3://bucket/tiny/", "files": [{"path": "config.json",
                "sha256": format!("sha256:{}", "a".repeat(64)), "size": 1}]},
            "lineage": {"method": "Scratch"}}
    }));
    mvs.create(&PostParams::default(), &mv)
        .await
        .expect("create mv");
    let ies: Api<InferenceEndpoint> = ns.api();
    let ie: InferenceEndpoint = object(json!({
        "apiVersion": "anshin.dev/v1alpha1", "kind": "InferenceEndpoint", "metadata": {"name": "chat"},
        "spec": {"modelVersion": "later", "replicas": {"min": 1, "max": 4},
            "autoscaling": {"metric": "QueueDepth", "target": 4}}
    }));
    ies.create(&PostParams::default(), &ie)
        .await
        .expect("create endpoint");
    let conditions = || async { Some(ies.get("chat").await.ok()?.status?.conditions) };
    let c = not_acted_on("the endpoint's NotActedOn condition", conditions).await;
    assert_names(&c, "spec.autoscaling");
    assert!(c.message.contains("replicas stay fixed"), "{}", c.message);
    one_warning(&ns, "chat", "spec.autoscaling").await;

    let patch = json!({"spec": {"autoscaling": null}});
    ies.patch("chat", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("remove autoscaling");
    eventually("the condition to be removed", WAIT, || async {
        let s = ies.get("chat").await.ok()?.status?;
        let current = s.observed_generation == Some(2);
        (current && find_condition(&s.conditions, "NotActedOn").is_none()).then_some(())
    })
    .await;
    assert_eq!(
        warnings(&ns, "chat").await.len(),
        1,
        "removal publishes nothing"
    );
}

#[tokio::test]
async fn a_training_job_is_accepted_and_told_it_is_not_acted_on() {
    let ns = cluster().namespace("unacted-training").await;
    let tjs: Api<TrainingJob> = ns.api();
    let tj: TrainingJob = object(json!({
        "apiVersion": "anshin.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "sft"},
        "spec": {"method": "Scratch",
            "datasets": [{"uri": "pvc://datasets/notes/"}],
            "checkpoint": {"uri": "pvc://checkpoints/sft/"}, "steps": 10,
            "output": {"model": "tiny-ja", "version": "v1", "uri": "pvc://models/tiny/"}}
    }));
    tjs.create(&PostParams::default(), &tj)
        .await
        .expect("create training job");
    let conditions = || async { Some(tjs.get("sft").await.ok()?.status?.conditions) };
    let c = not_acted_on("the training job's NotActedOn condition", conditions).await;
    assert_names(&c, "TrainingJob");
    assert!(
        c.message.contains("no training pods start"),
        "{}",
        c.message
    );
    one_warning(&ns, "sft", "TrainingJob").await;
    let status = tjs.get("sft").await.expect("get").status.expect("status");
    assert_eq!(status.observed_generation, Some(1));
}
