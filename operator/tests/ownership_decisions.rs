//! Only a ModelVersion's own Job and ConfigMap can verify it: names carry its UID, owners are
//! checked, the manifest is immutable — from YAML fixtures.

mod support;

use anshin_crds::ModelVersion;
use anshin_crds::model_version::ModelVersionPhase;
use anshin_operator::model_version::ownership::{self, Found};
use anshin_operator::model_version::verify::{self, Outcome};
use anshin_operator::policy::HostPathPolicy;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::ResourceExt;
use support::fixture;

const IMAGE: &str = "anshin/inference:0.1.0";
const UID: &str = "6f1c9a52-0000-4000-8000-000000000002";

fn built() -> (ModelVersion, ConfigMap, Job) {
    let mv: ModelVersion = fixture("mv-hf-pvc.yaml");
    let (config_map, job) = verify::build(&mv, IMAGE, &HostPathPolicy::default()).expect("pvc");
    (mv, config_map, job)
}

#[test]
fn the_job_and_manifest_are_named_after_the_versions_uid() {
    let (mut mv, config_map, job) = built();
    assert_eq!(job.name_any(), "med-ja-v2-verify-6f1c9a52");
    assert_eq!(config_map.name_any(), job.name_any());
    mv.metadata.uid = Some("0d9e8f7a-0000-4000-8000-000000000009".into());
    assert_eq!(verify::object_name(&mv), "med-ja-v2-verify-0d9e8f7a");
    mv.metadata.name = Some("m".repeat(63));
    let long = verify::object_name(&mv);
    assert!(long.len() <= 63 && long.ends_with("-0d9e8f7a"), "{long}");
}

#[test]
fn the_manifest_config_map_is_immutable_and_controlled_by_the_version() {
    let (_, config_map, _) = built();
    assert_eq!(config_map.immutable, Some(true));
    let owner = &config_map.metadata.owner_references.expect("owned")[0];
    assert_eq!((owner.uid.as_str(), owner.controller), (UID, Some(true)));
}

#[test]
fn the_versions_own_objects_are_used_and_missing_ones_created() {
    let (_, config_map, job) = built();
    assert_eq!(ownership::judge_job(UID, &job, None), Found::Missing);
    assert_eq!(ownership::judge_job(UID, &job, Some(&job)), Found::Own);
    assert_eq!(
        ownership::judge_config_map(UID, &config_map, Some(&config_map)),
        Found::Own
    );
}

#[test]
fn a_finished_job_left_by_an_earlier_version_of_the_same_name_is_foreign() {
    let (mv, _, job) = built();
    let leftover: Job = fixture("job-leftover.yaml");
    let found = ownership::judge_job(UID, &job, Some(&leftover));
    let Found::Foreign(why) = found else {
        panic!("expected Foreign, got {found:?}");
    };
    assert!(
        why.contains("6f1c9a52-0000-4000-8000-0000000000aa") && why.contains("delete it"),
        "{why}"
    );
    // What the controller writes instead of a verdict: never Verified, no digest.
    let status = verify::status(&mv, Ok(&Outcome::Foreign(why)), Timestamp::now());
    assert_eq!(status.phase, ModelVersionPhase::Pending);
    assert_eq!(status.conditions[0].reason, verify::FOREIGN_OBJECT);
    assert!(status.digest.is_none());
}

#[test]
fn a_precreated_job_without_an_owner_is_foreign() {
    let (_, _, job) = built();
    let planted: Job = fixture("job-unowned.yaml");
    assert!(
        matches!(ownership::judge_job(UID, &job, Some(&planted)), Found::Foreign(w) if w.contains("has no controller"))
    );
    // Claiming the version as owner is not enough when the Job does something else.
    let mut forged = planted;
    forged.metadata.owner_references = job.metadata.owner_references.clone();
    assert!(matches!(
        ownership::judge_job(UID, &job, Some(&forged)),
        Found::Stale(_)
    ));
}

#[test]
fn an_own_job_built_with_another_image_is_replaced() {
    let (_, _, job) = built();
    let mv: ModelVersion = fixture("mv-hf-pvc.yaml");
    let (_, older) =
        verify::build(&mv, "anshin/inference:0.0.9", &HostPathPolicy::default()).expect("pvc");
    assert!(matches!(
        ownership::judge_job(UID, &job, Some(&older)),
        Found::Stale(_)
    ));
}

#[test]
fn a_manifest_config_map_not_controlled_by_the_version_or_editable_is_not_used() {
    let (_, config_map, _) = built();
    let planted: ConfigMap = fixture("configmap-unowned.yaml");
    assert!(matches!(
        ownership::judge_config_map(UID, &config_map, Some(&planted)),
        Found::Foreign(_)
    ));
    let mut mutable = config_map.clone();
    mutable.immutable = None;
    assert!(matches!(
        ownership::judge_config_map(UID, &config_map, Some(&mutable)),
        Found::Stale(_)
    ));
}

#[test]
fn a_pod_the_job_does_not_control_cannot_speak_for_it() {
    let job: Job = fixture("job-failed.yaml");
    let mut pod: Pod = fixture("pod-failed.yaml");
    pod.metadata.owner_references = None;
    let outcome = verify::outcome(&job, &[pod]);
    assert!(
        matches!(&outcome, Outcome::Failed(m) if m.contains("backoff limit") && !m.contains("MISMATCH")),
        "{outcome:?}"
    );
}
