//! Anshin's Kubernetes operator.
//!
//! Each controller (`controllers/`) reads its object and what it refers to, calls a pure function —
//! [`verify`] and [`ownership`] for ModelVersions, [`rollout::decide`] and [`workload`] for
//! InferenceEndpoints, [`keys`] for Tenants — then applies the result with server-side apply under one field manager
//! ([`names::FIELD_MANAGER`]) and writes status only when it changed. [`runtime`] wires start-up
//! (CRDs established, optional APIs detected), [`leader`] election and the HTTP endpoints; [`policy`]
//! holds what the admin allows (host paths for `file://` artifacts, a pinned verifier image).
//! [`not_acted_on`] names the fields (and kinds) the API accepts but no controller acts on yet; every
//! controller reports them as the condition `NotActedOn`.

pub mod artifact;
pub mod backend_access;
pub mod canary;
pub mod context;
pub mod controllers;
pub mod error;
pub mod keys;
pub mod leader;
pub mod metrics;
pub mod names;
pub mod not_acted_on;
pub mod ownership;
pub mod policy;
pub mod rollout;
pub mod runtime;
pub mod startup;
pub mod tls;
pub mod verify;
pub mod webhook;
pub mod workload;
