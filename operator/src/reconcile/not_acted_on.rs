//! Fields the API accepts but the operator does not act on yet (pure).
//!
//! Some of the API is designed ahead of the code: canary steps and analysis, autoscaling, and the
//! TrainingJob and GlobalEndpoint kinds. Rather than ignore them silently, each controller asks the
//! function of its kind ([`inference_endpoint`], [`training_job`],
//! [`global_endpoint`]) which of them an object uses, records the answer with [`mark`] as the condition
//! `NotActedOn` (removed once the object stops using them), and publishes the note of [`warning`] as
//! one Warning Event when that condition appears or its message changes.

use anshin_crds::conditions::{Condition, ConditionStatus, find_condition, set_condition};
use anshin_crds::global_endpoint::GlobalEndpointSpec;
use anshin_crds::inference_endpoint::{
    Analysis, InferenceEndpointSpec, RollbackMode, Rollout, RolloutStrategy,
};
use anshin_crds::training_job::TrainingJobSpec;
use jiff::Timestamp;

/// Condition type: the object uses fields the operator does not act on yet.
pub const CONDITION: &str = "NotActedOn";
/// Reason of the condition.
pub const REASON: &str = "FieldsNotActedOn";
/// Reason of the Warning Event published when the condition appears or changes.
pub const EVENT_REASON: &str = "NotActedOn";

/// `spec.autoscaling`: replicas stay at `spec.replicas`.
pub const AUTOSCALING: &str = "spec.autoscaling";
/// `spec.rollout.strategy: Canary`: the rollout is blue/green.
pub const CANARY: &str = "spec.rollout.strategy Canary";
/// `spec.rollout.steps`: no traffic steps.
pub const STEPS: &str = "spec.rollout.steps";
/// `spec.rollout.analysis` other than the defaults: nothing is analysed.
pub const ANALYSIS: &str = "spec.rollout.analysis";
/// `spec.rollout.failureLimit` other than 1: no canary is analysed.
pub const FAILURE_LIMIT: &str = "spec.rollout.failureLimit";
/// `spec.rollout.progressDeadlineSeconds` other than 600: no canary step has a deadline.
pub const PROGRESS_DEADLINE: &str = "spec.rollout.progressDeadlineSeconds";
/// `spec.rollout.rollback: Immediate`: a rollback is a blue/green switch like any other.
pub const ROLLBACK: &str = "spec.rollout.rollback Immediate";
/// The whole TrainingJob kind.
pub const TRAINING_JOB: &str = "TrainingJob";
/// The whole GlobalEndpoint kind.
pub const GLOBAL_ENDPOINT: &str = "GlobalEndpoint";

/// The InferenceEndpoint fields in `spec` that the operator accepts but ignores.
///
/// `spec.rollout.analysis` and the other rollout settings always exist after the API server's
/// defaulting, so they count only when they differ from the defaults.
pub fn inference_endpoint(spec: &InferenceEndpointSpec) -> Vec<&'static str> {
    let mut out = Vec::new();
    if spec.autoscaling.is_some() {
        out.push(AUTOSCALING);
    }
    if spec.rollout.strategy == RolloutStrategy::Canary {
        out.push(CANARY);
    }
    if !spec.rollout.steps.is_empty() {
        out.push(STEPS);
    }
    if spec.rollout.analysis != Analysis::default() {
        out.push(ANALYSIS);
    }
    let defaults = Rollout::default();
    if spec.rollout.failure_limit != defaults.failure_limit {
        out.push(FAILURE_LIMIT);
    }
    if spec.rollout.progress_deadline_seconds != defaults.progress_deadline_seconds {
        out.push(PROGRESS_DEADLINE);
    }
    if spec.rollout.rollback != RollbackMode::default() {
        out.push(ROLLBACK);
    }
    out
}

/// A TrainingJob: no controller runs it yet, whatever its spec.
pub fn training_job(_spec: &TrainingJobSpec) -> Vec<&'static str> {
    vec![TRAINING_JOB]
}

/// A GlobalEndpoint: no controller probes or fails over yet, whatever its spec.
pub fn global_endpoint(_spec: &GlobalEndpointSpec) -> Vec<&'static str> {
    vec![GLOBAL_ENDPOINT]
}

/// What happens instead of what an ignored field asks for.
fn instead(field: &str) -> &'static str {
    match field {
        AUTOSCALING => "replicas stay fixed",
        CANARY | STEPS | ANALYSIS | FAILURE_LIMIT | PROGRESS_DEADLINE | ROLLBACK => {
            "rollouts are blue/green"
        }
        TRAINING_JOB => "no training pods start and no ModelVersion is created",
        GLOBAL_ENDPOINT => "regions are not probed and nothing fails over",
        _ => "it has no effect",
    }
}

/// The condition message for `fields`, e.g. "spec.autoscaling, spec.rollout.steps are accepted but not
/// acted on yet: replicas stay fixed and rollouts are blue/green"; `None` when `fields` is empty.
pub fn message(fields: &[&str]) -> Option<String> {
    if fields.is_empty() {
        return None;
    }
    let mut effects: Vec<&str> = Vec::new();
    for f in fields {
        let e = instead(f);
        if !effects.contains(&e) {
            effects.push(e);
        }
    }
    let verb = if fields.len() == 1 { "is" } else { "are" };
    Some(format!(
        "{} {verb} accepted but not acted on yet: {}",
        fields.join(", "),
        effects.join(" and ")
    ))
}

/// Sets the `NotActedOn` condition for `fields` in `conditions`, or removes it when `fields` is
/// empty. Returns whether anything changed.
pub fn mark(
    conditions: &mut Vec<Condition>,
    fields: &[&str],
    generation: Option<i64>,
    now: Timestamp,
) -> bool {
    match message(fields) {
        Some(text) => set_condition(
            conditions,
            Condition::new(
                CONDITION,
                ConditionStatus::True,
                REASON,
                text,
                generation,
                now,
            ),
        ),
        None => {
            let before = conditions.len();
            conditions.retain(|c| c.type_ != CONDITION);
            conditions.len() != before
        }
    }
}

/// The note of the Warning Event to publish when the status goes from `old` to `new` conditions: the
/// condition's message when it appeared or its message changed, else `None` (one Event per change).
pub fn warning(old: &[Condition], new: &[Condition]) -> Option<String> {
    let now = find_condition(new, CONDITION)?;
    let before = find_condition(old, CONDITION).map(|c| c.message.as_str());
    (before != Some(now.message.as_str())).then(|| now.message.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).expect("valid timestamp")
    }

    #[test]
    fn message_names_every_field_and_each_consequence_once() {
        assert_eq!(
            message(&[AUTOSCALING, STEPS, CANARY]).as_deref(),
            Some(
                "spec.autoscaling, spec.rollout.steps, spec.rollout.strategy Canary are accepted \
                 but not acted on yet: replicas stay fixed and rollouts are blue/green"
            )
        );
        assert_eq!(
            message(&[TRAINING_JOB]).as_deref(),
            Some(
                "TrainingJob is accepted but not acted on yet: no training pods start and no \
                 ModelVersion is created"
            )
        );
        assert_eq!(message(&[]), None);
    }

    #[test]
    fn mark_sets_then_removes_the_condition() {
        let mut conditions = Vec::new();
        assert!(mark(&mut conditions, &[AUTOSCALING], Some(1), at(0)));
        let c = find_condition(&conditions, CONDITION).expect("set");
        assert!(c.is_true());
        assert_eq!(c.reason, REASON);
        assert!(!mark(&mut conditions, &[AUTOSCALING], Some(1), at(5)));
        assert!(mark(&mut conditions, &[], Some(2), at(10)));
        assert!(find_condition(&conditions, CONDITION).is_none());
        assert!(!mark(&mut conditions, &[], Some(2), at(10)));
    }

    #[test]
    fn warning_only_when_the_condition_appears_or_its_message_changes() {
        let mut old = Vec::new();
        let mut new = Vec::new();
        mark(&mut new, &[AUTOSCALING], Some(1), at(0));
        assert!(warning(&old, &new).is_some_and(|n| n.contains(AUTOSCALING)));
        old.clone_from(&new);
        assert_eq!(warning(&old, &new), None, "unchanged: no second Event");
        mark(&mut new, &[AUTOSCALING, STEPS], Some(2), at(1));
        assert!(warning(&old, &new).is_some_and(|n| n.contains(STEPS)));
        let mut gone = new.clone();
        mark(&mut gone, &[], Some(3), at(2));
        assert_eq!(warning(&new, &gone), None, "removal publishes nothing");
    }
}
