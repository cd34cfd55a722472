//! Logs and traces. Logs: structured JSON to stderr, filtered by `RUST_LOG` (default `info`). Traces:
//! with `--otlp-endpoint` (or `OTEL_EXPORTER_OTLP_ENDPOINT`) every request becomes a `request` span —
//! with a `backend` child span per attempt — exported over OTLP/HTTP (protobuf) to `<endpoint>/v1/traces`
//! by a batch processor on its own thread; without it, no exporter exists and nothing is sent.
//!
//! Spans and logs carry ids, tenant, endpoint, version, status, token counts and timings — never prompt
//! or answer text, never keys. The W3C `traceparent` of a caller is continued, and passed on to
//! backends and peer gateways, so one trace follows a request across hops.

use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing::Level;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterExt, Targets, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// Set once traces are exported, so that the request path skips propagation work when they are not.
static TRACES_ON: AtomicBool = AtomicBool::new(false);

/// Why traces cannot be exported as configured.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP endpoint is not a plain `http://host:port` URL.
    #[error(
        "--otlp-endpoint `{0}` must be an http:// URL of an OTLP/HTTP collector (e.g. \
         http://127.0.0.1:4318); https is not built in — send to a collector in the pod or on the node, \
         which forwards over TLS"
    )]
    Endpoint(String),
    /// The exporter could not be built.
    #[error("building the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// Keeps the trace pipeline alive; [`Telemetry::shutdown`] flushes the spans not yet sent.
#[must_use = "dropping it without shutdown() may lose the last spans"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still queued and stops the exporter (no-op without OTLP).
    pub fn shutdown(self) {
        if let Some(p) = self.provider
            && let Err(e) = p.shutdown()
        {
            tracing::warn!(error = %e, "flushing traces at shutdown");
        }
    }
}

/// Installs the global subscriber: JSON logs, plus the OTLP trace layer when `otlp_endpoint` is given
/// (the base URL of an OTLP/HTTP collector; `/v1/traces` is appended as the OTLP spec says). The service
/// name is `OTEL_SERVICE_NAME` or `anshin-gateway`. A second call keeps the first subscriber.
pub fn init(otlp_endpoint: Option<&str>) -> Result<Telemetry, TelemetryError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let provider = otlp_endpoint.map(tracer_provider).transpose()?;
    let tracer = provider.as_ref().map(|p| p.tracer("anshin-gateway"));
    let installed = subscriber(filter, std::io::stderr, tracer)
        .try_init()
        .is_ok();
    if installed && provider.is_some() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        TRACES_ON.store(true, Ordering::Relaxed);
    }
    Ok(Telemetry { provider })
}

/// The subscriber: [`log_layer`], and a trace layer only when there is a tracer. (A `None` layer in
/// its place would not be neutral: `tracing-subscriber` counts it as wanting every span, so each request
/// would create, enter and close spans that nothing reads.)
fn subscriber<W>(
    filter: EnvFilter,
    writer: W,
    tracer: Option<SdkTracer>,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let logs = tracing_subscriber::registry().with(log_layer(filter, writer));
    match tracer {
        // Traces have their own filter: the gateway's own spans at info, whatever RUST_LOG says.
        Some(tracer) => Box::new(
            logs.with(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_threads(false)
                    .with_filter(Targets::new().with_target("anshin_gateway", Level::INFO)),
            ),
        ),
        None => Box::new(logs),
    }
}

/// JSON log lines to `writer`, for the events `filter` lets through. Logs are events only. Spans are
/// for traces: if the log layer saw them it would format every span's fields as JSON, and parse and
/// re-serialise that JSON on each field recorded later (eight per request), on the request path, for
/// log lines that already carry what they need. With no trace exporter, no layer wants the spans and
/// they cost nothing.
fn log_layer<S, W>(filter: EnvFilter, writer: W) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(writer)
        .with_filter(filter_fn(|meta| meta.is_event()).and(filter))
}

fn tracer_provider(base: &str) -> Result<SdkTracerProvider, TelemetryError> {
    let base = base.trim_end_matches('/');
    let valid = base
        .strip_prefix("http://")
        .is_some_and(|rest| !rest.is_empty() && base.parse::<http::Uri>().is_ok());
    if !valid {
        return Err(TelemetryError::Endpoint(base.to_string()));
    }
    // In a workspace build reqwest has rustls without a built-in crypto provider (feature unification
    // with other crates), and building its client panics unless a process-wide provider is installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{base}/v1/traces"))
        .build()?;
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("anshin-gateway");
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// Makes `span` continue the caller's trace when the request carries a W3C `traceparent` (no-op when
/// traces are off or the header is absent or malformed).
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    if !TRACES_ON.load(Ordering::Relaxed) || !headers.contains_key("traceparent") {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
    let _ = span.set_parent(parent);
}

/// Adds the current span's `traceparent` to an outgoing request's headers (no-op when traces are off).
pub fn pass_trace_on(headers: &mut HeaderMap) {
    if !TRACES_ON.load(Ordering::Relaxed) {
        return;
    }
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeadersMut(headers))
    });
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeadersMut<'a>(&'a mut HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log sink the test can read back.
    #[derive(Clone, Default)]
    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("sink").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn logs_are_events_only_and_leave_request_spans_disabled() {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = subscriber(EnvFilter::new("info"), move || writer.clone(), None);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", tenant = tracing::field::Empty);
            // Nothing formats or stores this span's fields: no layer wants it.
            assert!(span.is_disabled());
            span.record("tenant", "clinic-a");
            tracing::info!(parent: &span, request_id = "r1", "retrying on another backend");
            tracing::debug!(parent: &span, request_id = "r1", "request finished");
        });
        let text = String::from_utf8(sink.0.lock().expect("sink").clone()).expect("utf-8");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON log line"))
            .collect();
        assert_eq!(lines.len(), 1, "{text}");
        assert_eq!(lines[0]["fields"]["request_id"], "r1");
        assert!(
            lines[0].get("span").is_none() && lines[0].get("spans").is_none(),
            "{text}"
        );
    }

    #[test]
    fn request_spans_are_recorded_when_traces_are_exported() {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = subscriber(
            EnvFilter::new("info"),
            std::io::sink,
            Some(provider.tracer("test")),
        );
        tracing::subscriber::with_default(subscriber, || {
            assert!(!tracing::info_span!("request").is_disabled());
        });
    }

    #[test]
    fn only_plain_http_endpoints_are_accepted() {
        for bad in [
            "https://collector:4318",
            "collector:4318",
            "http://",
            "ftp://x",
        ] {
            let err = tracer_provider(bad).err().map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|m| m.contains("http:// URL")),
                "{bad}: {err:?}"
            );
        }
    }
}
