//! Prometheus metrics of the gateway (`anshin_gateway_*`). Labels come from fixed sets or from the
//! routing table (tenant, endpoint, version names), never from request content or error text.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::audit::AuditMetrics;

/// Every metric of the gateway, registered in its own registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests by tenant, endpoint, version and status class (`2xx`, `4xx`, `5xx`).
    pub requests: IntCounterVec,
    /// Whole-request latency by endpoint and version.
    pub latency: HistogramVec,
    /// Time to the first streamed byte by endpoint and version.
    pub ttft: HistogramVec,
    /// Tokens by tenant and kind (`prompt`, `completion`).
    pub tokens: IntCounterVec,
    /// Rejections by tenant and limit.
    pub rate_limited: IntCounterVec,
    /// Input PII found, by entity type.
    pub detections: IntCounterVec,
    /// PII the model produced on its own, by entity type.
    pub leaks: IntCounterVec,
    /// Answers blocked by the output policy.
    pub blocked: IntCounter,
    /// Retries by reason (`connect`, `timeout`, `unavailable`, `busy`, `server_error`, `body`,
    /// `bad_address`).
    pub retries: IntCounterVec,
    /// Attempts on backends by endpoint, version and outcome (`ok` or a retry reason): the per-version
    /// error rate a canary is judged on, retried requests included.
    pub attempts: IntCounterVec,
    /// Answers in which the model produced PII on its own, by endpoint and version.
    pub leak_answers: IntCounterVec,
    /// Requests forwarded to a peer region.
    pub peer_forwards: IntCounter,
    /// Forwards to a peer region not made, by reason (`residency`, `no_peer_token`,
    /// `tenant_not_header_safe`).
    pub peer_refused: IntCounterVec,
    /// Healthy backends by endpoint and version (active and passive checks).
    pub backends_healthy: IntGaugeVec,
    /// Active health checks that failed.
    pub health_check_failures: IntCounter,
    /// Backends served by endpoint although the control plane reports none of the endpoint's ready
    /// (last known good, see [`crate::last_good`]); 0 normally.
    pub backends_held: IntGaugeVec,
    /// Seconds since each Kubernetes watch (`resource`) last delivered an event or a re-list.
    pub watch_age: IntGaugeVec,
    /// Seconds since the Kubernetes API server last answered the gateway's probe; 0 while it answers.
    pub kube_api_unreachable: IntGauge,
    /// Routing-table reloads by source and result (`ok`, `error`).
    pub reloads: IntCounterVec,
    /// Failed writes, syncs and rotations of the audit log.
    pub audit_errors: IntCounter,
    /// Audit records never written (queue or retry buffer full).
    pub audit_lost: IntCounter,
    /// Seq of the last durable audit record.
    pub audit_head_seq: IntGauge,
    /// 1 while audit records can be persisted, else 0.
    pub audit_writable: IntGauge,
    /// Requests refused with 503 because audit records could not be persisted.
    pub audit_refused: IntCounter,
    /// Guardrail time per request direction (`input`, `output`).
    pub guardrail_seconds: HistogramVec,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(c.clone()))
        .unwrap_or_else(|e| panic!("registering {name}: {e}"));
    c
}

fn counter1(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(c.clone()))
        .unwrap_or_else(|e| panic!("registering {name}: {e}"));
    c
}

fn gauge1(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(g.clone()))
        .unwrap_or_else(|e| panic!("registering {name}: {e}"));
    g
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(g.clone()))
        .unwrap_or_else(|e| panic!("registering {name}: {e}"));
    g
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let buckets = vec![
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        60.0,
    ];
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(h.clone()))
        .unwrap_or_else(|e| panic!("registering {name}: {e}"));
    h
}

impl Metrics {
    /// Creates and registers every metric. Names are constants, so failures are programming errors.
    pub fn new() -> Metrics {
        let r = Registry::new();
        let backends_healthy = IntGaugeVec::new(
            Opts::new(
                "anshin_gateway_backends_healthy",
                "Healthy backends by endpoint and version",
            ),
            &["endpoint", "version"],
        )
        .unwrap_or_else(|e| panic!("metric backends_healthy: {e}"));
        r.register(Box::new(backends_healthy.clone()))
            .unwrap_or_else(|e| panic!("registering: {e}"));
        Metrics {
            requests: counter(
                &r,
                "anshin_gateway_requests_total",
                "Requests by outcome",
                &["tenant", "endpoint", "version", "status_class"],
            ),
            latency: histogram(
                &r,
                "anshin_gateway_request_duration_seconds",
                "Whole request latency",
                &["endpoint", "version"],
            ),
            ttft: histogram(
                &r,
                "anshin_gateway_time_to_first_byte_seconds",
                "Time to the first streamed byte",
                &["endpoint", "version"],
            ),
            tokens: counter(
                &r,
                "anshin_gateway_tokens_total",
                "Tokens by tenant and kind",
                &["tenant", "kind"],
            ),
            rate_limited: counter(
                &r,
                "anshin_gateway_rate_limited_total",
                "Requests refused by a tenant limit",
                &["tenant", "limit"],
            ),
            detections: counter(
                &r,
                "anshin_gateway_guardrail_detections_total",
                "PII found in requests",
                &["type"],
            ),
            leaks: counter(
                &r,
                "anshin_gateway_guardrail_leaks_total",
                "PII the model produced on its own",
                &["type"],
            ),
            blocked: counter1(
                &r,
                "anshin_gateway_guardrail_blocked_answers_total",
                "Answers stopped by a Block policy",
            ),
            retries: counter(
                &r,
                "anshin_gateway_retries_total",
                "Retries before the first byte",
                &["reason"],
            ),
            attempts: counter(
                &r,
                "anshin_gateway_backend_attempts_total",
                "Attempts on backends by outcome (ok or the retry reason)",
                &["endpoint", "version", "outcome"],
            ),
            leak_answers: counter(
                &r,
                "anshin_gateway_leak_answers_total",
                "Answers in which the model produced PII on its own",
                &["endpoint", "version"],
            ),
            peer_forwards: counter1(
                &r,
                "anshin_gateway_peer_forwards_total",
                "Requests forwarded to another region",
            ),
            peer_refused: counter(
                &r,
                "anshin_gateway_peer_forward_refused_total",
                "Forwards to a peer region not made (residency mismatch, no peer token)",
                &["reason"],
            ),
            backends_healthy,
            backends_held: gauge(
                &r,
                "anshin_gateway_backends_held",
                "Backends served although the control plane reports none of the endpoint's ready",
                &["endpoint"],
            ),
            watch_age: gauge(
                &r,
                "anshin_gateway_kube_watch_age_seconds",
                "Seconds since the Kubernetes watch last delivered an event or a re-list",
                &["resource"],
            ),
            kube_api_unreachable: gauge1(
                &r,
                "anshin_gateway_kube_api_unreachable_seconds",
                "Seconds since the Kubernetes API server last answered; 0 while it answers",
            ),
            health_check_failures: counter1(
                &r,
                "anshin_gateway_health_check_failures_total",
                "Failed active checks",
            ),
            reloads: counter(
                &r,
                "anshin_gateway_routing_reloads_total",
                "Routing table reloads",
                &["source", "result"],
            ),
            audit_errors: counter1(
                &r,
                "anshin_gateway_audit_write_errors_total",
                "Failed writes, syncs and rotations of the audit log",
            ),
            audit_lost: counter1(
                &r,
                "anshin_gateway_audit_records_lost_total",
                "Audit records never written (queue or retry buffer full)",
            ),
            audit_head_seq: gauge1(
                &r,
                "anshin_gateway_audit_head_seq",
                "Seq of the last durable audit record",
            ),
            audit_writable: gauge1(
                &r,
                "anshin_gateway_audit_writable",
                "1 while audit records can be persisted, 0 while they cannot",
            ),
            audit_refused: counter1(
                &r,
                "anshin_gateway_audit_refused_requests_total",
                "Requests answered 503 because audit records could not be persisted",
            ),
            guardrail_seconds: histogram(
                &r,
                "anshin_gateway_guardrail_seconds",
                "Guardrail time per request",
                &["direction"],
            ),
            registry: r,
        }
    }

    /// The handles the audit log keeps up to date.
    pub fn audit(&self) -> AuditMetrics {
        AuditMetrics {
            write_errors: self.audit_errors.clone(),
            lost: self.audit_lost.clone(),
            head_seq: self.audit_head_seq.clone(),
            writable: self.audit_writable.clone(),
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// `2xx`, `4xx` or `5xx`.
pub fn status_class(status: u16) -> &'static str {
    match status {
        200..=299 => "2xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}
