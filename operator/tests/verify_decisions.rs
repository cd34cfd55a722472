//! ModelVersion verification decisions, from YAML fixtures.

mod support;

use anshin_crds::ModelVersion;
use anshin_crds::model_version::ModelVersionPhase;
use anshin_operator::model_version::verify::{self, Outcome, Source, SourceError};
use anshin_operator::policy::HostPathPolicy;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use support::fixture;

const IMAGE: &str = "anshin/inference:0.1.0";

#[test]
fn sources_are_parsed_and_unsupported_schemes_are_named() {
    assert_eq!(
        verify::parse_source("pvc://models/med-ja/v2/"),
        Ok(Source::Pvc {
            claim: "models".into(),
            path: "med-ja/v2".into()
        })
    );
    assert_eq!(
        verify::parse_source("file:///var/lib/m"),
        Ok(Source::HostPath {
            path: "/var/lib/m".into()
        })
    );
    let err = verify::parse_source("s3://bucket/m").expect_err("s3 is not supported yet");
    assert!(matches!(&err, SourceError::Unsupported { scheme } if scheme == "s3"));
    assert!(err.to_string().contains("not supported yet"), "{err}");
}

#[test]
fn the_verify_job_mounts_the_claim_and_the_manifest() {
    let mv: ModelVersion = fixture("mv-hf-pvc.yaml");
    let (config_map, job) =
        verify::build(&mv, IMAGE, &HostPathPolicy::default()).expect("pvc is supported");
    let manifest = &config_map.data.as_ref().expect("data")["manifest.json"];
    let files: serde_json::Value = serde_json::from_str(manifest).expect("manifest is JSON");
    assert_eq!(files[1]["path"], "model.safetensors");
    assert_eq!(files[1]["size"], 4976698672u64);
    let pod = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec");
    let args = pod.containers[0].args.clone().expect("args");
    assert_eq!(args[..3], ["verify", "--model", "/artifact/med-ja/v2"]);
    let claim = pod.volumes.as_ref().expect("volumes")[0]
        .persistent_volume_claim
        .as_ref()
        .expect("pvc");
    assert_eq!(claim.claim_name, "models");
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(
        pod.security_context
            .as_ref()
            .and_then(|s| s.run_as_non_root),
        Some(true)
    );
    let owner = &job.metadata.owner_references.as_ref().expect("owned")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("ModelVersion", Some(true))
    );
}

#[test]
fn a_failed_job_rejects_the_version_naming_the_file() {
    let mv: ModelVersion = fixture("mv-hf-pvc.yaml");
    let job: Job = fixture("job-failed.yaml");
    let pod: Pod = fixture("pod-failed.yaml");
    let outcome = verify::outcome(&job, &[pod]);
    let status = verify::status(&mv, Ok(&outcome), Timestamp::now());
    assert_eq!(status.phase, ModelVersionPhase::Rejected);
    let condition = &status.conditions[0];
    assert_eq!(
        (condition.type_.as_str(), condition.reason.as_str()),
        ("ArtifactVerified", "DigestMismatch")
    );
    assert!(
        condition.message.contains("model.safetensors"),
        "{}",
        condition.message
    );
    assert!(status.digest.is_none(), "a rejected version gets no digest");
}

#[test]
fn without_a_pod_message_the_job_reason_is_reported() {
    let job: Job = fixture("job-failed.yaml");
    assert!(
        matches!(verify::outcome(&job, &[]), Outcome::Failed(m) if m.contains("backoff limit"))
    );
}

#[test]
fn a_complete_job_verifies_the_version_with_a_stable_digest() {
    let mut mv: ModelVersion = fixture("mv-hf-pvc.yaml");
    let job: Job = fixture("job-complete.yaml");
    let status = verify::status(&mv, Ok(&verify::outcome(&job, &[])), Timestamp::now());
    assert_eq!(status.phase, ModelVersionPhase::Verified);
    let digest = status.digest.clone().expect("digest");
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    mv.spec.artifact.files.reverse();
    assert_eq!(
        verify::artifact_digest(&mv),
        digest,
        "file order does not change the digest"
    );
    mv.status = Some(status);
    assert!(verify::is_final(&mv));
}

#[test]
fn a_running_job_means_verifying_and_is_not_final() {
    let mut mv: ModelVersion = fixture("mv-hf-pvc.yaml");
    let status = verify::status(
        &mv,
        Ok(&verify::outcome(&Job::default(), &[])),
        Timestamp::now(),
    );
    assert_eq!(status.phase, ModelVersionPhase::Verifying);
    mv.status = Some(status);
    assert!(!verify::is_final(&mv));
}

#[test]
fn an_unsupported_source_stays_pending_with_a_clear_message() {
    let mv: ModelVersion = fixture("mv-s3.yaml");
    let err = verify::build(&mv, IMAGE, &HostPathPolicy::default()).expect_err("s3");
    let status = verify::status(&mv, Err(&err), Timestamp::now());
    assert_eq!(status.phase, ModelVersionPhase::Pending);
    assert_eq!(status.conditions[0].reason, "UnsupportedSource");
    assert!(status.conditions[0].message.contains("pvc://CLAIM/PATH"));
}

#[test]
fn dot_segments_in_artifact_paths_are_refused() {
    for uri in [
        "pvc://models/med-ja/../other-team",
        "pvc://models/./v2",
        "file:///var/lib/anshin/models/../../../etc",
    ] {
        assert_eq!(
            verify::parse_source(uri),
            Err(SourceError::DotSegment(uri.into())),
            "{uri}"
        );
    }
    assert!(verify::parse_source("pvc://models/.cache/v2").is_ok());
}

#[test]
fn a_host_path_artifact_outside_the_allowed_prefixes_is_refused_with_a_way_out() {
    let mv: ModelVersion = fixture("mv-gguf-file.yaml");
    let err = verify::build(&mv, IMAGE, &HostPathPolicy::default()).expect_err("none allowed");
    let status = verify::status(&mv, Err(&err), Timestamp::now());
    assert_eq!(status.phase, ModelVersionPhase::Pending);
    let condition = &status.conditions[0];
    assert_eq!(condition.reason, "HostPathNotAllowed");
    for hint in [
        "/var/lib/anshin/models/smollm2",
        "pvc://",
        "--allow-host-path",
    ] {
        assert!(condition.message.contains(hint), "{}", condition.message);
    }
    let sibling = HostPathPolicy::new(&["/var/lib/anshin/model"]).expect("prefix");
    assert!(verify::build(&mv, IMAGE, &sibling).is_err(), "segment-wise");

    let allowed = HostPathPolicy::new(&["/var/lib/anshin/models"]).expect("prefix");
    let (_, job) = verify::build(&mv, IMAGE, &allowed).expect("allowed prefix");
    let pod = job.spec.and_then(|s| s.template.spec).expect("pod spec");
    let host = pod.volumes.expect("volumes")[0].host_path.clone();
    assert_eq!(
        host.map(|h| h.path).as_deref(),
        Some("/var/lib/anshin/models/smollm2")
    );
}
