//! One version's analysis [`Window`] from two scrapes of the gateways' metrics (pure), as parsed by
//! [`crate::signals::prometheus`].
//!
//! For every gateway pod the caller hands the samples of a scrape at the window's start and at its
//! end ([`Deltas::add`]); counters become increases (a counter that went down — a restarted gateway —
//! counts from zero, as Prometheus' `increase` does), histogram buckets are summed across gateways
//! before the quantile is taken, so several gateways give one p95 ([`histogram_quantile`], the same
//! interpolation as PromQL's).

use std::collections::BTreeMap;

use super::analysis::Window;
use crate::signals::prometheus::Sample;
use crate::signals::sampler::Readings;

pub(super) const ATTEMPTS: &str = "anshin_gateway_backend_attempts_total";
pub(super) const REQUESTS: &str = "anshin_gateway_requests_total";
pub(super) const LEAKS: &str = "anshin_gateway_leak_answers_total";
pub(super) const LATENCY: &str = "anshin_gateway_request_duration_seconds_bucket";
pub(super) const TTFT: &str = "anshin_gateway_time_to_first_byte_seconds_bucket";
/// Attempt outcomes that are not the version's failure: answered, or busy (429, retried elsewhere).
const NOT_FAILED: [&str; 2] = ["ok", "busy"];

/// Increases of one endpoint version's counters, summed over gateways.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Deltas {
    attempts: f64,
    failed: f64,
    answers: f64,
    leak_answers: f64,
    latency_buckets: BTreeMap<u64, f64>,
    ttft_buckets: BTreeMap<u64, f64>,
}

fn is_of(s: &Sample, endpoint: &str, version: &str) -> bool {
    s.labels.get("endpoint").map(String::as_str) == Some(endpoint)
        && s.labels.get("version").map(String::as_str) == Some(version)
}

/// Increase of a counter from `before` to `after` (a reset counts from zero).
fn increase(before: Option<f64>, after: f64) -> f64 {
    match before {
        Some(b) if after >= b => after - b,
        _ => after,
    }
}

/// `le` as an ordering key (bits of a non-negative float keep their order; `+Inf` sorts last).
fn le_key(s: &Sample) -> Option<u64> {
    let le = s.labels.get("le")?;
    let v: f64 = if le == "+Inf" {
        f64::INFINITY
    } else {
        le.parse().ok()?
    };
    (v >= 0.0).then(|| v.to_bits())
}

impl Deltas {
    /// Adds one gateway's increases between its scrapes `before` and `after` for `endpoint`'s
    /// `version`.
    pub fn add(&mut self, before: &[Sample], after: &[Sample], endpoint: &str, version: &str) {
        let same = |a: &Sample| {
            before
                .iter()
                .find(|b| b.name == a.name && b.labels == a.labels)
                .map(|b| b.value)
        };
        for a in after.iter().filter(|a| is_of(a, endpoint, version)) {
            let d = increase(same(a), a.value);
            let outcome = a.labels.get("outcome").map(String::as_str);
            let class = a.labels.get("status_class").map(String::as_str);
            match a.name.as_str() {
                ATTEMPTS => {
                    self.attempts += d;
                    if !outcome.is_some_and(|o| NOT_FAILED.contains(&o)) {
                        self.failed += d;
                    }
                }
                REQUESTS if class == Some("2xx") => self.answers += d,
                LEAKS => self.leak_answers += d,
                LATENCY => add_bucket(&mut self.latency_buckets, a, d),
                TTFT => add_bucket(&mut self.ttft_buckets, a, d),
                _ => {}
            }
        }
    }

    /// The window these increases make.
    pub fn window(&self) -> Window {
        let ms = |b: &BTreeMap<u64, f64>| histogram_quantile(0.95, b).map(|s| s * 1000.0);
        Window {
            attempts: self.attempts.round() as u64,
            failed: self.failed.round() as u64,
            p95_latency_ms: ms(&self.latency_buckets),
            ttft_p95_ms: ms(&self.ttft_buckets),
            answers: self.answers.round() as u64,
            leak_answers: self.leak_answers.round() as u64,
        }
    }
}

/// Why no window could be made from two snapshots.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Incomplete {
    /// A gateway that answers at the end had no reading at the start (it is new, or the start
    /// snapshot failed): its share of the traffic cannot be counted.
    #[error("gateway {0} has no reading at the window's start")]
    NoStart(String),
    /// A gateway's scrape failed at the start or the end.
    #[error("gateway {0} could not be scraped")]
    Failed(String),
    /// No gateway at all.
    #[error("no gateway metrics")]
    NoGateways,
}

/// The window of `endpoint`'s `version` between two snapshots of the sampler (every gateway must
/// have been read both times, or the window is incomplete and must not be judged: a gateway left
/// out would hide its share of the errors).
pub fn from_readings(
    start: &Readings,
    end: &Readings,
    endpoint: &str,
    version: &str,
) -> Result<Window, Incomplete> {
    if end.is_empty() {
        return Err(Incomplete::NoGateways);
    }
    let mut deltas = Deltas::default();
    for (url, last) in end {
        let first = start
            .get(url)
            .ok_or_else(|| Incomplete::NoStart(url.clone()))?;
        let (Ok(before), Ok(after)) = (&first.samples, &last.samples) else {
            return Err(Incomplete::Failed(url.clone()));
        };
        deltas.add(before, after, endpoint, version);
    }
    Ok(deltas.window())
}

fn add_bucket(buckets: &mut BTreeMap<u64, f64>, s: &Sample, d: f64) {
    if let Some(key) = le_key(s) {
        *buckets.entry(key).or_default() += d;
    }
}

/// The `q` quantile of cumulative histogram buckets (upper bound bits → count), interpolated
/// linearly inside the bucket as PromQL's `histogram_quantile` does; `None` without observations.
/// When it falls in the `+Inf` bucket, the highest finite bound is returned.
pub fn histogram_quantile(q: f64, buckets: &BTreeMap<u64, f64>) -> Option<f64> {
    let total = *buckets.values().last()?;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (&bits, &count) in buckets {
        let upper = f64::from_bits(bits);
        if count >= rank {
            if upper.is_infinite() {
                return Some(lower);
            }
            let inside = count - below;
            let share = if inside > 0.0 {
                (rank - below) / inside
            } else {
                1.0
            };
            return Some(lower + (upper - lower) * share);
        }
        (lower, below) = (upper, count);
    }
    Some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str, labels: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            value,
        }
    }

    fn ev(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut l = vec![("endpoint", "ns/chat"), ("version", "v2")];
        l.extend_from_slice(extra);
        l
    }

    fn scrape(ok: f64, errors: f64, fast: f64, slow: f64) -> Vec<Sample> {
        vec![
            s(ATTEMPTS, &ev(&[("outcome", "ok")]), ok),
            s(ATTEMPTS, &ev(&[("outcome", "server_error")]), errors),
            s(ATTEMPTS, &ev(&[("outcome", "busy")]), errors / 10.0),
            s(
                REQUESTS,
                &ev(&[("tenant", "ns/t"), ("status_class", "2xx")]),
                ok,
            ),
            s(LEAKS, &ev(&[]), 1.0),
            s(LATENCY, &ev(&[("le", "0.1")]), fast),
            s(LATENCY, &ev(&[("le", "1")]), fast + slow),
            s(LATENCY, &ev(&[("le", "+Inf")]), fast + slow),
            // Another version: never counted for v2.
            s(
                ATTEMPTS,
                &[
                    ("endpoint", "ns/chat"),
                    ("version", "v1"),
                    ("outcome", "server_error"),
                ],
                99.0,
            ),
        ]
    }

    #[test]
    fn counters_become_increases_over_the_window() {
        let mut d = Deltas::default();
        d.add(
            &scrape(10.0, 1.0, 10.0, 0.0),
            &scrape(80.0, 31.0, 70.0, 10.0),
            "ns/chat",
            "v2",
        );
        let w = d.window();
        assert_eq!(
            (w.attempts, w.failed),
            (103, 30),
            "busy counts as an attempt, not a failure"
        );
        assert_eq!((w.answers, w.leak_answers), (70, 0));
        assert!((w.error_rate() - 30.0 / 103.0).abs() < 1e-9);
    }

    #[test]
    fn the_p95_interpolates_inside_its_bucket_like_promql() {
        let mut d = Deltas::default();
        d.add(
            &scrape(0.0, 0.0, 0.0, 0.0),
            &scrape(100.0, 0.0, 90.0, 10.0),
            "ns/chat",
            "v2",
        );
        let p95 = d.window().p95_latency_ms.expect("p95");
        // rank 95 of 100: 5 of the 10 observations in (0.1, 1] → 0.1 + 0.9 × 0.5 = 0.55 s.
        assert!((p95 - 550.0).abs() < 1e-6, "{p95}");
        assert_eq!(
            Deltas::default().window().p95_latency_ms,
            None,
            "no observations: no p95"
        );
    }

    #[test]
    fn a_restarted_gateway_counts_from_zero_and_gateways_add_up() {
        let mut d = Deltas::default();
        // Gateway A restarted: its counters went down.
        d.add(
            &scrape(500.0, 50.0, 0.0, 0.0),
            &scrape(20.0, 0.0, 20.0, 0.0),
            "ns/chat",
            "v2",
        );
        d.add(
            &scrape(0.0, 0.0, 0.0, 0.0),
            &scrape(30.0, 10.0, 30.0, 0.0),
            "ns/chat",
            "v2",
        );
        let w = d.window();
        // A: 20 ok (from zero), 0 errors, 0 busy; B: 30 ok, 10 errors, 1 busy.
        assert_eq!((w.attempts, w.failed), (61, 10));
        assert!(w.p95_latency_ms.is_some_and(|p| p <= 100.0));
    }

    fn readings(pages: &[(&str, Option<Vec<Sample>>)]) -> Readings {
        use crate::signals::sampler::Reading;
        use crate::signals::source::ScrapeError;
        let at = tokio::time::Instant::now();
        pages
            .iter()
            .map(|(url, samples)| {
                let samples = samples.clone().ok_or(ScrapeError::Status(503));
                ((*url).to_owned(), Reading { samples, at })
            })
            .collect()
    }

    #[test]
    fn a_window_from_sampler_snapshots_needs_every_gateway_read_twice() {
        let start = readings(&[
            ("g1", Some(scrape(0.0, 0.0, 0.0, 0.0))),
            ("g2", Some(scrape(0.0, 0.0, 0.0, 0.0))),
        ]);
        let end = readings(&[
            ("g1", Some(scrape(10.0, 0.0, 10.0, 0.0))),
            ("g2", Some(scrape(20.0, 10.0, 20.0, 0.0))),
        ]);
        let w = from_readings(&start, &end, "ns/chat", "v2").expect("complete");
        assert_eq!((w.attempts, w.failed), (41, 10));
        let new_gateway = readings(&[("g3", Some(scrape(5.0, 5.0, 0.0, 0.0)))]);
        assert_eq!(
            from_readings(&start, &new_gateway, "ns/chat", "v2"),
            Err(Incomplete::NoStart("g3".into()))
        );
        let failed = readings(&[("g1", Some(scrape(1.0, 0.0, 1.0, 0.0))), ("g2", None)]);
        assert_eq!(
            from_readings(&start, &failed, "ns/chat", "v2"),
            Err(Incomplete::Failed("g2".into()))
        );
        assert_eq!(
            from_readings(&start, &Readings::new(), "ns/chat", "v2"),
            Err(Incomplete::NoGateways)
        );
    }

    #[test]
    fn a_quantile_in_the_infinite_bucket_is_the_highest_finite_bound() {
        let mut b = BTreeMap::new();
        b.insert(1.0f64.to_bits(), 1.0);
        b.insert(f64::INFINITY.to_bits(), 10.0);
        assert_eq!(histogram_quantile(0.95, &b), Some(1.0));
    }
}
