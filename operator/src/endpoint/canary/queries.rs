//! The same window from a Prometheus that scrapes the gateways: the PromQL expressions
//! ([`WindowQueries`], pure) and the window their values make ([`window_from_values`]). Run with
//! [`crate::signals::promql::Promql::scalar`]; `tests/promql_window.rs` checks against a real
//! Prometheus that the judgement equals the one from scrapes ([`super::window::Deltas`]).

use super::analysis::Window;
use super::window::{ATTEMPTS, LATENCY, LEAKS, REQUESTS, TTFT};

/// The PromQL expressions that give one version's window over the last `seconds` when a Prometheus
/// scrapes the gateways (`increase` over the window, summed across gateways; p95 from the summed
/// buckets, in seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowQueries {
    /// Attempts on the version.
    pub attempts: String,
    /// Failed attempts (every outcome but `ok` and `busy`).
    pub failed: String,
    /// 2xx answers.
    pub answers: String,
    /// Answers with PII the model produced.
    pub leak_answers: String,
    /// p95 latency, seconds.
    pub p95_latency: String,
    /// p95 time to first byte, seconds.
    pub ttft_p95: String,
}

impl WindowQueries {
    /// The queries for `endpoint`'s `version` over `seconds`.
    pub fn new(endpoint: &str, version: &str, seconds: u32) -> WindowQueries {
        let esc = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
        let sel = format!(
            "endpoint=\"{}\",version=\"{}\"",
            esc(endpoint),
            esc(version)
        );
        let inc = |metric: &str, extra: &str| {
            format!("sum(increase({metric}{{{sel}{extra}}}[{seconds}s]))")
        };
        let p95 = |metric: &str| {
            format!(
                "histogram_quantile(0.95, sum by (le) (increase({metric}{{{sel}}}[{seconds}s])))"
            )
        };
        WindowQueries {
            attempts: inc(ATTEMPTS, ""),
            failed: inc(ATTEMPTS, ",outcome!~\"ok|busy\""),
            answers: inc(REQUESTS, ",status_class=\"2xx\""),
            leak_answers: inc(LEAKS, ""),
            p95_latency: p95(LATENCY),
            ttft_p95: p95(TTFT),
        }
    }
}

/// A window from the values of [`WindowQueries`] (absent series count as zero, a NaN quantile — no
/// observations — as missing). Prometheus' `increase` extrapolates, so counts are rounded.
pub fn window_from_values(
    attempts: Option<f64>,
    failed: Option<f64>,
    answers: Option<f64>,
    leak_answers: Option<f64>,
    p95_latency_s: Option<f64>,
    ttft_p95_s: Option<f64>,
) -> Window {
    let count = |v: Option<f64>| v.filter(|v| v.is_finite()).unwrap_or(0.0).round().max(0.0) as u64;
    let ms = |v: Option<f64>| v.filter(|v| v.is_finite()).map(|s| s * 1000.0);
    Window {
        attempts: count(attempts),
        failed: count(failed),
        p95_latency_ms: ms(p95_latency_s),
        ttft_p95_ms: ms(ttft_p95_s),
        answers: count(answers),
        leak_answers: count(leak_answers),
    }
}
