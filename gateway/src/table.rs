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

/// The identity of an object: `namespace/name` for objects from Kubernetes, the bare name for a
/// routing file (which is one namespace of its own).
pub fn qualified(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    }
}

/// A hospital or organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Identity ([`qualified`]: `namespace/name` from Kubernetes): what limits, the cache scope, audit
    /// records and metrics are keyed by, so equal names in two namespaces never share any of them.
    pub id: String,
    /// Namespace of the Tenant object; it reaches only endpoints of this namespace.
    pub namespace: Option<String>,
    /// Endpoint names (in its namespace) it may use; `*` allows every endpoint of its namespace.
    pub endpoints: Vec<String>,
    /// Its limits.
    pub limits: Limits,
    /// Its prompt-cache scope for the backends ([`crate::proxy::cache_scope`] of the identity),
    /// computed once here rather than on every request.
    pub cache_scope: http::HeaderValue,
    /// Data-residency zone (e.g. `jp`): its requests go only to peer regions of the same zone.
    pub residency: Option<String>,
}

impl Tenant {
    /// Tenant `name` of `namespace`, with its identity and cache scope derived from both.
    pub fn new(
        namespace: Option<String>,
        name: &str,
        endpoints: Vec<String>,
        limits: Limits,
    ) -> Tenant {
        let id = qualified(namespace.as_deref(), name);
        let cache_scope = crate::proxy::cache_scope(&id);
        Tenant {
            id,
            namespace,
            endpoints,
            limits,
            cache_scope,
            residency: None,
        }
    }

    /// The same tenant with data-residency zone `residency`.
    pub fn with_residency(mut self, residency: Option<String>) -> Tenant {
        self.residency = residency;
        self
    }

    /// Whether the tenant may use `endpoint`: it is in the tenant's namespace and listed (or `*`).
    pub fn allows(&self, endpoint: &Endpoint) -> bool {
        endpoint.namespace == self.namespace
            && self
                .endpoints
                .iter()
                .any(|e| e == "*" || *e == endpoint.name)
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
    /// Identity ([`qualified`]), the key in [`Snapshot::endpoints`], in audit records and metrics.
    pub id: String,
    /// Namespace of the InferenceEndpoint (`None` for a routing file).
    pub namespace: Option<String>,
    /// Name callers put in `model`, resolved in their tenant's namespace.
    pub name: String,
    /// Guardrail policy.
    pub policy: Policy,
    /// Versions with weights and backends.
    pub versions: Vec<Version>,
    /// `Authorization` value sent to this endpoint's model servers (`Bearer <backend key>`, marked
    /// sensitive so it never prints), when they need one.
    pub backend_auth: Option<http::HeaderValue>,
}

/// The `Authorization` value for a backend key (`None` when the key is empty or not header-safe).
pub fn backend_auth(key: &str) -> Option<http::HeaderValue> {
    let key = key.trim();
    if key.is_empty() {
        return None;
    }
    let mut v = http::HeaderValue::from_str(&format!("Bearer {key}")).ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// Everything the request path needs, immutable once built.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Tenants by identity ([`Tenant::id`]).
    pub tenants: BTreeMap<String, Arc<Tenant>>,
    /// Hashes of valid keys.
    pub keys: KeyRing,
    /// Endpoints by identity ([`Endpoint::id`]).
    pub endpoints: BTreeMap<String, Arc<Endpoint>>,
    /// Gateways of other regions, in order of preference.
    pub peers: Vec<Peer>,
    /// Endpoints served on their last known good backends because the control plane's view has none
    /// ready while the gateway's own checks pass ([`crate::last_good`]); sorted identities.
    pub held: Vec<String>,
}

/// The gateway of another region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Base URL without a trailing `/` (`https://`, or `http://` on a loopback host only:
    /// [`anshin_crds::global_endpoint::region_endpoint_allowed`]).
    pub url: String,
    /// Its data-residency zone, when it has one.
    pub residency: Option<String>,
}

impl Peer {
    /// A checked peer: the URL follows the GlobalEndpoint rule and the zone is well formed.
    pub fn new(url: &str, residency: Option<String>) -> Result<Peer, String> {
        use anshin_crds::global_endpoint::{region_endpoint_allowed, residency_valid};
        if !region_endpoint_allowed(url) || url.parse::<http::Uri>().is_err() {
            return Err(format!(
                "peer `{url}` must be an https:// URL (http:// only on a loopback host such as 127.0.0.1)"
            ));
        }
        if let Some(r) = residency.as_deref().filter(|r| !residency_valid(r)) {
            return Err(format!(
                "peer `{url}`: residency `{r}` must be a zone such as `jp` or `jp-east`"
            ));
        }
        Ok(Peer {
            url: url.trim_end_matches('/').to_owned(),
            residency,
        })
    }

    /// Whether a request of `tenant` may go to this peer: the tenant has no residency, or the same
    /// one as the peer.
    pub fn may_serve(&self, tenant: &Tenant) -> bool {
        tenant.residency.is_none() || tenant.residency == self.residency
    }
}

impl Snapshot {
    /// The endpoint a request of `tenant` naming `model` means: `model` in the tenant's namespace.
    pub fn endpoint_for(&self, tenant: &Tenant, model: &str) -> Option<&Arc<Endpoint>> {
        self.endpoints
            .get(&qualified(tenant.namespace.as_deref(), model))
    }
}

/// The current snapshot, shared by the request path and written by one source.
#[derive(Debug, Clone, Default)]
pub struct SharedTable {
    inner: Arc<RwLock<Arc<Snapshot>>>,
    loaded: Arc<std::sync::atomic::AtomicBool>,
    /// Seconds the source's control plane has not answered (0: it answers), for `/readyz`.
    unreachable_secs: Arc<std::sync::atomic::AtomicU64>,
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

    /// Records how long the source's control plane has not answered (`None`: it answers).
    pub fn set_source_unreachable(&self, for_: Option<std::time::Duration>) {
        let secs = for_.map_or(0, |d| d.as_secs().max(1));
        self.unreachable_secs
            .store(secs, std::sync::atomic::Ordering::Relaxed);
    }

    /// Seconds the source's control plane has not answered, if it does not answer now.
    pub fn source_unreachable_secs(&self) -> Option<u64> {
        let secs = self
            .unreachable_secs
            .load(std::sync::atomic::Ordering::Relaxed);
        (secs > 0).then_some(secs)
    }

    /// Whether a source has delivered at least one snapshot.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(std::sync::atomic::Ordering::Acquire)
    }
}
