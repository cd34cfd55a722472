//! Status conditions following the Kubernetes API conventions.
//!
//! Every Anshin kind carries `status.conditions`. Controllers build the condition they observe now and
//! call [`set_condition`]; it keeps `lastTransitionTime` unless the status really transitioned, so that
//! writing status on every reconcile does not make conditions look like they flap.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Status of a condition: `True`, `False` or `Unknown`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// The controller cannot tell yet.
    Unknown,
}

/// One observation about an object, as in `metav1.Condition`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Type of condition in CamelCase, e.g. `Ready`, `ArtifactVerified`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Status of the condition: True, False or Unknown.
    pub status: ConditionStatus,
    /// Machine-readable reason for the last transition, in CamelCase.
    pub reason: String,
    /// Human-readable message: what is wrong and what to do about it (may be empty).
    pub message: String,
    /// When the condition last changed status (RFC 3339).
    pub last_transition_time: String,
    /// The `metadata.generation` the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    /// A condition observed now, for the object's current `generation`.
    pub fn new(
        type_: &str,
        status: ConditionStatus,
        reason: &str,
        message: impl Into<String>,
        generation: Option<i64>,
        now: Timestamp,
    ) -> Self {
        Condition {
            type_: type_.to_owned(),
            status,
            reason: reason.to_owned(),
            message: message.into(),
            last_transition_time: now.to_string(),
            observed_generation: generation,
        }
    }

    /// True when `status` is `True`.
    pub fn is_true(&self) -> bool {
        self.status == ConditionStatus::True
    }

    /// Equal in everything but `lastTransitionTime`.
    fn same_observation(&self, other: &Condition) -> bool {
        self.type_ == other.type_
            && self.status == other.status
            && self.reason == other.reason
            && self.message == other.message
            && self.observed_generation == other.observed_generation
    }
}

/// Sets `new` in `conditions`, replacing the condition of the same type.
///
/// `lastTransitionTime` is kept from the existing condition when the status did not change (reason,
/// message and observedGeneration are still updated). Returns whether anything changed, so that a
/// controller can skip a status write that would change nothing.
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            if existing.status == new.status {
                new.last_transition_time = existing.last_transition_time.clone();
            }
            if existing.same_observation(&new)
                && existing.last_transition_time == new.last_transition_time
            {
                return false;
            }
            *existing = new;
            true
        }
        None => {
            conditions.push(new);
            true
        }
    }
}

/// The condition of type `type_`, if present.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).expect("valid timestamp")
    }

    fn ready(status: ConditionStatus, reason: &str, t: i64) -> Condition {
        Condition::new("Ready", status, reason, "msg", Some(1), at(t))
    }

    #[test]
    fn adds_a_missing_condition() {
        let mut conditions = vec![];
        assert!(set_condition(
            &mut conditions,
            ready(ConditionStatus::True, "Up", 0)
        ));
        assert_eq!(conditions.len(), 1);
    }

    #[test]
    fn keeps_transition_time_when_status_is_unchanged() {
        let mut conditions = vec![ready(ConditionStatus::True, "Up", 0)];
        let changed = set_condition(&mut conditions, ready(ConditionStatus::True, "StillUp", 60));
        assert!(changed, "reason changed, so the condition changed");
        assert_eq!(conditions[0].reason, "StillUp");
        assert_eq!(conditions[0].last_transition_time, at(0).to_string());
    }

    #[test]
    fn reports_no_change_for_the_same_observation_later() {
        let mut conditions = vec![ready(ConditionStatus::True, "Up", 0)];
        assert!(!set_condition(
            &mut conditions,
            ready(ConditionStatus::True, "Up", 60)
        ));
        assert_eq!(conditions[0].last_transition_time, at(0).to_string());
    }

    #[test]
    fn moves_transition_time_when_status_changes() {
        let mut conditions = vec![ready(ConditionStatus::True, "Up", 0)];
        assert!(set_condition(
            &mut conditions,
            ready(ConditionStatus::False, "Down", 60)
        ));
        assert_eq!(conditions[0].last_transition_time, at(60).to_string());
        assert_eq!(conditions[0].status, ConditionStatus::False);
    }

    #[test]
    fn replaces_only_the_condition_of_the_same_type() {
        let other = Condition::new("Other", ConditionStatus::True, "X", "", None, at(0));
        let mut conditions = vec![other.clone(), ready(ConditionStatus::True, "Up", 0)];
        set_condition(&mut conditions, ready(ConditionStatus::False, "Down", 5));
        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[0], other);
        assert_eq!(
            find_condition(&conditions, "Ready").map(|c| c.is_true()),
            Some(false)
        );
    }

    #[test]
    fn serializes_with_kubernetes_field_names() {
        let json = serde_json::to_value(ready(ConditionStatus::True, "Up", 0)).expect("serializes");
        assert_eq!(json["type"], "Ready");
        assert_eq!(json["status"], "True");
        assert!(json["lastTransitionTime"].is_string());
        assert_eq!(json["observedGeneration"], 1);
    }
}
