//! Whether the Job and ConfigMap found under a ModelVersion's verification name are its own (pure).
//!
//! A verdict is only taken from objects this operator made for this very version: the name carries
//! the version's UID fragment ([`crate::names::verify_job`]), and on every read the object must be
//! controlled by the version (an owner reference with `controller: true` and the version's UID) and
//! still be what [`crate::model_version::verify::build`] makes — for the Job its containers' image, command and
//! args and its volumes' sources; for the ConfigMap its manifest and `immutable: true`. An object
//! with the right name and another (or no) controller is [`Found::Foreign`]: never used, never
//! touched, reported. One the version controls that differs (e.g. made before the verifier image
//! changed) is [`Found::Stale`]: the operator deletes it and makes its own.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

/// What was found under the expected name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// Nothing: create it.
    Missing,
    /// The version's own object, as the operator builds it.
    Own,
    /// Controlled by the version but different from what the operator builds now; the reason.
    Stale(String),
    /// Not controlled by the version: ignored; the reason, for the condition and the Event.
    Foreign(String),
}

/// Judges a Job found under the name of `desired` for the version with UID `uid`.
pub fn judge_job(uid: &str, desired: &Job, found: Option<&Job>) -> Found {
    judge(uid, "Job", desired, found, |j| &j.metadata, job_shape)
}

/// Judges a manifest ConfigMap found under the name of `desired` for the version with UID `uid`.
pub fn judge_config_map(uid: &str, desired: &ConfigMap, found: Option<&ConfigMap>) -> Found {
    judge(
        uid,
        "ConfigMap",
        desired,
        found,
        |c| &c.metadata,
        |c| json!({"data": c.data, "binaryData": c.binary_data, "immutable": c.immutable}),
    )
}

fn judge<T>(
    uid: &str,
    kind: &str,
    desired: &T,
    found: Option<&T>,
    meta: fn(&T) -> &ObjectMeta,
    shape: fn(&T) -> Value,
) -> Found {
    let Some(found) = found else {
        return Found::Missing;
    };
    let name = meta(found).name.clone().unwrap_or_default();
    if let Err(why) = controlled_by(meta(found), uid) {
        return Found::Foreign(format!(
            "{kind} {name} {why}, not by this ModelVersion (uid {uid}): it is ignored; delete it so the operator can create its own"
        ));
    }
    if shape(found) != shape(desired) {
        return Found::Stale(format!(
            "{kind} {name} differs from the one the operator builds now; replacing it"
        ));
    }
    Found::Own
}

/// `Ok` when `meta`'s controller reference has UID `uid`; else how it is controlled.
fn controlled_by(meta: &ObjectMeta, uid: &str) -> Result<(), String> {
    let controller = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    match controller {
        Some(o) if !uid.is_empty() && o.uid == uid => Ok(()),
        Some(o) => Err(format!(
            "is controlled by {} {} (uid {})",
            o.kind, o.name, o.uid
        )),
        None => Err("has no controller".to_owned()),
    }
}

/// What of a Job decides its verdict: the containers' programs and the volumes' sources.
fn job_shape(job: &Job) -> Value {
    let Some(pod) = job.spec.as_ref().and_then(|s| s.template.spec.as_ref()) else {
        return Value::Null;
    };
    let containers: Vec<Value> = pod
        .init_containers
        .iter()
        .flatten()
        .chain(&pod.containers)
        .map(|c| json!({"image": c.image, "command": c.command, "args": c.args}))
        .collect();
    let volumes: Vec<Value> = pod.volumes.iter().flatten().map(volume_source).collect();
    json!({"containers": containers, "volumes": volumes})
}

fn volume_source(v: &Volume) -> Value {
    json!({
        "name": v.name,
        "hostPath": v.host_path.as_ref().map(|h| &h.path),
        "claim": v.persistent_volume_claim.as_ref().map(|c| &c.claim_name),
        "configMap": v.config_map.as_ref().map(|c| &c.name),
        // Any other source (emptyDir, secret, …) is not one the operator builds.
        "other": v.host_path.is_none() && v.persistent_volume_claim.is_none() && v.config_map.is_none(),
    })
}
