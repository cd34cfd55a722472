//! Anshin gateway: the one stable, OpenAI-compatible endpoint that hospitals call.
//!
//! Data flow for one request ([`handler`]): authenticate the bearer key against the hashes of the
//! current [`table::Snapshot`] ([`keys`]) → check the tenant may use the endpoint named by `model` →
//! per-tenant limits ([`limits`]) → input guardrails ([`guard`]: PII becomes typed placeholders) →
//! pick a version by weight and the least-loaded healthy backend ([`routing`]), retrying before the
//! first byte ([`proxy`]), forwarding to a peer region when nothing local is left ([`peer`]: the
//! guarded body, a gateway token, residency respected) → output guardrails
//! on the whole answer or while streaming ([`sse`]) → response headers, metrics ([`metrics`]) and one
//! hash-chained audit record ([`audit`]).
//!
//! The routing table, tenants and key hashes form one immutable [`table::Snapshot`], replaced as a
//! whole by its source: a YAML file watched for changes ([`file_source`]) or the Kubernetes API
//! ([`kube_source`]). The request path is the same for both. The Kubernetes source keeps serving on
//! the last known good table when the control plane is down or wrongly reports every backend
//! unready ([`last_good`]).

pub mod audit;
pub mod cli;
pub mod config;
pub mod error;
pub mod file_source;
pub mod guard;
pub mod handler;
pub mod health;
pub mod huge_pages;
pub mod keys;
pub mod kube_source;
pub mod kube_table;
pub mod last_good;
pub mod limits;
pub mod linger;
pub mod listener;
pub mod metrics;
pub mod peer;
pub mod proxy;
mod respond;
pub mod routing;
pub mod server;
pub mod sse;
pub mod table;
pub mod telemetry;

pub use error::{ApiError, UNAVAILABLE_MESSAGE};
pub use server::{Gateway, GatewayOptions};
pub use table::Snapshot;
