//! Signals: what the operator reads from outside the API server — the gateways' per-version figures
//! and the model servers' engine metrics (Prometheus text pages), and later region probes — for
//! canary analysis, autoscaling and failover.
//!
//! No HTTP call happens inside a reconcile. Each kind of reading is a trait with a real implementation
//! and a fake for pure tests ([`source::MetricsSource`]: [`source::HttpSource`],
//! [`source::FakeSource`]), run by a task that owns its targets and readings ([`sampler::Sampler`]).
//! The task scrapes on its own clock and publishes each round; reconcilers only read the latest
//! values ([`sampler::Latest::snapshot`]) and pure decisions take them as input, while a controller
//! may await [`sampler::Latest::changed`] to be woken. Where a Prometheus already scrapes the gateways,
//! [`promql::Promql`] asks it instead; [`targets::gateway_targets`] says which gateway pages to sample.
//! Nothing is wired into a controller yet.

pub mod prometheus;
pub mod promql;
pub mod sampler;
pub mod source;
pub mod targets;
