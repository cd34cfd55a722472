//! Test-only fault injection: make a model server answer badly on purpose, so that end-to-end tests can
//! roll out a bad canary (errors, slow tokens, PII in answers) and watch the gateway and the operator
//! catch it.
//!
//! The flags ([`FaultArgs`]) are refused unless `--enable-fault-injection` is also given; they become a
//! [`FaultPlan`] (pure decisions) held by [`Faults`], which the request path calls at two points only:
//! [`Faults::fail_before_answer`] before a request is submitted (so a failed request never sends a byte
//! of an answer), and [`Faults::shape`], which wraps the engine's event stream to delay tokens and append
//! a fake phone number. Health, readiness and `/metrics` are never faulted. Every faulted request is
//! counted in `anshin_inference_faults_injected_total{kind}`, and `anshin_inference_fault_injection_enabled`
//! is 1 on such a server so that a production dashboard can alert on it.

use std::sync::Mutex;
use std::time::Duration;

use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

use crate::metrics::Metrics;
use crate::scheduler::GenEvent;
use crate::server::error::ApiError;

/// The fake phone number `--fault-phone-number` puts into answers: a mobile-number format that the
/// guardrails detect as a phone number, with a subscriber part (`0000`) that is never assigned.
pub const FAKE_PHONE_NUMBER: &str = "090-0000-0000";

/// The text appended to every answer under `--fault-phone-number`; the line break keeps the number
/// apart from whatever the model generated last, so it is detected whole.
pub const FAKE_PHONE_TEXT: &str = "\n連絡先: 090-0000-0000";

/// Seed of the error draws: a given server fails the same sequence of requests in every run.
const ERROR_DRAW_SEED: u64 = 0x5eed_fa17;

/// Fault flags of `serve`; every fault flag needs `--enable-fault-injection`.
#[derive(Args, Debug, Clone, Default)]
pub struct FaultArgs {
    /// Allow the `--fault-*` flags. For tests only: the server then fails on purpose, logs a warning at
    /// start and reports `anshin_inference_fault_injection_enabled 1`.
    #[arg(long)]
    pub enable_fault_injection: bool,
    /// Fraction (0.0 to 1.0) of completion requests answered HTTP 500 before any byte of an answer.
    /// Needs `--enable-fault-injection`.
    #[arg(long, value_parser = parse_fraction)]
    pub fault_error_rate: Option<f64>,
    /// Time added before each generated token is sent, e.g. `50ms`. Needs `--enable-fault-injection`.
    #[arg(long, value_parser = crate::cli::parse_duration)]
    pub fault_token_delay: Option<Duration>,
    /// Append a fixed fake phone number (090-0000-0000) to every answer, as PII the model produced on
    /// its own. Needs `--enable-fault-injection`.
    #[arg(long)]
    pub fault_phone_number: bool,
}

/// Why the fault flags were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FaultError {
    /// A fault flag was given without `--enable-fault-injection`.
    #[error(
        "{flag} needs --enable-fault-injection: fault flags make the server fail on purpose and are for \
         tests only; add --enable-fault-injection in a test, remove {flag} anywhere else"
    )]
    NotEnabled {
        /// The first fault flag found.
        flag: &'static str,
    },
}

impl FaultArgs {
    /// The plan the flags ask for: `None` when fault injection is off; an error when a fault flag is
    /// given without `--enable-fault-injection`.
    pub fn plan(&self) -> Result<Option<FaultPlan>, FaultError> {
        if !self.enable_fault_injection {
            let given = [
                ("--fault-error-rate", self.fault_error_rate.is_some()),
                ("--fault-token-delay", self.fault_token_delay.is_some()),
                ("--fault-phone-number", self.fault_phone_number),
            ];
            return match given.into_iter().find(|(_, set)| *set) {
                Some((flag, _)) => Err(FaultError::NotEnabled { flag }),
                None => Ok(None),
            };
        }
        Ok(Some(FaultPlan {
            error_rate: self.fault_error_rate.unwrap_or(0.0),
            token_delay: self.fault_token_delay.unwrap_or(Duration::ZERO),
            phone_number: self.fault_phone_number,
        }))
    }
}

/// Parses a fraction between 0.0 and 1.0.
pub fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!(
            "`{s}` is not a fraction between 0.0 and 1.0 (0.3 fails 30 % of requests)"
        )),
    }
}

/// What to break, decided by pure functions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultPlan {
    /// Fraction of completion requests that fail with HTTP 500.
    pub error_rate: f64,
    /// Time added before each generated token is sent.
    pub token_delay: Duration,
    /// Whether answers end with [`FAKE_PHONE_TEXT`].
    pub phone_number: bool,
}

impl FaultPlan {
    /// Whether a request whose uniform draw in `[0, 1)` is `draw` fails.
    pub fn fails(&self, draw: f64) -> bool {
        draw < self.error_rate
    }

    /// Whether answers are changed at all (delayed or given the phone number).
    pub fn shapes_answers(&self) -> bool {
        !self.token_delay.is_zero() || self.phone_number
    }

    /// The delay owed when a request finishes with `tokens` generated after `delayed` were already
    /// delayed one by one: tokens the engine held back and sends only at the end (an unfinished
    /// character, a possible stop string) are still each delayed once.
    pub fn delay_at_end(&self, tokens: usize, delayed: usize) -> Duration {
        let owed = u32::try_from(tokens.saturating_sub(delayed)).unwrap_or(u32::MAX);
        self.token_delay.saturating_mul(owed)
    }

    /// The text appended to every answer, if any.
    pub fn answer_suffix(&self) -> Option<&'static str> {
        self.phone_number.then_some(FAKE_PHONE_TEXT)
    }
}

/// A kind of injected fault, the `kind` label of `anshin_inference_faults_injected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// A request answered HTTP 500.
    Error,
    /// A request whose tokens were delayed.
    Delay,
    /// A request whose answer got the fake phone number.
    Phone,
}

impl FaultKind {
    /// Every kind, in label order.
    pub const ALL: [FaultKind; 3] = [Self::Error, Self::Delay, Self::Phone];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Delay => "delay",
            Self::Phone => "phone",
        }
    }
}

/// The server's faults: off, or a plan with its random draws and its metrics.
pub struct Faults {
    plan: Option<FaultPlan>,
    draws: Mutex<StdRng>,
    metrics: Metrics,
}

impl Faults {
    /// No faults (every production server).
    pub fn off(metrics: Metrics) -> Self {
        metrics.fault_injection_enabled.set(0);
        Self {
            plan: None,
            draws: Mutex::new(StdRng::seed_from_u64(ERROR_DRAW_SEED)),
            metrics,
        }
    }

    /// Faults as `plan` says; reports fault injection as enabled.
    pub fn new(plan: FaultPlan, metrics: Metrics) -> Self {
        let faults = Self {
            plan: Some(plan),
            ..Self::off(metrics)
        };
        faults.metrics.fault_injection_enabled.set(1);
        faults
    }

    /// Fails this request with HTTP 500 when its draw says so; called before it is submitted.
    pub fn fail_before_answer(&self) -> Result<(), ApiError> {
        let Some(plan) = self.plan.filter(|p| p.error_rate > 0.0) else {
            return Ok(());
        };
        let draw: f64 = match self.draws.lock() {
            Ok(mut rng) => rng.random(),
            Err(poisoned) => poisoned.into_inner().random(),
        };
        if plan.fails(draw) {
            self.count(FaultKind::Error);
            return Err(ApiError::InjectedFault);
        }
        Ok(())
    }

    /// The request's events with the plan's delays and phone number applied; `events` unchanged when
    /// answers are not faulted.
    pub fn shape(&self, events: UnboundedReceiver<GenEvent>) -> UnboundedReceiver<GenEvent> {
        let Some(plan) = self.plan.filter(FaultPlan::shapes_answers) else {
            return events;
        };
        if !plan.token_delay.is_zero() {
            self.count(FaultKind::Delay);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(forward(plan, self.metrics.clone(), events, tx));
        rx
    }

    fn count(&self, kind: FaultKind) {
        count(&self.metrics, kind);
    }
}

fn count(metrics: &Metrics, kind: FaultKind) {
    metrics
        .faults_injected
        .with_label_values(&[kind.label()])
        .inc();
}

/// Forwards `events` to `tx` up to the last one (done or failed), sleeping before each token and
/// appending the phone number before the last event. When the caller goes away, returns at once:
/// dropping `events` cancels the request.
async fn forward(
    plan: FaultPlan,
    metrics: Metrics,
    mut events: UnboundedReceiver<GenEvent>,
    tx: UnboundedSender<GenEvent>,
) {
    let mut delayed = 0;
    while let Some(ev) = events.recv().await {
        let pause = match &ev {
            GenEvent::Delta(_) => plan.token_delay,
            GenEvent::Done(c) => plan.delay_at_end(c.tokens.len(), delayed),
            GenEvent::Failed(_) => Duration::ZERO,
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = tx.closed() => return,
        }
        match &ev {
            GenEvent::Delta(_) => delayed += 1,
            GenEvent::Done(_) => {
                if let Some(suffix) = plan.answer_suffix() {
                    count(&metrics, FaultKind::Phone);
                    if tx.send(GenEvent::Delta(suffix.to_owned())).is_err() {
                        return;
                    }
                }
            }
            GenEvent::Failed(_) => {}
        }
        let last = !matches!(ev, GenEvent::Delta(_));
        if tx.send(ev).is_err() || last {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
