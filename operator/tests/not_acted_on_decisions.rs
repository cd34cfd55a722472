//! Which fields each kind accepts but the operator does not act on yet, from YAML fixtures and the
//! examples users copy.

mod support;

use anshin_crds::{GlobalEndpoint, InferenceEndpoint, TrainingJob};
use anshin_operator::reconcile::not_acted_on::{
    self, ANALYSIS, AUTOSCALING, CANARY, FAILURE_LIMIT, GLOBAL_ENDPOINT, PROGRESS_DEADLINE,
    ROLLBACK, STEPS, TRAINING_JOB,
};
use serde::de::DeserializeOwned;
use support::fixture;

fn example<T: DeserializeOwned>(name: &str) -> T {
    let path = format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn canary_steps_analysis_and_autoscaling_are_named() {
    let ie: InferenceEndpoint = fixture("endpoint-canary-autoscaling.yaml");
    assert_eq!(
        not_acted_on::inference_endpoint(&ie.spec),
        [AUTOSCALING, CANARY, STEPS, ANALYSIS]
    );
    let message = not_acted_on::message(&not_acted_on::inference_endpoint(&ie.spec));
    assert_eq!(
        message.as_deref(),
        Some(
            "spec.autoscaling, spec.rollout.strategy Canary, spec.rollout.steps, \
             spec.rollout.analysis are accepted but not acted on yet: replicas stay fixed and \
             rollouts are blue/green"
        )
    );
}

#[test]
fn canary_policy_settings_other_than_the_defaults_are_named() {
    let ie: InferenceEndpoint = fixture("endpoint-canary-policy.yaml");
    assert_eq!(
        not_acted_on::inference_endpoint(&ie.spec),
        [FAILURE_LIMIT, PROGRESS_DEADLINE, ROLLBACK]
    );
}

#[test]
fn a_blue_green_endpoint_uses_nothing_unacted() {
    let ie: InferenceEndpoint = fixture("endpoint.yaml");
    assert!(not_acted_on::inference_endpoint(&ie.spec).is_empty());
}

#[test]
fn the_analysis_defaults_the_server_fills_in_do_not_count() {
    let ie: InferenceEndpoint = fixture("endpoint-default-analysis.yaml");
    assert!(not_acted_on::inference_endpoint(&ie.spec).is_empty());
}

#[test]
fn training_jobs_and_global_endpoints_are_not_acted_on_at_all() {
    let tj: TrainingJob = example("trainingjob.yaml");
    assert_eq!(not_acted_on::training_job(&tj.spec), [TRAINING_JOB]);
    let ge: GlobalEndpoint = example("globalendpoint.yaml");
    assert_eq!(not_acted_on::global_endpoint(&ge.spec), [GLOBAL_ENDPOINT]);
}

#[test]
fn the_endpoint_example_uses_only_what_works() {
    let ie: InferenceEndpoint = example("inferenceendpoint.yaml");
    assert_eq!(not_acted_on::inference_endpoint(&ie.spec), [] as [&str; 0]);
}
