//! Every transition of [`decide`], every abort reason, commands and idempotence.

use super::analysis::{Breach, Inconclusive, Verdict};
use super::*;

fn plan() -> Plan {
    Plan {
        steps: vec![
            Step {
                weight: 10,
                pause_seconds: 60,
            },
            Step {
                weight: 50,
                pause_seconds: 60,
            },
        ],
        failure_limit: 2,
        progress_deadline_seconds: 300,
    }
}

fn seen(now: i64, ready: bool, window: Option<Verdict>) -> Observed {
    Observed {
        now,
        canary_ready: ready,
        not_ready_reason: None,
        window,
        command: None,
    }
}

fn breach() -> Verdict {
    Verdict::Breach(Breach {
        threshold: "maxErrorRate",
        measured: 0.3,
        limit: 0.05,
    })
}

fn run(plan: &Plan, mut state: State, steps: &[Observed]) -> (State, Vec<i32>) {
    let mut weights = Vec::new();
    for obs in steps {
        let d = decide(plan, &state, obs);
        weights.push(d.canary_weight);
        state = d.state;
    }
    (state, weights)
}

#[test]
fn a_good_canary_gets_each_weight_only_when_ready_and_is_promoted_after_the_last_step() {
    let p = plan();
    let (state, weights) = run(
        &p,
        State::start(0),
        &[
            seen(5, false, None),                 // pods coming up: no traffic
            seen(10, true, None),                 // Ready: step 1's weight
            seen(40, true, Some(Verdict::Pass)),  // passed, but the pause is not over
            seen(70, true, Some(Verdict::Pass)),  // pause over: step 2, weight once Ready
            seen(75, false, None),                // step 2's extra pods not Ready: keep 10
            seen(80, true, None),                 // Ready: 50
            seen(150, true, Some(Verdict::Pass)), // last step passed: full size next
            seen(160, true, None),                // Ready at full size: promoted
        ],
    );
    assert_eq!(weights, [0, 10, 10, 10, 10, 50, 50, 100]);
    assert_eq!(state.phase, Phase::Promoted);
}

#[test]
fn the_pause_counts_from_when_the_canary_got_its_weight() {
    let p = plan();
    let (state, _) = run(
        &p,
        State::start(0),
        &[seen(50, true, None), seen(100, true, Some(Verdict::Pass))],
    );
    assert_eq!(state.step, 0, "50 s at 10 %, not the 60 s pause");
    let d = decide(&p, &state, &seen(111, true, Some(Verdict::Pass)));
    assert_eq!(d.state.step, 1);
}

#[test]
fn failure_limit_consecutive_breaches_abort_with_the_threshold_and_weight_zero() {
    let p = plan();
    let (state, weights) = run(
        &p,
        State::start(0),
        &[
            seen(10, true, Some(breach())),
            seen(40, true, Some(Verdict::Pass)),
        ],
    );
    assert_eq!(weights, [10, 10], "one breach is below failureLimit 2");
    assert_eq!(state.bad_windows, 0, "a pass resets the count");
    let one = decide(&p, &state, &seen(50, true, Some(breach())));
    let two = decide(&p, &one.state, &seen(80, true, Some(breach())));
    assert_eq!(two.canary_weight, 0);
    assert_eq!(two.state.phase, Phase::Aborted);
    let Some(AbortReason::Threshold(b)) = two.aborted else {
        panic!("{:?}", two.aborted)
    };
    assert_eq!((b.threshold, b.measured), ("maxErrorRate", 0.3));
    let after = decide(&p, &two.state, &seen(90, true, Some(Verdict::Pass)));
    assert_eq!(
        (after.canary_weight, after.aborted),
        (0, None),
        "aborted stays aborted"
    );
}

#[test]
fn a_failure_limit_of_one_aborts_in_the_first_bad_window() {
    let p = Plan {
        failure_limit: 1,
        ..plan()
    };
    let d = decide(&p, &State::start(0), &seen(10, true, Some(breach())));
    assert!(matches!(d.aborted, Some(AbortReason::Threshold(_))));
    assert_eq!(d.canary_weight, 0);
}

#[test]
fn inconclusive_windows_wait_until_the_deadline_then_abort() {
    let p = plan();
    let few = Some(Verdict::Inconclusive(Inconclusive::TooFewRequests {
        seen: 3,
        needed: 20,
    }));
    let d = decide(&p, &State::start(0), &seen(200, true, few));
    assert_eq!((d.state.phase, d.canary_weight), (Phase::Progressing, 10));
    let d = decide(&p, &d.state, &seen(301, true, few));
    assert_eq!(d.aborted, Some(AbortReason::NoPassingWindow));
}

#[test]
fn a_canary_never_ready_is_aborted_after_the_deadline_naming_why() {
    let p = plan();
    let mut obs = seen(100, false, None);
    obs.not_ready_reason = Some("CrashLoopBackOff: exit 1".into());
    let d = decide(&p, &State::start(0), &obs);
    assert_eq!((d.canary_weight, d.aborted.clone()), (0, None));
    obs.now = 301;
    let d = decide(&p, &d.state, &obs);
    assert_eq!(
        d.aborted,
        Some(AbortReason::NotReady(Some(
            "CrashLoopBackOff: exit 1".into()
        )))
    );
    assert_eq!(d.canary_weight, 0);
}

#[test]
fn commands_pause_resume_promote_and_abort() {
    let p = plan();
    let with = |now, command| Observed {
        command: Some(command),
        ..seen(now, true, Some(Verdict::Pass))
    };
    let paused = decide(&p, &State::start(0), &with(10, Command::Pause));
    assert_eq!(
        (paused.state.phase, paused.canary_weight),
        (Phase::Paused, 10)
    );
    let still = decide(&p, &paused.state, &seen(1_000, true, Some(Verdict::Pass)));
    assert_eq!(
        (still.state.phase, still.state.step),
        (Phase::Paused, 0),
        "no deadline, no advance"
    );
    let resumed = decide(&p, &still.state, &with(1_010, Command::Resume));
    assert_eq!(resumed.state.phase, Phase::Progressing);
    assert_eq!(
        resumed.state.step_started, 1_010,
        "paused time does not count"
    );
    let promoted = decide(&p, &resumed.state, &with(1_020, Command::Promote));
    assert_eq!(promoted.state.phase, Phase::Promoted);
    assert_eq!(promoted.canary_weight, 100);
    let aborted = decide(&p, &State::start(0), &with(5, Command::Abort));
    assert_eq!(
        (aborted.canary_weight, aborted.aborted),
        (0, Some(AbortReason::Manual))
    );
}

#[test]
fn promote_waits_for_the_canary_to_be_ready_at_full_size() {
    let p = plan();
    let cmd = Observed {
        command: Some(Command::Promote),
        ..seen(10, false, None)
    };
    let d = decide(&p, &State::start(0), &cmd);
    assert_eq!(
        (d.state.phase, d.canary_weight),
        (Phase::Progressing, 0),
        "not Ready: no weight it never had"
    );
    let d = decide(&p, &d.state, &seen(20, true, None));
    assert_eq!((d.state.phase, d.canary_weight), (Phase::Promoted, 100));
}

#[test]
fn the_same_input_gives_the_same_decision() {
    let p = plan();
    let state = State::start(0);
    for obs in [
        seen(10, true, Some(breach())),
        seen(70, true, Some(Verdict::Pass)),
        seen(400, false, None),
    ] {
        assert_eq!(decide(&p, &state, &obs), decide(&p, &state, &obs));
    }
}

#[test]
fn the_plan_and_thresholds_come_from_the_spec() {
    let rollout: anshin_crds::inference_endpoint::Rollout = serde_json::from_value(serde_json::json!({
        "strategy": "Canary", "steps": [{"weight": 10, "pauseSeconds": 30}, {"weight": 50}],
        "failureLimit": 2, "progressDeadlineSeconds": 120,
        "analysis": {"maxErrorRate": 0.05, "maxP95LatencyMs": 800, "minRequests": 20,
                     "maxOutputLeakRate": 0.0, "relative": {"maxErrorRateIncrease": 0.02, "maxP95LatencyRatio": 1.5}}
    }))
    .expect("rollout");
    let p = super::plan(&rollout);
    assert_eq!(
        p.steps,
        [
            Step {
                weight: 10,
                pause_seconds: 30
            },
            Step {
                weight: 50,
                pause_seconds: 60
            }
        ]
    );
    assert_eq!((p.failure_limit, p.progress_deadline_seconds), (2, 120));
    let t = thresholds(&rollout.analysis);
    assert_eq!(
        (t.max_error_rate, t.max_p95_latency_ms, t.min_requests),
        (0.05, 800.0, 20)
    );
    assert_eq!(
        (t.max_ttft_p95_ms, t.max_output_leak_rate),
        (None, Some(0.0))
    );
    assert!(t.relative.is_some_and(|r| r.max_p95_latency_ratio == 1.5));
}
