//! The gateway's view of the world at one instant: tenants, key hashes, endpoints with their routing
//! tables, and peer regions. A source builds a whole new [`Snapshot`] and swaps it in with
//! [`SharedTable::set`]; requests read the current one without locking for long.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::keys::KeyRing;

/// What a guardrail does with personal information it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Action {
    /// Replace it by placeholders (input) or redact it (output).
    #[default]
    Redact,
    /// Refuse the request (input) or stop the answer (output).
    Block,
    /// Do nothing.
    Off,
}

impl Action {
    /// Lower-case name for audit records and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Redact => "redact",
            Action::Block => "block",
            Action::Off => "off",
        }
    }
}

/// Guardrail policy of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Policy {
    /// What to do with PII in the request.
    #[serde(default)]
    pub input: Action,
    /// What to do with PII the model produced on its own.
    #[serde(default)]
    pub output: Action,
}

/// Per-tenant limits; 0 means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Limits {
    /// Requests admitted per minute.
    #[serde(default)]
    pub requests_per_minute: u64,
    /// Prompt plus completion tokens per minute.
    #[serde(default)]
    pub tokens_per_minute: u64,
    /// Requests in flight at once.
    #[serde(default)]
    pub max_concurrent: u64,
}

/// A hospital or organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Tenant name (audit, metrics).
    pub name: String,
    /// Endpoints it may use; `*` allows all.
    pub endpoints: Vec<String>,
    /// Its limits.
    pub limits: Limits,
    /// Its prompt-cache scope for the backends ([`crate::proxy::cache_scope`] of the name), computed
    /// once here rather than on every request.
    pub cache_scope: http::HeaderValue,
}

impl Tenant {
    /// A tenant with its cache scope derived from `name`.
    pub fn new(name: String, endpoints: Vec<String>, limits: Limits) -> Tenant {
        let cache_scope = crate::proxy::cache_scope(&name);
        Tenant {
            name,
            endpoints,
            limits,
            cache_scope,
        }
    }

    /// Whether the tenant may use `endpoint`.
    pub fn allows(&self, endpoint: &str) -> bool {
        self.endpoints.iter().any(|e| e == "*" || e == endpoint)
    }
}

/// One served model version of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Version name, sent as `x-anshin-model-version`.
    pub name: String,
    /// Artifact digest, sent as `x-anshin-model-digest`.
    pub digest: Option<String>,
    /// Relative share of new requests.
    pub weight: u32,
    /// Ready backends, `host:port`.
    pub backends: Vec<String>,
}

/// A stable endpoint: the `model` name callers send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Name callers put in `model`.
    pub name: String,
    /// Guardrail policy.
    pub policy: Policy,
    /// Versions with weights and backends.
    pub versions: Vec<Version>,
}

/// Everything the request path needs, immutable once built.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Tenants by name.
    pub tenants: BTreeMap<String, Arc<Tenant>>,
    /// Hashes of valid keys.
    pub keys: KeyRing,
    /// Endpoints by name.
    pub endpoints: BTreeMap<String, Arc<Endpoint>>,
    /// Gateways of other regions, in order of preference (`http://host:port`).
    pub peers: Vec<String>,
}

/// The current snapshot, shared by the request path and written by one source.
#[derive(Debug, Clone, Default)]
pub struct SharedTable {
    inner: Arc<RwLock<Arc<Snapshot>>>,
    loaded: Arc<std::sync::atomic::AtomicBool>,
}

impl SharedTable {
    /// A table holding an empty snapshot that is not yet loaded (`/readyz` answers 503).
    pub fn new() -> SharedTable {
        SharedTable::default()
    }

    /// The current snapshot.
    pub fn get(&self) -> Arc<Snapshot> {
        match self.inner.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces the snapshot and marks the table loaded.
    pub fn set(&self, snap: Snapshot) {
        let snap = Arc::new(snap);
        match self.inner.write() {
            Ok(mut g) => *g = snap,
            Err(p) => *p.into_inner() = snap,
        }
        self.loaded
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether a source has delivered at least one snapshot.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(std::sync::atomic::Ordering::Acquire)
    }
}
