//! The server's Prometheus metrics (`anshin_inference_*`), registered once and shared by the scheduler and
//! the HTTP layer. Label values come from fixed sets only.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::server::faults::FaultKind;

/// Request outcomes used as the `status` label of `anshin_inference_requests_total`.
pub const STATUSES: [&str; 8] = [
    "ok",
    "cancelled",
    "queue_full",
    "draining",
    "invalid",
    "too_long",
    "error",
    "not_ready",
];

/// All metrics of one server.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests waiting for a batch slot.
    pub queue_depth: IntGauge,
    /// Sequences in the running batch.
    pub running: IntGauge,
    /// Requests accepted and not yet finished.
    pub in_flight: IntGauge,
    /// Prompt tokens processed.
    pub prompt_tokens: IntCounter,
    /// Prompt tokens whose keys and values were copied from a running sequence or a finished request's
    /// cache with the same prefix instead of computed (a part of `prompt_tokens`).
    pub prefix_shared_tokens: IntCounter,
    /// Tokens held by finished requests' caches kept for prefix sharing (inside the KV budget, reclaimed
    /// when a request needs the room; not part of `kv_utilization`).
    pub prefix_cache_tokens: IntGauge,
    /// Tokens generated.
    pub generated_tokens: IntCounter,
    /// Time from acceptance to the first generated token.
    pub ttft: Histogram,
    /// Time between consecutive generated tokens of one request.
    pub tpot: Histogram,
    /// Fraction of the KV cache budget in use.
    pub kv_utilization: prometheus::Gauge,
    /// Requests by outcome.
    pub requests: IntCounterVec,
    /// 1 when the server is ready for traffic.
    pub ready: IntGauge,
    /// 1 when test-only fault injection is enabled (`--enable-fault-injection`); alert on it.
    pub fault_injection_enabled: IntGauge,
    /// Requests faulted on purpose, by `kind` (error, delay, phone).
    pub faults_injected: IntCounterVec,
}

fn hist(name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .expect("valid histogram definition")
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let g = |n: &str, h: &str| IntGauge::new(n, h).expect("valid gauge definition");
        let c = |n: &str, h: &str| IntCounter::new(n, h).expect("valid counter definition");
        let m = Self {
            registry: Registry::new(),
            queue_depth: g(
                "anshin_inference_queue_depth",
                "Requests waiting for a batch slot",
            ),
            running: g(
                "anshin_inference_running_sequences",
                "Sequences in the running batch",
            ),
            in_flight: g(
                "anshin_inference_in_flight_requests",
                "Requests accepted and not finished",
            ),
            prompt_tokens: c(
                "anshin_inference_prompt_tokens_total",
                "Prompt tokens processed",
            ),
            prefix_shared_tokens: c(
                "anshin_inference_prefix_shared_tokens_total",
                "Prompt tokens whose keys and values were copied from a running sequence or a finished request's cache",
            ),
            prefix_cache_tokens: g(
                "anshin_inference_prefix_cache_tokens",
                "Tokens held by finished requests' caches kept for prefix sharing (reclaimable)",
            ),
            generated_tokens: c(
                "anshin_inference_generated_tokens_total",
                "Tokens generated",
            ),
            ttft: hist(
                "anshin_inference_time_to_first_token_seconds",
                "Time from acceptance to the first token",
                vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ],
            ),
            tpot: hist(
                "anshin_inference_time_per_output_token_seconds",
                "Time between consecutive output tokens",
                vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0],
            ),
            kv_utilization: prometheus::Gauge::new(
                "anshin_inference_kv_cache_utilization_ratio",
                "Fraction of the KV cache budget in use",
            )
            .expect("valid gauge definition"),
            requests: IntCounterVec::new(
                Opts::new("anshin_inference_requests_total", "Requests by outcome"),
                &["status"],
            )
            .expect("valid counter definition"),
            ready: g(
                "anshin_inference_ready",
                "1 when the server is ready for traffic",
            ),
            fault_injection_enabled: g(
                "anshin_inference_fault_injection_enabled",
                "1 when test-only fault injection is enabled",
            ),
            faults_injected: IntCounterVec::new(
                Opts::new(
                    "anshin_inference_faults_injected_total",
                    "Requests faulted on purpose by test-only fault injection, by kind",
                ),
                &["kind"],
            )
            .expect("valid counter definition"),
        };
        m.register_all();
        for s in STATUSES {
            m.requests.with_label_values(&[s]);
        }
        for kind in FaultKind::ALL {
            m.faults_injected.with_label_values(&[kind.label()]);
        }
        m
    }

    fn register_all(&self) {
        let all: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(self.queue_depth.clone()),
            Box::new(self.running.clone()),
            Box::new(self.in_flight.clone()),
            Box::new(self.prompt_tokens.clone()),
            Box::new(self.prefix_shared_tokens.clone()),
            Box::new(self.prefix_cache_tokens.clone()),
            Box::new(self.generated_tokens.clone()),
            Box::new(self.ttft.clone()),
            Box::new(self.tpot.clone()),
            Box::new(self.kv_utilization.clone()),
            Box::new(self.requests.clone()),
            Box::new(self.ready.clone()),
            Box::new(self.fault_injection_enabled.clone()),
            Box::new(self.faults_injected.clone()),
        ];
        for c in all {
            self.registry.register(c).expect("metric names are unique");
        }
    }

    /// Counts one finished request under `status` (one of [`STATUSES`]).
    pub fn request_done(&self, status: &'static str) {
        self.requests.with_label_values(&[status]).inc();
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
