//! Blue/green rollout decisions, step by step, from YAML fixtures.

mod support;

use std::collections::BTreeMap;

use anshin_crds::InferenceEndpoint;
use anshin_crds::inference_endpoint::EndpointPhase;
use anshin_operator::endpoint::rollout::{self, Decision, Observed, Target, VersionPods};
use jiff::{SignedDuration, Timestamp};
use support::fixture;

const DRAIN: SignedDuration = SignedDuration::from_secs(25);

fn observed(target: &str, state: Target) -> Observed {
    let ie: InferenceEndpoint = fixture("endpoint.yaml");
    Observed {
        endpoint: "med-ja-chat".into(),
        generation: ie.metadata.generation,
        target_name: target.into(),
        target: state,
        status: ie.status.clone().unwrap_or_default(),
        pods: BTreeMap::new(),
        digests: BTreeMap::from([
            ("v1".into(), "sha256:aa".into()),
            ("v2".into(), "sha256:bb".into()),
        ]),
        replicas: rollout::replicas(&ie.spec.replicas),
        drain: DRAIN,
        now: Timestamp::from_second(1_800_000_000).expect("time"),
    }
}

fn pods(ready: i32) -> VersionPods {
    VersionPods { replicas: 2, ready }
}

/// Feeds a decision's status back in, as the next reconcile would read it.
fn next(mut o: Observed, d: &Decision, advance_secs: i64) -> Observed {
    o.status = d.status.clone();
    o.now += SignedDuration::from_secs(advance_secs);
    o
}

fn weights(d: &Decision) -> Vec<(String, i32)> {
    d.status
        .routing
        .iter()
        .map(|r| (r.model_version.clone(), r.weight))
        .collect()
}

fn serving_v1() -> Observed {
    let mut o = observed("v1", Target::Servable(Some("sha256:aa".into())));
    o.pods.insert("v1".into(), pods(2));
    let d = rollout::decide(&o);
    next(o, &d, 1)
}

#[test]
fn the_fixture_asks_for_two_replicas() {
    let ie: InferenceEndpoint = fixture("endpoint.yaml");
    assert_eq!(rollout::replicas(&ie.spec.replicas), 2);
}

#[test]
fn replica_count_honours_scale_within_bounds() {
    let mut r = anshin_crds::inference_endpoint::Replicas {
        min: 2,
        max: Some(4),
        desired: Some(3),
    };
    assert_eq!(rollout::replicas(&r), 3);
    r.desired = Some(9);
    assert_eq!(rollout::replicas(&r), 4);
    r.desired = Some(0);
    assert_eq!(rollout::replicas(&r), 2);
}

#[test]
fn the_first_version_serves_at_once_and_is_progressing_until_ready() {
    let o = observed("v1", Target::Servable(Some("sha256:aa".into())));
    let d = rollout::decide(&o);
    assert_eq!(d.serve, vec![("v1".to_owned(), 2)]);
    assert_eq!(d.status.stable_version.as_deref(), Some("v1"));
    assert_eq!(d.status.phase, EndpointPhase::Progressing);
    assert_eq!(weights(&d), vec![("v1".to_owned(), 100)]);
    assert_eq!(d.status.routing[0].digest.as_deref(), Some("sha256:aa"));
    assert_eq!(
        d.status.routing[0].selector,
        "anshin.dev/endpoint=med-ja-chat,anshin.dev/model-version=v1"
    );
    let mut o = next(o, &d, 5);
    o.pods.insert("v1".into(), pods(2));
    assert_eq!(rollout::decide(&o).status.phase, EndpointPhase::Ready);
}

#[test]
fn blue_green_switches_only_when_the_new_version_is_fully_ready_then_drains_the_old() {
    let mut o = serving_v1();
    o.target_name = "v2".into();
    o.target = Target::Servable(Some("sha256:bb".into()));
    // 1. v2 comes up beside v1; v1 keeps all traffic and all its pods.
    let d = rollout::decide(&o);
    assert_eq!(d.serve, vec![("v1".to_owned(), 2), ("v2".to_owned(), 2)]);
    assert_eq!(
        weights(&d),
        vec![("v1".to_owned(), 100), ("v2".to_owned(), 0)]
    );
    assert_eq!(d.status.canary_version.as_deref(), Some("v2"));
    assert_eq!(d.status.phase, EndpointPhase::Progressing);
    // 2. one of two v2 pods ready: still no switch.
    let mut o = next(o, &d, 5);
    o.pods.insert("v2".into(), pods(1));
    let d = rollout::decide(&o);
    assert_eq!(weights(&d)[0], ("v1".to_owned(), 100));
    // 3. v2 fully ready: traffic switches, v1 retires but keeps running.
    let mut o = next(o, &d, 5);
    o.pods.insert("v2".into(), pods(2));
    let d = rollout::decide(&o);
    assert_eq!(weights(&d), vec![("v2".to_owned(), 100)]);
    assert_eq!(d.status.stable_version.as_deref(), Some("v2"));
    assert_eq!(d.status.retiring.len(), 1);
    assert_eq!(d.serve, vec![("v2".to_owned(), 2), ("v1".to_owned(), 2)]);
    assert_eq!(d.requeue_after, Some(DRAIN));
    // 4. within the drain window v1 stays; after it, v1 goes.
    let o = next(o, &d, 10);
    let d = rollout::decide(&o);
    assert!(d.serve.iter().any(|(v, _)| v == "v1"), "v1 still draining");
    let o = next(o, &d, 20);
    let d = rollout::decide(&o);
    assert_eq!(d.serve, vec![("v2".to_owned(), 2)]);
    assert!(d.status.retiring.is_empty());
    assert_eq!(d.status.phase, EndpointPhase::Ready);
}

#[test]
fn deciding_again_on_the_same_state_changes_nothing() {
    // An operator restarted mid-rollout reads the same status and pods and must act the same way.
    let mut o = serving_v1();
    o.target_name = "v2".into();
    o.target = Target::Servable(None);
    o.pods.insert("v2".into(), pods(1));
    let first = rollout::decide(&o);
    let again = rollout::decide(&next(o, &first, 0));
    assert_eq!(again.serve, first.serve);
    assert_eq!(again.status, first.status);
}

#[test]
fn a_missing_model_version_keeps_the_current_one_serving() {
    let mut o = serving_v1();
    o.target_name = "v3".into();
    o.target = Target::Missing;
    let d = rollout::decide(&o);
    assert_eq!(d.serve, vec![("v1".to_owned(), 2)]);
    assert_eq!(weights(&d), vec![("v1".to_owned(), 100)]);
    assert_eq!(d.status.phase, EndpointPhase::Degraded);
    let c = d
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == rollout::MODEL_VERSION_RESOLVED)
        .expect("condition");
    assert_eq!(c.reason, "ModelVersionNotFound");
    assert!(c.message.contains("still serving v1"), "{}", c.message);
}

#[test]
fn a_rejected_or_unverified_model_version_never_gets_pods() {
    for target in [
        Target::Rejected("config.json: size differs".into()),
        Target::NotVerified(Default::default()),
    ] {
        let mut o = serving_v1();
        o.target_name = "v2".into();
        o.target = target;
        let d = rollout::decide(&o);
        assert_eq!(d.serve, vec![("v1".to_owned(), 2)]);
        assert!(d.status.canary_version.is_none());
    }
    let o = observed("v2", Target::Rejected("bad".into()));
    let d = rollout::decide(&o);
    assert!(
        d.serve.is_empty(),
        "nothing is served when the only version is rejected"
    );
    assert_eq!(d.status.phase, EndpointPhase::Pending);
}

#[test]
fn a_new_target_mid_rollout_replaces_the_canary_that_never_had_traffic() {
    let mut o = serving_v1();
    o.target_name = "v2".into();
    o.target = Target::Servable(None);
    let d = rollout::decide(&o);
    let mut o = next(o, &d, 5);
    o.target_name = "v3".into();
    o.pods.insert("v2".into(), pods(1));
    let d = rollout::decide(&o);
    assert_eq!(d.serve, vec![("v1".to_owned(), 2), ("v3".to_owned(), 2)]);
    assert_eq!(d.status.canary_version.as_deref(), Some("v3"));
}

#[test]
fn rolling_back_to_a_draining_version_switches_back_at_once() {
    let mut o = serving_v1();
    o.target_name = "v2".into();
    o.target = Target::Servable(None);
    o.pods.insert("v2".into(), pods(2));
    let d = rollout::decide(&o);
    assert_eq!(d.status.stable_version.as_deref(), Some("v2"));
    let mut o = next(o, &d, 3);
    o.target_name = "v1".into();
    let d = rollout::decide(&o);
    assert_eq!(d.status.stable_version.as_deref(), Some("v1"));
    assert_eq!(
        d.status
            .retiring
            .iter()
            .map(|r| r.model_version.as_str())
            .collect::<Vec<_>>(),
        ["v2"]
    );
}
