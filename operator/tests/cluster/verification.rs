//! Verification that cannot be fooled, against the real API server: a Job planted under a version's
//! verification name never verifies it, the manifest ConfigMap cannot be edited, and host paths
//! outside the allowed prefixes or a zero `maxSurge` are refused at the door.

use std::path::Path;
use std::time::Duration;

use anshin_crds::model_version::ModelVersionPhase;
use anshin_crds::{InferenceEndpoint, ModelVersion};
use anshin_e2e::fixture::{TestNamespace, eventually};
use anshin_operator::model_version::verify;
use anshin_operator::names;
use anshin_operator::policy::DEFAULT_VERIFIER_IMAGE;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Event, ResourceQuota};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::support::{files_of, object};
use super::{cluster, model_version, wait_phase};

const WAIT: Duration = Duration::from_secs(90);

/// Holds the operator before it creates the version's ConfigMap (and so its Job): a quota of zero
/// ConfigMaps, in force once a probe ConfigMap is refused.
async fn block_config_maps(ns: &TestNamespace) -> Api<ResourceQuota> {
    let quotas: Api<ResourceQuota> = ns.api();
    let quota: ResourceQuota = object(json!({
        "metadata": {"name": "no-configmaps"}, "spec": {"hard": {"configmaps": "0"}}
    }));
    quotas
        .create(&PostParams::default(), &quota)
        .await
        .expect("create quota");
    let config_maps: Api<ConfigMap> = ns.api();
    let probe: ConfigMap = object(json!({"metadata": {"name": "quota-probe"}}));
    eventually("the quota to refuse ConfigMaps", WAIT, || async {
        match config_maps.create(&PostParams::default(), &probe).await {
            Err(kube::Error::Api(e)) if e.code == 403 => Some(()),
            Ok(_) => {
                let _ = config_maps
                    .delete("quota-probe", &DeleteParams::default())
                    .await;
                None
            }
            Err(_) => None,
        }
    })
    .await;
    quotas
}

/// A Job that always "succeeds", under `name`, with no owner and the verifier's own labels.
fn planted_job(name: &str, model_version: &str) -> Job {
    object(json!({
        "metadata": {"name": name, "labels": {names::LABEL_VERIFIES: model_version}},
        "spec": {"backoffLimit": 0, "template": {
            "metadata": {"labels": {names::LABEL_VERIFIES: model_version}},
            "spec": {"restartPolicy": "Never", "containers": [{
                "name": "verify", "image": DEFAULT_VERIFIER_IMAGE, "command": ["true"]
            }]}
        }}
    }))
}

async fn verification_reason(mvs: &Api<ModelVersion>, name: &str) -> Option<String> {
    let status = mvs.get(name).await.ok()?.status?;
    let condition = status
        .conditions
        .into_iter()
        .find(|c| c.type_ == verify::ARTIFACT_VERIFIED)?;
    Some(condition.reason)
}

#[tokio::test]
async fn a_job_planted_under_the_verification_name_never_verifies_the_version() {
    let ns = cluster().namespace("verify-planted").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let model = anshin_inference::fixture::write_hf(dir.path(), false).expect("tiny model");
    let quotas = block_config_maps(&ns).await;
    let mvs: Api<ModelVersion> = ns.api();
    let mv = mvs
        .create(
            &PostParams::default(),
            &model_version("planted", &model, &files_of(&model)),
        )
        .await
        .expect("create mv");
    let name = verify::object_name(&mv);
    assert!(name.ends_with(&mv.uid().expect("uid")[..8]), "{name}");
    let jobs: Api<Job> = ns.api();
    jobs.create(&PostParams::default(), &planted_job(&name, "planted"))
        .await
        .expect("plant the job");
    quotas
        .delete("no-configmaps", &DeleteParams::default())
        .await
        .expect("lift the quota");

    eventually("the planted job to complete", WAIT, || async {
        let status = jobs.get(&name).await.ok()?.status?;
        (status.succeeded == Some(1)).then_some(())
    })
    .await;
    eventually("the version to report the foreign job", WAIT, || async {
        let reason = verification_reason(&mvs, "planted").await?;
        (reason == verify::FOREIGN_OBJECT).then_some(())
    })
    .await;
    // Another reconcile (any change to the version) still takes no verdict from it.
    let touch = json!({"metadata": {"annotations": {"anshin.dev/test": "touched"}}});
    mvs.patch("planted", &PatchParams::default(), &Patch::Merge(&touch))
        .await
        .expect("annotate");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = mvs
        .get("planted")
        .await
        .expect("mv")
        .status
        .expect("status");
    assert_eq!(status.phase, ModelVersionPhase::Pending);
    assert!(status.digest.is_none(), "no digest from a planted job");
    let events: Api<Event> = ns.api();
    eventually("a Warning event naming the foreign job", WAIT, || async {
        let list = events.list(&ListParams::default()).await.ok()?.items;
        list.iter()
            .any(|e| {
                e.reason.as_deref() == Some(verify::FOREIGN_OBJECT)
                    && e.type_.as_deref() == Some("Warning")
                    && e.involved_object.name.as_deref() == Some("planted")
            })
            .then_some(())
    })
    .await;

    // Once the planted Job is gone, the operator runs its own and the version verifies.
    jobs.delete(&name, &DeleteParams::background())
        .await
        .expect("delete the planted job");
    let verified = wait_phase(&mvs, "planted", ModelVersionPhase::Verified).await;
    let own = jobs.get(&name).await.expect("the operator's job");
    assert_eq!(own.owner_references()[0].uid, mv.uid().expect("uid"));
    assert!(verified.status.and_then(|s| s.digest).is_some());
    manifest_cannot_be_edited(&ns, &name, &mv).await;
}

/// The manifest ConfigMap is the version's, immutable, and the API server refuses an edit.
async fn manifest_cannot_be_edited(ns: &TestNamespace, name: &str, mv: &ModelVersion) {
    let config_maps: Api<ConfigMap> = ns.api();
    let manifest = config_maps.get(name).await.expect("manifest ConfigMap");
    assert_eq!(manifest.immutable, Some(true));
    assert_eq!(manifest.owner_references()[0].uid, mv.uid().expect("uid"));
    let edit = json!({"data": {"manifest.json": "[]"}});
    let err = config_maps
        .patch(name, &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .map(|_| ())
        .expect_err("an immutable ConfigMap cannot be edited");
    assert!(err.to_string().contains("immutable"), "{err}");
    let after = config_maps.get(name).await.expect("manifest");
    assert_eq!(after.data, manifest.data);
}

#[tokio::test]
async fn unsafe_artifacts_and_a_zero_surge_are_refused_by_the_api_server() {
    let ns = cluster().namespace("verify-refused").await;
    let mvs: Api<ModelVersion> = ns.api();
    let files =
        vec![json!({"path": "passwd", "sha256": format!("sha256:{}", "0".repeat(64)), "size": 1})];
    let err = mvs
        .create(
            &PostParams::default(),
            &model_version("host-etc", Path::new("/etc"), &files),
        )
        .await
        .map(|_| ())
        .expect_err("/etc is not an allowed host path");
    let err = err.to_string();
    assert!(
        err.contains("pvc://") && err.contains("--allow-host-path"),
        "{err}"
    );
    let mut climbing = model_version("climbing", Path::new("/tmp"), &files);
    climbing.spec.artifact.uri = "pvc://models/med-ja/../other-team".into();
    let err = mvs
        .create(&PostParams::default(), &climbing)
        .await
        .map(|_| ())
        .expect_err("a `..` segment");
    assert!(err.to_string().contains("spec.artifact.uri"), "{err}");

    let ies: Api<InferenceEndpoint> = ns.api();
    let ie: InferenceEndpoint = object(json!({
        "apiVersion": "anshin.dev/v1alpha1", "kind": "InferenceEndpoint", "metadata": {"name": "chat"},
        "spec": {"modelVersion": "host-etc", "rollout": {"maxSurge": 0}}
    }));
    let err = ies
        .create(&PostParams::default(), &ie)
        .await
        .map(|_| ())
        .expect_err("maxSurge 0");
    let err = err.to_string();
    assert!(
        err.contains("maxSurge") && err.contains("greater than or equal to 1"),
        "{err}"
    );
}
