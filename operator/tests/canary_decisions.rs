//! The canary state machine from YAML scenarios (`tests/fixtures/canary/*.yaml`): a plan, then
//! observations in order, each with the weight, phase, step and abort reason expected after it.
//! Every scenario is also replayed to check that the same input gives the same decision.

mod support;

use anshin_operator::endpoint::canary::analysis::{Breach, Inconclusive, Verdict};
use anshin_operator::endpoint::canary::{
    AbortReason, Command, Decision, Observed, Phase, Plan, State, Step, decide,
};
use serde_json::Value;
use support::fixture;

fn plan(v: &Value) -> Plan {
    Plan {
        steps: v["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .map(|s| Step {
                weight: s["weight"].as_i64().expect("weight") as i32,
                pause_seconds: s["pauseSeconds"].as_i64().unwrap_or(60),
            })
            .collect(),
        failure_limit: v["failureLimit"].as_u64().unwrap_or(1) as u32,
        progress_deadline_seconds: v["progressDeadlineSeconds"].as_i64().unwrap_or(600),
    }
}

/// `pass`, `{breach: NAME, measured: X, limit: Y}` or `{tooFew: N}`.
fn window(v: &Value) -> Option<Verdict> {
    if v.is_null() {
        return None;
    }
    if v.as_str() == Some("pass") {
        return Some(Verdict::Pass);
    }
    if let Some(seen) = v["tooFew"].as_u64() {
        return Some(Verdict::Inconclusive(Inconclusive::TooFewRequests {
            seen,
            needed: 20,
        }));
    }
    let name = v["breach"].as_str().expect("breach name");
    let threshold = [
        "maxErrorRate",
        "maxP95LatencyMs",
        "maxTtftP95Ms",
        "maxOutputLeakRate",
    ]
    .into_iter()
    .find(|t| *t == name)
    .expect("a known threshold");
    Some(Verdict::Breach(Breach {
        threshold,
        measured: v["measured"].as_f64().expect("measured"),
        limit: v["limit"].as_f64().expect("limit"),
    }))
}

fn command(v: &Value) -> Option<Command> {
    Some(match v.as_str()? {
        "promote" => Command::Promote,
        "pause" => Command::Pause,
        "resume" => Command::Resume,
        "abort" => Command::Abort,
        other => panic!("unknown command {other}"),
    })
}

fn observed(v: &Value) -> Observed {
    Observed {
        now: v["now"].as_i64().expect("now"),
        canary_ready: v["ready"].as_bool().expect("ready"),
        not_ready_reason: v["notReady"].as_str().map(str::to_owned),
        window: window(&v["window"]),
        command: command(&v["command"]),
    }
}

fn abort_text(r: &AbortReason) -> String {
    match r {
        AbortReason::Threshold(b) => {
            format!("Threshold {} {} > {}", b.threshold, b.measured, b.limit)
        }
        AbortReason::NoPassingWindow => "NoPassingWindow".into(),
        AbortReason::NotReady(why) => format!("NotReady {}", why.as_deref().unwrap_or("")),
        AbortReason::Manual => "Manual".into(),
    }
}

fn check(file: &str, i: usize, d: &Decision, expect: &Value) {
    let at = format!("{file}, observation {i}");
    assert_eq!(
        i64::from(d.canary_weight),
        expect["weight"].as_i64().expect("weight"),
        "{at}: weight"
    );
    if let Some(phase) = expect["phase"].as_str() {
        assert_eq!(format!("{:?}", d.state.phase), phase, "{at}: phase");
    }
    if let Some(step) = expect["step"].as_u64() {
        assert_eq!(d.state.step as u64, step, "{at}: step");
    }
    let aborted = d.aborted.as_ref().map(abort_text);
    assert_eq!(
        aborted.as_deref(),
        expect["abort"].as_str(),
        "{at}: abort reason"
    );
}

#[test]
fn every_canary_scenario_follows_its_expected_weights_phases_and_aborts() {
    let dir = format!("{}/tests/fixtures/canary", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "scenarios: {files:?}");
    for file in &files {
        let scenario: Value = fixture(&format!("canary/{file}"));
        let p = plan(&scenario["plan"]);
        let mut state = State::start(0);
        for (i, obs) in scenario["observations"]
            .as_array()
            .expect("observations")
            .iter()
            .enumerate()
        {
            let seen = observed(obs);
            let d = decide(&p, &state, &seen);
            assert_eq!(
                d,
                decide(&p, &state, &seen),
                "{file}, observation {i}: same input, same decision"
            );
            check(file, i, &d, &obs["expect"]);
            state = d.state;
        }
        assert_ne!(state.phase, Phase::Progressing, "{file} ends decided");
    }
}
