//! Judging one analysis window of a canary (pure): the canary version's live figures against the
//! endpoint's thresholds, and optionally against the stable version's figures in the same window.
//!
//! The figures are deltas of the gateway's counters over the window (see
//! `anshin_gateway_backend_attempts_total`, `anshin_gateway_leak_answers_total` and the latency
//! histograms): the error rate counts every *attempt* on the canary, so a request that failed there
//! and was retried on the stable version still counts against the canary although its caller got an
//! answer. A window with fewer than `min_requests` canary attempts, or without a figure a threshold
//! needs, is inconclusive: it neither passes nor breaches.

/// One version's figures over one window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Window {
    /// Attempts on the version's backends.
    pub attempts: u64,
    /// Attempts that failed (5xx, connection errors, timeouts, broken bodies; not 429).
    pub failed: u64,
    /// p95 of whole-request latency, milliseconds (`None`: no histogram samples).
    pub p95_latency_ms: Option<f64>,
    /// p95 of time to the first streamed byte, milliseconds (`None`: no streamed answers).
    pub ttft_p95_ms: Option<f64>,
    /// Answers served by the version.
    pub answers: u64,
    /// Answers in which the model produced PII on its own.
    pub leak_answers: u64,
}

impl Window {
    /// Failed attempts ÷ attempts (0 without attempts).
    pub fn error_rate(&self) -> f64 {
        ratio(self.failed, self.attempts)
    }

    /// Answers with PII the model produced ÷ answers (0 without answers).
    pub fn leak_rate(&self) -> f64 {
        ratio(self.leak_answers, self.answers)
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Limits relative to the stable version in the same window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Relative {
    /// Most the canary's error rate may exceed the stable version's, in absolute terms (0.02 = two
    /// percentage points).
    pub max_error_rate_increase: f64,
    /// Most the canary's p95 latency may be as a multiple of the stable version's (1.5 = 50 % slower).
    pub max_p95_latency_ratio: f64,
}

/// What a window must meet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Highest tolerated error rate (0–1).
    pub max_error_rate: f64,
    /// Highest tolerated p95 latency, milliseconds.
    pub max_p95_latency_ms: f64,
    /// Highest tolerated p95 time to first byte, milliseconds (not judged when `None`).
    pub max_ttft_p95_ms: Option<f64>,
    /// Highest tolerated fraction of answers with PII the model produced (not judged when `None`).
    pub max_output_leak_rate: Option<f64>,
    /// Fewest canary attempts a window needs to be judged.
    pub min_requests: u64,
    /// Limits relative to the stable version (not judged when `None` or without stable figures).
    pub relative: Option<Relative>,
}

/// A threshold the canary broke, with the measured value and the limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Breach {
    /// The threshold's name as in the spec (`maxErrorRate`, `maxP95LatencyMs`, …).
    pub threshold: &'static str,
    /// What the canary measured.
    pub measured: f64,
    /// The limit it broke.
    pub limit: f64,
}

/// Why a window could not be judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Inconclusive {
    /// Fewer canary attempts than `min_requests`.
    TooFewRequests {
        /// Attempts seen.
        seen: u64,
        /// Attempts needed.
        needed: u64,
    },
    /// A figure a threshold needs is missing (e.g. no latency samples).
    Missing(&'static str),
}

/// The outcome of one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Every threshold met.
    Pass,
    /// The first threshold broken, in the order of [`judge`].
    Breach(Breach),
    /// Not enough to judge.
    Inconclusive(Inconclusive),
}

/// Judges the canary's window against `t` (and against `stable`'s window for relative limits).
/// Absolute thresholds are checked in a fixed order — error rate, p95 latency, p95 time to first
/// byte, leak rate — then the relative ones; the first breach is reported.
pub fn judge(canary: &Window, stable: Option<&Window>, t: &Thresholds) -> Verdict {
    if canary.attempts < t.min_requests.max(1) {
        return Verdict::Inconclusive(Inconclusive::TooFewRequests {
            seen: canary.attempts,
            needed: t.min_requests.max(1),
        });
    }
    let Some(p95) = canary.p95_latency_ms else {
        return Verdict::Inconclusive(Inconclusive::Missing("p95 latency"));
    };
    let mut checks = vec![
        ("maxErrorRate", canary.error_rate(), t.max_error_rate),
        ("maxP95LatencyMs", p95, t.max_p95_latency_ms),
    ];
    if let Some(limit) = t.max_ttft_p95_ms {
        match canary.ttft_p95_ms {
            Some(ttft) => checks.push(("maxTtftP95Ms", ttft, limit)),
            None if canary.answers > 0 => {
                return Verdict::Inconclusive(Inconclusive::Missing("p95 time to first byte"));
            }
            None => {}
        }
    }
    if let Some(limit) = t.max_output_leak_rate {
        checks.push(("maxOutputLeakRate", canary.leak_rate(), limit));
    }
    if let (Some(r), Some(s)) = (t.relative, stable.filter(|s| s.attempts > 0)) {
        let increase = canary.error_rate() - s.error_rate();
        checks.push((
            "relative.maxErrorRateIncrease",
            increase,
            r.max_error_rate_increase,
        ));
        if let Some(stable_p95) = s.p95_latency_ms.filter(|v| *v > 0.0) {
            let ratio = p95 / stable_p95;
            checks.push((
                "relative.maxP95LatencyRatio",
                ratio,
                r.max_p95_latency_ratio,
            ));
        }
    }
    checks
        .into_iter()
        .find(|(_, measured, limit)| measured > limit)
        .map_or(Verdict::Pass, |(threshold, measured, limit)| {
            Verdict::Breach(Breach {
                threshold,
                measured,
                limit,
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thresholds() -> Thresholds {
        Thresholds {
            max_error_rate: 0.05,
            max_p95_latency_ms: 2_000.0,
            max_ttft_p95_ms: Some(500.0),
            max_output_leak_rate: Some(0.0),
            min_requests: 20,
            relative: None,
        }
    }

    fn good() -> Window {
        Window {
            attempts: 100,
            failed: 1,
            p95_latency_ms: Some(800.0),
            ttft_p95_ms: Some(120.0),
            answers: 99,
            leak_answers: 0,
        }
    }

    fn breach(v: Verdict) -> (&'static str, f64, f64) {
        match v {
            Verdict::Breach(b) => (b.threshold, b.measured, b.limit),
            other => panic!("expected a breach, got {other:?}"),
        }
    }

    #[test]
    fn a_healthy_canary_passes() {
        assert_eq!(judge(&good(), None, &thresholds()), Verdict::Pass);
    }

    #[test]
    fn each_absolute_threshold_is_reported_with_its_measured_value() {
        let t = thresholds();
        let errors = Window {
            failed: 30,
            ..good()
        };
        assert_eq!(
            breach(judge(&errors, None, &t)),
            ("maxErrorRate", 0.3, 0.05)
        );
        let slow = Window {
            p95_latency_ms: Some(2_500.0),
            ..good()
        };
        assert_eq!(
            breach(judge(&slow, None, &t)),
            ("maxP95LatencyMs", 2_500.0, 2_000.0)
        );
        let late = Window {
            ttft_p95_ms: Some(900.0),
            ..good()
        };
        assert_eq!(
            breach(judge(&late, None, &t)),
            ("maxTtftP95Ms", 900.0, 500.0)
        );
        let leaky = Window {
            leak_answers: 3,
            answers: 100,
            ..good()
        };
        assert_eq!(
            breach(judge(&leaky, None, &t)),
            ("maxOutputLeakRate", 0.03, 0.0)
        );
    }

    #[test]
    fn the_first_breach_in_a_fixed_order_is_reported() {
        let both = Window {
            failed: 50,
            p95_latency_ms: Some(9_000.0),
            ..good()
        };
        assert_eq!(breach(judge(&both, None, &thresholds())).0, "maxErrorRate");
    }

    #[test]
    fn too_few_requests_or_missing_figures_are_inconclusive_not_a_pass() {
        let t = thresholds();
        let few = Window {
            attempts: 5,
            failed: 5,
            ..good()
        };
        assert_eq!(
            judge(&few, None, &t),
            Verdict::Inconclusive(Inconclusive::TooFewRequests {
                seen: 5,
                needed: 20
            })
        );
        let none = Window::default();
        let zero_min = Thresholds {
            min_requests: 0,
            ..t
        };
        assert!(
            matches!(judge(&none, None, &zero_min), Verdict::Inconclusive(_)),
            "a window without a single attempt is never a pass"
        );
        let no_latency = Window {
            p95_latency_ms: None,
            ..good()
        };
        assert_eq!(
            judge(&no_latency, None, &t),
            Verdict::Inconclusive(Inconclusive::Missing("p95 latency"))
        );
    }

    #[test]
    fn relative_limits_compare_with_the_stable_version_in_the_same_window() {
        let t = Thresholds {
            max_error_rate: 1.0,
            max_p95_latency_ms: 1e9,
            relative: Some(Relative {
                max_error_rate_increase: 0.02,
                max_p95_latency_ratio: 1.5,
            }),
            ..thresholds()
        };
        let stable = Window {
            failed: 2,
            p95_latency_ms: Some(400.0),
            ..good()
        };
        let worse = Window {
            failed: 10,
            ..good()
        };
        let (name, measured, _) = breach(judge(&worse, Some(&stable), &t));
        assert_eq!(name, "relative.maxErrorRateIncrease");
        assert!((measured - 0.08).abs() < 1e-9);
        let slower = Window {
            p95_latency_ms: Some(800.0),
            ..good()
        };
        let stable_ok = Window {
            failed: 1,
            ..stable
        };
        assert_eq!(
            breach(judge(&slower, Some(&stable_ok), &t)),
            ("relative.maxP95LatencyRatio", 2.0, 1.5)
        );
        assert_eq!(
            judge(&good(), None, &t),
            Verdict::Pass,
            "no stable figures: not judged"
        );
    }
}
