//! ModelVersion verification, the pure part: the Job that checks the artifact's digests, and what the
//! Job's outcome means for the version's status.
//!
//! Flow: `artifact::source_of` (pvc://, or file:/// under an allowed host path) → `build` (an immutable
//! ConfigMap with the digest manifest and a Job running `anshin-inference verify`, both named after
//! the version's UID and controlled by it) → the reconciler creates them, or takes existing ones only
//! when `ownership` says they are the version's own → `outcome` reads the finished Job → `status`
//! turns it into phase and conditions. A failed verification is final: the version is Rejected and can
//! never be served.

use std::collections::BTreeMap;

use anshin_crds::conditions::{Condition, ConditionStatus, find_condition, set_condition};
use anshin_crds::model_version::{ModelVersion, ModelVersionPhase, ModelVersionStatus};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::artifact::source_of;
pub use crate::artifact::{Source, SourceError, parse_source};
use crate::names;
use crate::pods::{self, MANIFEST_FILE, restricted_container, restricted_pod};
use crate::policy::HostPathPolicy;
use crate::reconcile::events::EventSpec;

/// Condition type set by verification.
pub const ARTIFACT_VERIFIED: &str = "ArtifactVerified";
/// Condition (and Event) reason: an object under the verification name is not the version's own.
pub const FOREIGN_OBJECT: &str = "ForeignVerificationObject";

/// The digest manifest (`[{path, sha256, size}]`) that `anshin-inference verify` reads.
pub fn manifest_json(mv: &ModelVersion) -> String {
    serde_json::to_string_pretty(&mv.spec.artifact.files).unwrap_or_else(|_| "[]".into())
}

/// One digest for the whole artifact: sha256 over the sorted `path sha256 size` lines.
pub fn artifact_digest(mv: &ModelVersion) -> String {
    let mut lines: Vec<String> = mv
        .spec
        .artifact
        .files
        .iter()
        .map(|f| format!("{} {} {}\n", f.path, f.sha256, f.size))
        .collect();
    lines.sort();
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(lines.concat().as_bytes()))
    )
}

/// Name of `mv`'s verification Job and manifest ConfigMap (carries its UID fragment).
pub fn object_name(mv: &ModelVersion) -> String {
    names::verify_job(&mv.name_any(), &mv.uid().unwrap_or_default())
}

/// The ConfigMap and Job that verify `mv` with the model server image `image`; a `file://` artifact
/// must lie under `host_paths`.
pub fn build(
    mv: &ModelVersion,
    image: &str,
    host_paths: &HostPathPolicy,
) -> Result<(ConfigMap, Job), SourceError> {
    let source = source_of(mv, host_paths)?;
    let name = object_name(mv);
    let labels = BTreeMap::from([
        (
            names::LABEL_VERIFIES.to_owned(),
            names::label_value(&mv.name_any()),
        ),
        (
            names::LABEL_MANAGED_BY.to_owned(),
            names::FIELD_MANAGER.to_owned(),
        ),
    ]);
    let meta = ObjectMeta {
        name: Some(name.clone()),
        namespace: mv.namespace(),
        labels: Some(labels.clone()),
        owner_references: mv.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    };
    let config_map = ConfigMap {
        metadata: meta.clone(),
        data: Some(BTreeMap::from([(
            MANIFEST_FILE.to_owned(),
            manifest_json(mv),
        )])),
        // The serving pods re-verify against this manifest: nobody may edit it after verification.
        immutable: Some(true),
        ..ConfigMap::default()
    };
    let (artifact, model_path) = pods::artifact_volume(&source);
    let manifest = pods::manifest_volume(&name);
    let container = Container {
        name: "verify".into(),
        image: Some(image.to_owned()),
        args: Some(vec![
            "verify".into(),
            "--model".into(),
            model_path,
            "--manifest".into(),
            pods::manifest_path(),
        ]),
        volume_mounts: Some(pods::model_mounts()),
        // The verifier prints the first mismatch; the kubelet copies it into the container status.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        security_context: Some(restricted_container()),
        ..Container::default()
    };
    let job = Job {
        metadata: meta,
        spec: Some(JobSpec {
            // A digest mismatch is deterministic: one retry covers a lost node, not a bad file.
            backoff_limit: Some(1),
            active_deadline_seconds: Some(3600),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    containers: vec![container],
                    volumes: Some(vec![artifact, manifest]),
                    security_context: Some(restricted_pod()),
                    automount_service_account_token: Some(false),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    };
    Ok((config_map, job))
}

/// What the verification Job says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not finished.
    Running,
    /// Every file matched.
    Passed,
    /// A file differed or was missing; the message names it.
    Failed(String),
    /// An object under the verification name is not this version's own, so there is no verdict.
    Foreign(String),
}

/// Reads the Job's conditions; on failure the message is the verifier's own output when the
/// container status of a pod the Job controls carries it, else the Job's reason.
pub fn outcome(job: &Job, pods: &[Pod]) -> Outcome {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref());
    let holds = |t: &str| {
        conditions
            .into_iter()
            .flatten()
            .find(|c| c.type_ == t && c.status == "True")
    };
    if holds("Complete").is_some() {
        return Outcome::Passed;
    }
    let Some(failed) = holds("Failed") else {
        return Outcome::Running;
    };
    let from_pod = pods
        .iter()
        .filter(|p| is_controlled_by(p, job))
        .find_map(termination_message);
    let fallback = || {
        format!(
            "verification job failed ({})",
            failed
                .message
                .clone()
                .or(failed.reason.clone())
                .unwrap_or_default()
        )
    };
    Outcome::Failed(from_pod.unwrap_or_else(fallback))
}

fn is_controlled_by(pod: &Pod, job: &Job) -> bool {
    let Some(uid) = job.uid() else { return false };
    pod.owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

fn termination_message(pod: &Pod) -> Option<String> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses.iter().find_map(|s| {
        let terminated = s.state.as_ref()?.terminated.as_ref()?;
        let message = terminated.message.as_deref()?.trim();
        (terminated.exit_code != 0 && !message.is_empty()).then(|| message.to_owned())
    })
}

/// The status the version should have given the verification state.
pub fn status(
    mv: &ModelVersion,
    state: Result<&Outcome, &SourceError>,
    now: Timestamp,
) -> ModelVersionStatus {
    let mut status = mv.status.clone().unwrap_or_default();
    let generation = mv.metadata.generation;
    let (phase, condition_status, reason, message) = match state {
        Err(e) => (
            ModelVersionPhase::Pending,
            ConditionStatus::False,
            e.reason(),
            e.to_string(),
        ),
        Ok(Outcome::Foreign(why)) => (
            ModelVersionPhase::Pending,
            ConditionStatus::False,
            FOREIGN_OBJECT,
            why.clone(),
        ),
        Ok(Outcome::Running) => (
            ModelVersionPhase::Verifying,
            ConditionStatus::Unknown,
            "Verifying",
            "a verification Job is checking every file's sha256 and size".to_owned(),
        ),
        Ok(Outcome::Passed) => (
            ModelVersionPhase::Verified,
            ConditionStatus::True,
            "DigestsMatch",
            format!(
                "all {} files match their sha256 and size",
                mv.spec.artifact.files.len()
            ),
        ),
        Ok(Outcome::Failed(why)) => (
            ModelVersionPhase::Rejected,
            ConditionStatus::False,
            "DigestMismatch",
            format!(
                "artifact does not match spec.artifact.files; this version can never be served: {why}"
            ),
        ),
    };
    status.phase = phase;
    if phase == ModelVersionPhase::Verified {
        status.digest = Some(artifact_digest(mv));
    }
    set_condition(
        &mut status.conditions,
        Condition::new(
            ARTIFACT_VERIFIED,
            condition_status,
            reason,
            message,
            generation,
            now,
        ),
    );
    status.observed_generation = generation;
    status
}

/// The Event for a status change from `old` to `new`: one when the phase or the verification reason
/// changed — a Warning named by the reason when verification is False, else Normal named by the phase.
pub fn event(old: Option<&ModelVersionStatus>, new: &ModelVersionStatus) -> Option<EventSpec> {
    let verified =
        |s: &ModelVersionStatus| find_condition(&s.conditions, ARTIFACT_VERIFIED).cloned();
    let summary = |s: &ModelVersionStatus| (s.phase, verified(s).map(|c| c.reason));
    if old.map(summary) == Some(summary(new)) {
        return None;
    }
    let condition = verified(new)?;
    Some(if condition.status == ConditionStatus::False {
        EventSpec::warning(condition.reason, condition.message)
    } else {
        EventSpec::normal(format!("{:?}", new.phase), condition.message)
    })
}

/// Whether verification is over for good (spec is immutable, so the result cannot change).
pub fn is_final(mv: &ModelVersion) -> bool {
    mv.status.as_ref().is_some_and(|s| {
        s.observed_generation == mv.metadata.generation
            && !matches!(
                s.phase,
                ModelVersionPhase::Pending | ModelVersionPhase::Verifying
            )
    })
}

#[cfg(test)]
mod tests {
    use kube::runtime::events::EventType;

    use super::*;

    fn status(
        phase: ModelVersionPhase,
        verified: ConditionStatus,
        reason: &str,
    ) -> ModelVersionStatus {
        let mut s = ModelVersionStatus {
            phase,
            ..ModelVersionStatus::default()
        };
        let c = Condition::new(
            ARTIFACT_VERIFIED,
            verified,
            reason,
            format!("{reason} message"),
            Some(1),
            Timestamp::UNIX_EPOCH,
        );
        set_condition(&mut s.conditions, c);
        s
    }

    #[test]
    fn a_verdict_is_announced_once_normal_by_phase_or_warning_by_reason() {
        let verifying = status(
            ModelVersionPhase::Verifying,
            ConditionStatus::Unknown,
            "Verifying",
        );
        let first = event(None, &verifying).expect("first status");
        assert_eq!(
            (first.type_, first.reason.as_str()),
            (EventType::Normal, "Verifying")
        );
        assert_eq!(event(Some(&verifying), &verifying), None, "unchanged");
        let rejected = status(
            ModelVersionPhase::Rejected,
            ConditionStatus::False,
            "DigestMismatch",
        );
        let e = event(Some(&verifying), &rejected).expect("verdict");
        assert_eq!(
            (e.type_, e.reason.as_str()),
            (EventType::Warning, "DigestMismatch")
        );
        assert_eq!(e.note, "DigestMismatch message");
        let no_condition = ModelVersionStatus::default();
        assert_eq!(event(None, &no_condition), None, "nothing verified yet");
    }
}
