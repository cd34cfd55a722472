//! Anshin's Kubernetes operator.
//!
//! One folder per kind, each a pipeline read top to bottom: observe (read the object and what it
//! refers to) → validate → decide (pure) → build (pure) → apply (server-side apply under one field
//! manager, [`names::FIELD_MANAGER`]) → status, written only when it changed, and Events derived from
//! the old and new status. [`model_version`] verifies artifacts ([`model_version::verify`],
//! [`model_version::ownership`]); [`endpoint`] serves them ([`endpoint::rollout::decide`],
//! [`endpoint::workload`]); [`tenant`] mints keys ([`tenant::keys`]); [`training_job`] and
//! [`global_endpoint`] only report that nothing acts on them yet ([`reconcile::not_acted_on`]).
//!
//! What every controller shares lives in [`reconcile`] (drive, error policy and backoff, context,
//! apply helpers, events); [`runtime`] is the process (HTTP endpoints, start-up, leader election);
//! [`webhook`] validates writes on every server version; [`policy`] holds what the admin allows (host
//! paths for `file://` artifacts, a pinned verifier image); [`artifact`] says where a version's files
//! are and [`pods`] holds the pod pieces every workload shares; [`signals`] reads metrics from
//! outside the API server in tasks of its own, for reconcilers to read the latest values.

pub mod artifact;
pub mod endpoint;
pub mod global_endpoint;
pub mod metrics;
pub mod model_version;
pub mod names;
pub mod pods;
pub mod policy;
pub mod reconcile;
pub mod runtime;
pub mod signals;
pub mod tenant;
pub mod training_job;
pub mod webhook;
