//! The Events of an InferenceEndpoint, derived from its old and new status (pure); the controller
//! publishes them after writing the new status.

use anshin_crds::inference_endpoint::InferenceEndpointStatus;

use super::rollout::MODEL_VERSION_RESOLVED;
use crate::reconcile::events::EventSpec;

/// The Events for a status change from `old` to `new`: `RolloutStarted` when a new canary appears,
/// `TrafficSwitched` when the stable version changes, and a Warning named by its reason when
/// `ModelVersionResolved` is not True and its reason changed.
pub fn derive(old: &InferenceEndpointStatus, new: &InferenceEndpointStatus) -> Vec<EventSpec> {
    let mut out = Vec::new();
    if new.canary_version != old.canary_version
        && let Some(c) = &new.canary_version
    {
        let note = format!("starting {c} beside {:?}", old.stable_version);
        out.push(EventSpec::normal("RolloutStarted", note));
    }
    if new.stable_version != old.stable_version
        && let Some(s) = &new.stable_version
    {
        let note = format!("all traffic now goes to {s}");
        out.push(EventSpec::normal("TrafficSwitched", note));
    }
    for c in new
        .conditions
        .iter()
        .filter(|c| c.type_ == MODEL_VERSION_RESOLVED && !c.is_true())
    {
        let was = old.conditions.iter().find(|o| o.type_ == c.type_);
        if was.map(|w| &w.reason) != Some(&c.reason) {
            out.push(EventSpec::warning(c.reason.clone(), c.message.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use anshin_crds::conditions::{Condition, ConditionStatus};
    use jiff::Timestamp;

    use super::*;

    fn resolved(status: ConditionStatus, reason: &str) -> Condition {
        Condition::new(
            MODEL_VERSION_RESOLVED,
            status,
            reason,
            format!("{reason} message"),
            Some(1),
            Timestamp::UNIX_EPOCH,
        )
    }

    fn reasons(events: &[EventSpec]) -> Vec<&str> {
        events.iter().map(|e| e.reason.as_str()).collect()
    }

    #[test]
    fn a_new_canary_starts_a_rollout_and_a_new_stable_switches_traffic() {
        let old = InferenceEndpointStatus {
            stable_version: Some("v1".into()),
            ..InferenceEndpointStatus::default()
        };
        let starting = InferenceEndpointStatus {
            canary_version: Some("v2".into()),
            ..old.clone()
        };
        let started = derive(&old, &starting);
        assert_eq!(reasons(&started), ["RolloutStarted"]);
        assert_eq!(started[0].note, "starting v2 beside Some(\"v1\")");
        let switched = InferenceEndpointStatus {
            stable_version: Some("v2".into()),
            ..InferenceEndpointStatus::default()
        };
        let e = derive(&starting, &switched);
        assert_eq!(reasons(&e), ["TrafficSwitched"]);
        assert_eq!(e[0].note, "all traffic now goes to v2");
        assert!(
            derive(&switched, &switched).is_empty(),
            "no change: no Event"
        );
    }

    #[test]
    fn an_unresolved_version_warns_once_per_reason() {
        let old = InferenceEndpointStatus::default();
        let mut missing = old.clone();
        missing.conditions = vec![resolved(ConditionStatus::False, "ModelVersionNotFound")];
        let e = derive(&old, &missing);
        assert_eq!(reasons(&e), ["ModelVersionNotFound"]);
        assert_eq!(e[0].type_, kube::runtime::events::EventType::Warning);
        assert!(
            derive(&missing, &missing).is_empty(),
            "same reason: no second Event"
        );
        let mut servable = old.clone();
        servable.conditions = vec![resolved(ConditionStatus::True, "Servable")];
        assert!(
            derive(&missing, &servable).is_empty(),
            "resolved: nothing to warn"
        );
    }
}
