//! The rollout decision of an InferenceEndpoint (pure): which versions run, which one gets traffic.
//!
//! Blue/green for now. The endpoint's state lives in its status: `stableVersion` (all traffic),
//! `canaryVersion` (the new version being brought up, no traffic yet) and `retiring` (versions that
//! lost their traffic and are kept until their in-flight requests drained). Each reconcile feeds the
//! observed pods and the target ModelVersion's state to [`decide`]:
//! 1. a new, servable target becomes the canary and is brought to full replicas;
//! 2. once every canary pod is Ready, traffic switches to it and the old stable version retires;
//! 3. a retiring version is removed after the drain window.
//!
//! The stable version is never scaled down before its successor is Ready and receiving traffic, and
//! because every step is recomputed from status and pods, an operator restart mid-rollout is safe. A
//! target that is missing, not yet verified or rejected never gets pods; the stable version keeps serving.

use std::collections::BTreeMap;

use anshin_crds::conditions::{Condition, ConditionStatus, set_condition};
use anshin_crds::inference_endpoint::{
    EndpointPhase, InferenceEndpointStatus, RetiringVersion, RouteVersion,
};
use anshin_crds::model_version::ModelVersionPhase;
use jiff::{SignedDuration, Timestamp};

use super::workload::{endpoint_selector, version_selector};
use crate::names::SERVER_PORT;

/// Condition: the target ModelVersion exists and may be served.
pub const MODEL_VERSION_RESOLVED: &str = "ModelVersionResolved";
/// Condition: the stable version has ready pods.
pub const READY: &str = "Ready";
/// Condition: a rollout (new version coming up, or an old one draining) is under way.
pub const ROLLOUT_PROGRESSING: &str = "RolloutProgressing";

/// What the referenced ModelVersion allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// No such ModelVersion in the namespace.
    Missing,
    /// Verification or approval has not finished.
    NotVerified(ModelVersionPhase),
    /// Rejected: never served. The message says why.
    Rejected(String),
    /// Verified (or approved): may be served, with this artifact digest.
    Servable(Option<String>),
}

/// Pods of one version, as its Deployment reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VersionPods {
    /// Pods the Deployment has.
    pub replicas: i32,
    /// Pods that are Ready.
    pub ready: i32,
}

/// Everything the decision needs, read by the reconciler.
#[derive(Clone, Debug)]
pub struct Observed {
    /// Endpoint name (for selectors).
    pub endpoint: String,
    /// `metadata.generation` of the endpoint.
    pub generation: Option<i64>,
    /// `spec.modelVersion`.
    pub target_name: String,
    /// What that ModelVersion allows.
    pub target: Target,
    /// The endpoint's current status.
    pub status: InferenceEndpointStatus,
    /// Observed pods per served ModelVersion.
    pub pods: BTreeMap<String, VersionPods>,
    /// Known artifact digests per ModelVersion.
    pub digests: BTreeMap<String, String>,
    /// Pods each served version should have.
    pub replicas: i32,
    /// How long a retiring version is kept after it lost its traffic.
    pub drain: SignedDuration,
    /// The time of this reconcile.
    pub now: Timestamp,
}

/// What should be.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Versions that must have a Deployment, with their replica counts; all others are removed.
    pub serve: Vec<(String, i32)>,
    /// The endpoint's new status.
    pub status: InferenceEndpointStatus,
    /// When to look again even if nothing changes (a drain window ending).
    pub requeue_after: Option<SignedDuration>,
}

/// The replica count of each served version from `spec.replicas` (autoscaling comes later).
pub fn replicas(spec: &anshin_crds::inference_endpoint::Replicas) -> i32 {
    spec.desired
        .unwrap_or(spec.min)
        .max(spec.min)
        .min(spec.max.unwrap_or(i32::MAX))
}

/// Decides the next state of an endpoint.
pub fn decide(o: &Observed) -> Decision {
    let ready = |v: &str| o.pods.get(v).map_or(0, |p| p.ready);
    let target = o.target_name.as_str();
    let mut stable = o.status.stable_version.clone();
    let mut canary = o
        .status
        .canary_version
        .clone()
        .filter(|c| c == target && stable.as_deref() != Some(target));
    let mut retiring = o.status.retiring.clone();
    if stable.as_deref() != Some(target) && matches!(o.target, Target::Servable(_)) {
        // The first version has nobody to take traffic from; later ones come up beside the stable one.
        if stable.is_none() {
            stable = Some(target.to_owned())
        } else {
            canary = Some(target.to_owned())
        }
    }
    if let Some(c) = canary.clone().filter(|c| ready(c) >= o.replicas) {
        if let Some(old) = stable.replace(c) {
            retiring.push(RetiringVersion {
                model_version: old,
                since: o.now.to_string(),
            });
        }
        canary = None;
    }
    let active = |v: &str| stable.as_deref() == Some(v) || canary.as_deref() == Some(v);
    retiring.retain(|r| !active(&r.model_version) && remaining(r, o).is_positive());
    let mut serve: Vec<(String, i32)> = stable
        .iter()
        .chain(canary.iter())
        .map(|v| (v.clone(), o.replicas))
        .collect();
    for r in &retiring {
        let kept = o
            .pods
            .get(&r.model_version)
            .map_or(o.replicas, |p| p.replicas.max(1));
        serve.push((r.model_version.clone(), kept));
    }
    let requeue_after = retiring.iter().map(|r| remaining(r, o)).min();
    let status = new_status(o, stable, canary, retiring);
    Decision {
        serve,
        status,
        requeue_after,
    }
}

fn remaining(r: &RetiringVersion, o: &Observed) -> SignedDuration {
    let since = r.since.parse::<Timestamp>().unwrap_or(o.now);
    o.drain - o.now.duration_since(since)
}

fn route(o: &Observed, version: &str, weight: i32) -> RouteVersion {
    RouteVersion {
        model_version: version.to_owned(),
        digest: o.digests.get(version).cloned(),
        weight,
        selector: version_selector(&o.endpoint, version),
        port: SERVER_PORT,
    }
}

fn new_status(
    o: &Observed,
    stable: Option<String>,
    canary: Option<String>,
    retiring: Vec<RetiringVersion>,
) -> InferenceEndpointStatus {
    let mut s = o.status.clone();
    let stable_pods = stable
        .as_deref()
        .and_then(|v| o.pods.get(v))
        .copied()
        .unwrap_or_default();
    s.routing = stable
        .iter()
        .map(|v| route(o, v, 100))
        .chain(canary.iter().map(|v| route(o, v, 0)))
        .collect();
    s.replicas = stable_pods.replicas;
    s.ready_replicas = stable_pods.ready;
    s.canary_weight = 0;
    s.selector = Some(endpoint_selector(&o.endpoint));
    s.observed_generation = o.generation;
    let rolling = canary.is_some() || !retiring.is_empty();
    let serving_target = stable.as_deref() == Some(o.target_name.as_str());
    let coming_up = matches!(
        o.status.phase,
        EndpointPhase::Pending | EndpointPhase::Progressing
    );
    s.phase = match (&stable, rolling) {
        (None, _) => EndpointPhase::Pending,
        (Some(_), true) => EndpointPhase::Progressing,
        _ if !serving_target => EndpointPhase::Degraded,
        _ if stable_pods.ready < o.replicas && coming_up => EndpointPhase::Progressing,
        _ if stable_pods.ready < o.replicas => EndpointPhase::Degraded,
        _ => EndpointPhase::Ready,
    };
    let (resolved, reason, message) = resolution(o, stable.as_deref());
    let conditions = [
        Condition::new(
            MODEL_VERSION_RESOLVED,
            resolved,
            reason,
            message,
            o.generation,
            o.now,
        ),
        ready_condition(o, stable.as_deref(), stable_pods),
        progress_condition(o, canary.as_deref(), &retiring),
    ];
    for c in conditions {
        set_condition(&mut s.conditions, c);
    }
    s.stable_version = stable;
    s.canary_version = canary;
    s.retiring = retiring;
    s
}

fn resolution(o: &Observed, stable: Option<&str>) -> (ConditionStatus, &'static str, String) {
    let still = stable
        .filter(|s| *s != o.target_name)
        .map(|s| format!("; still serving {s}"))
        .unwrap_or_default();
    let name = &o.target_name;
    match &o.target {
        Target::Servable(_) => (
            ConditionStatus::True,
            "Servable",
            format!("ModelVersion {name} is verified"),
        ),
        Target::Missing => (
            ConditionStatus::False,
            "ModelVersionNotFound",
            format!(
                "ModelVersion {name} does not exist in this namespace: create it or fix spec.modelVersion{still}"
            ),
        ),
        Target::NotVerified(phase) => (
            ConditionStatus::False,
            "ModelVersionNotVerified",
            format!("waiting for ModelVersion {name} to be verified (phase {phase:?}){still}"),
        ),
        Target::Rejected(why) => (
            ConditionStatus::False,
            "ModelVersionRejected",
            format!("ModelVersion {name} was rejected and will never be served: {why}{still}"),
        ),
    }
}

fn ready_condition(o: &Observed, stable: Option<&str>, pods: VersionPods) -> Condition {
    let (status, reason, message) = match stable {
        None => (
            ConditionStatus::False,
            "NothingToServe",
            "no servable ModelVersion yet".to_owned(),
        ),
        Some(v) if pods.ready >= o.replicas => (
            ConditionStatus::True,
            "Serving",
            format!("{v}: {}/{} pods ready", pods.ready, o.replicas),
        ),
        Some(v) if pods.ready > 0 => (
            ConditionStatus::True,
            "ServingBelowReplicas",
            format!("{v}: {}/{} pods ready", pods.ready, o.replicas),
        ),
        Some(v) => (
            ConditionStatus::False,
            "NoReadyPods",
            format!("{v}: 0/{} pods ready", o.replicas),
        ),
    };
    Condition::new(READY, status, reason, message, o.generation, o.now)
}

fn progress_condition(
    o: &Observed,
    canary: Option<&str>,
    retiring: &[RetiringVersion],
) -> Condition {
    let (status, reason, message) = match (canary, retiring.first()) {
        (Some(c), _) => {
            let ready = o.pods.get(c).map_or(0, |p| p.ready);
            (
                ConditionStatus::True,
                "NewVersionStarting",
                format!(
                    "{c}: {ready}/{} pods ready before traffic switches",
                    o.replicas
                ),
            )
        }
        (None, Some(r)) => (
            ConditionStatus::True,
            "OldVersionDraining",
            format!(
                "{} takes no new requests and is removed once drained",
                r.model_version
            ),
        ),
        (None, None) => (
            ConditionStatus::False,
            "Idle",
            "no rollout in progress".to_owned(),
        ),
    };
    Condition::new(
        ROLLOUT_PROGRESSING,
        status,
        reason,
        message,
        o.generation,
        o.now,
    )
}
