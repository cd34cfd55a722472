//! Canary rollout decisions (pure; not wired into the endpoint controller yet — issue 20).
//!
//! One call of [`decide`] takes the rollout's last [`State`] (kept in the endpoint's status) and what
//! was observed since ([`Observed`]: the canary's readiness, the verdict of a window completed since
//! the last call, a manual command) and returns the next state with the canary's weight. Rules:
//! - the canary gets a step's weight only once its pods are Ready (before that, the previous step's);
//! - a step ends once at least `pauseSeconds` passed since the canary got its weight and a window
//!   passed the analysis ([`analysis::judge`]); after the last step comes full traffic, given (and
//!   the rollout `Promoted`) once the canary is Ready at full size;
//! - `failureLimit` consecutive breaching windows abort; so does a step without a passing window, or
//!   without Ready canary pods, for longer than `progressDeadlineSeconds`;
//! - an aborted canary gets weight 0 (the stable version 100 %) in the same decision, before the
//!   caller removes anything; `promote`, `pause`, `resume` and `abort` commands override.
//!
//! Same inputs, same decision: the caller hands over each completed window once.

pub mod analysis;
pub mod queries;
pub mod window;

use analysis::{Breach, Relative, Thresholds, Verdict};
use anshin_crds::inference_endpoint::{Analysis, Rollout};

/// The plan a rollout spec describes.
pub fn plan(rollout: &Rollout) -> Plan {
    Plan {
        steps: rollout
            .steps
            .iter()
            .map(|s| Step {
                weight: s.weight,
                pause_seconds: i64::from(s.pause_seconds),
            })
            .collect(),
        failure_limit: u32::try_from(rollout.failure_limit).unwrap_or(1).max(1),
        progress_deadline_seconds: i64::from(rollout.progress_deadline_seconds),
    }
}

/// The thresholds an analysis spec sets.
pub fn thresholds(a: &Analysis) -> Thresholds {
    Thresholds {
        max_error_rate: a.max_error_rate,
        max_p95_latency_ms: a.max_p95_latency_ms as f64,
        max_ttft_p95_ms: a.max_ttft_p95_ms.map(|v| v as f64),
        max_output_leak_rate: a.max_output_leak_rate,
        min_requests: u64::try_from(a.min_requests).unwrap_or(0),
        relative: a.relative.as_ref().map(|r| Relative {
            max_error_rate_increase: r.max_error_rate_increase,
            max_p95_latency_ratio: r.max_p95_latency_ratio,
        }),
    }
}

/// One step of the plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// Percent of traffic to the canary during the step.
    pub weight: i32,
    /// Least seconds the step lasts.
    pub pause_seconds: i64,
}

/// The rollout plan from the spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Steps with strictly increasing weights.
    pub steps: Vec<Step>,
    /// Consecutive breaching windows that abort.
    pub failure_limit: u32,
    /// Longest a step may go without Ready canary pods or without a passing window.
    pub progress_deadline_seconds: i64,
}

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Stepping through the plan.
    Progressing,
    /// Held at its step by a `pause` command until `resume`.
    Paused,
    /// The canary took all traffic.
    Promoted,
    /// The canary was stopped; the stable version serves.
    Aborted,
}

/// The rollout's state between decisions (persisted in status).
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// Phase.
    pub phase: Phase,
    /// Index of the current step.
    pub step: usize,
    /// When the current step started (Unix seconds); its deadline counts from here.
    pub step_started: i64,
    /// Since when the canary has had this step's weight (its Ready pods); `pauseSeconds` counts from
    /// here, and only windows that start after it should be judged.
    pub weighted_since: Option<i64>,
    /// The canary's weight given by the last decision.
    pub weight: i32,
    /// Consecutive breaching windows.
    pub bad_windows: u32,
    /// A window passed in the current step.
    pub passed: bool,
}

impl State {
    /// A rollout that starts at `now`.
    pub fn start(now: i64) -> State {
        State {
            phase: Phase::Progressing,
            step: 0,
            step_started: now,
            weighted_since: None,
            weight: 0,
            bad_windows: 0,
            passed: false,
        }
    }
}

/// A person's command (annotation `anshin.dev/rollout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Give the canary all traffic now.
    Promote,
    /// Hold the current step.
    Pause,
    /// Go on after a pause.
    Resume,
    /// Stop the canary now.
    Abort,
}

/// What was observed since the last decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// Now (Unix seconds).
    pub now: i64,
    /// All canary pods Ready.
    pub canary_ready: bool,
    /// Why the canary's pods are not Ready (crash loop, image error, unschedulable), if known.
    pub not_ready_reason: Option<String>,
    /// The verdict of a window completed since the last decision.
    pub window: Option<Verdict>,
    /// A command to act on.
    pub command: Option<Command>,
}

/// Why a canary was aborted.
#[derive(Debug, Clone, PartialEq)]
pub enum AbortReason {
    /// `failureLimit` consecutive windows broke a threshold (the last breach).
    Threshold(Breach),
    /// No passing window within the deadline.
    NoPassingWindow,
    /// Canary pods not Ready within the deadline, with the reason when known.
    NotReady(Option<String>),
    /// The `abort` command.
    Manual,
}

/// The next state and what to route.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The state to persist.
    pub state: State,
    /// Percent of traffic to the canary (the stable version gets the rest).
    pub canary_weight: i32,
    /// Set when this decision aborted the canary.
    pub aborted: Option<AbortReason>,
}

fn weight_at(plan: &Plan, step: usize) -> i32 {
    plan.steps.get(step).map_or(100, |s| s.weight)
}

/// The canary's weight: its step's once its pods are Ready, else what it had (a step's weight is
/// never given to pods that are not Ready for it).
fn weight(plan: &Plan, state: &State, ready: bool) -> i32 {
    match state.phase {
        Phase::Promoted => 100,
        Phase::Aborted => 0,
        _ if ready => weight_at(plan, state.step),
        _ => state.weight,
    }
}

/// The decision that routes `weight` to the canary from `state` on.
fn route(mut state: State, weight: i32) -> Decision {
    state.weight = weight;
    Decision {
        state,
        canary_weight: weight,
        aborted: None,
    }
}

fn abort(mut state: State, reason: AbortReason) -> Decision {
    state.phase = Phase::Aborted;
    state.weight = 0;
    Decision {
        state,
        canary_weight: 0,
        aborted: Some(reason),
    }
}

fn apply_command(plan: &Plan, mut state: State, obs: &Observed) -> Result<State, Decision> {
    match obs.command {
        Some(Command::Abort) => return Err(abort(state, AbortReason::Manual)),
        Some(Command::Promote) => {
            // Full traffic once the canary is Ready at full size, like a last step of 100 %.
            state.phase = Phase::Progressing;
            state.step = plan.steps.len();
            state.step_started = obs.now;
            state.weighted_since = None;
        }
        Some(Command::Pause) => state.phase = Phase::Paused,
        Some(Command::Resume) if state.phase == Phase::Paused => {
            state.phase = Phase::Progressing;
            // Time spent paused does not count toward the step's deadline or pause.
            state.step_started = obs.now;
            state.weighted_since = state.weighted_since.map(|_| obs.now);
        }
        Some(Command::Resume) | None => {}
    }
    Ok(state)
}

/// The next decision for a canary rollout (pure).
pub fn decide(plan: &Plan, state: &State, obs: &Observed) -> Decision {
    if matches!(state.phase, Phase::Promoted | Phase::Aborted) {
        return route(state.clone(), weight(plan, state, true));
    }
    let mut state = match apply_command(plan, state.clone(), obs) {
        Ok(s) => s,
        Err(aborted) => return aborted,
    };
    if state.phase != Phase::Progressing {
        let w = weight(plan, &state, obs.canary_ready);
        return route(state, w);
    }
    let elapsed = obs.now - state.step_started;
    let late = elapsed > plan.progress_deadline_seconds;
    if !obs.canary_ready {
        if late {
            return abort(state, AbortReason::NotReady(obs.not_ready_reason.clone()));
        }
        let w = weight(plan, &state, false);
        return route(state, w);
    }
    if state.step >= plan.steps.len() {
        state.phase = Phase::Promoted;
        return route(state, 100);
    }
    let since = *state.weighted_since.get_or_insert(obs.now);
    match obs.window {
        Some(Verdict::Breach(b)) => {
            state.bad_windows += 1;
            state.passed = false;
            if state.bad_windows >= plan.failure_limit.max(1) {
                return abort(state, AbortReason::Threshold(b));
            }
        }
        Some(Verdict::Pass) => {
            state.bad_windows = 0;
            state.passed = true;
        }
        Some(Verdict::Inconclusive(_)) | None => {}
    }
    let pause = plan.steps.get(state.step).map_or(0, |s| s.pause_seconds);
    if state.passed && obs.now - since >= pause {
        return advance(plan, state, obs.now);
    }
    if !state.passed && late {
        return abort(state, AbortReason::NoPassingWindow);
    }
    let w = weight(plan, &state, true);
    route(state, w)
}

/// The next step; after the last one, full traffic (promotion). The new step's weight is given only
/// once a later observation finds the canary's pods for it Ready; until then the canary keeps the
/// weight of the step it passed.
fn advance(plan: &Plan, mut state: State, now: i64) -> Decision {
    state.step += 1;
    state.step_started = now;
    state.weighted_since = None;
    state.passed = false;
    state.bad_windows = 0;
    let w = weight(plan, &state, false);
    route(state, w)
}

#[cfg(test)]
mod tests;
