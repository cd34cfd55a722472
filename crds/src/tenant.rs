//! Tenant (`tn`): a hospital or organisation that calls Anshin endpoints with its own API keys.
//!
//! The operator mints each key in `spec.keys` into a Secret owned by the Tenant and records only its
//! fingerprint in status; the gateway holds only key hashes. Removing a key from spec revokes it.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::conditions::Condition;

/// A hospital or organisation with API keys, allowed endpoints and limits.
// printcolumn(...) entries repeat `type_ = "string"`, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "anshin.dev",
    version = "v1alpha1",
    kind = "Tenant",
    doc = "A hospital or organisation: API keys, allowed endpoints, limits and data residency.",
    namespaced,
    status = "TenantStatus",
    shortname = "tn",
    category = "anshin",
    cel,
    printcolumn(
        name = "Display-Name",
        type_ = "string",
        json_path = ".spec.displayName"
    ),
    printcolumn(
        name = "RPM",
        type_ = "integer",
        json_path = ".spec.limits.requestsPerMinute"
    ),
    printcolumn(name = "Keys", type_ = "integer", json_path = ".status.activeKeys"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("!has(self.keys) || self.keys.all(k, self.keys.exists_one(j, j.name == k.name))").message(
    "spec.keys has two keys with the same name: give each key a unique name"
))]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// Human-readable name, e.g. `東都大学病院`.
    #[schemars(length(min = 1, max = 256))]
    pub display_name: String,
    /// InferenceEndpoints this tenant may call, by name, in the Tenant's own namespace; `*` allows every
    /// endpoint of that namespace (never another namespace's).
    #[schemars(
        length(min = 1, max = 256),
        inner(pattern(r"^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)$"))
    )]
    pub endpoints: Vec<String>,
    /// Rate and concurrency limits for all of the tenant's keys together.
    #[serde(default)]
    pub limits: Limits,
    /// API keys to mint; deleting one revokes it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub keys: Vec<ApiKey>,
    /// Data-residency zone, e.g. `jp`: the gateway forwards the tenant's requests only to peer regions
    /// of that zone, never to others. A gateway has no zone of its own yet: the region that holds the
    /// tenant serves it locally, whatever that region's zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(crate::global_endpoint::RESIDENCY_PATTERN))]
    pub residency: Option<String>,
}

/// Per-tenant limits; exceeding one gives 429 with Retry-After.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Requests per minute.
    #[serde(default = "default_rpm")]
    #[schemars(range(min = 1))]
    pub requests_per_minute: i64,
    /// Prompt plus completion tokens per minute (completion counted as it streams).
    #[serde(default = "default_tpm")]
    #[schemars(range(min = 1))]
    pub tokens_per_minute: i64,
    /// Requests in flight at once.
    #[serde(default = "default_concurrent")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_concurrent: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            requests_per_minute: default_rpm(),
            tokens_per_minute: default_tpm(),
            max_concurrent: default_concurrent(),
        }
    }
}

fn default_rpm() -> i64 {
    600
}

fn default_tpm() -> i64 {
    200_000
}

fn default_concurrent() -> i64 {
    16
}

/// An API key to mint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    /// Key name (a DNS label), e.g. `ehr-prod`; the Secret is named `<tenant>-key-<name>`.
    #[schemars(length(min = 1, max = 40), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
}

/// A minted key as recorded in status (never the key itself).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyStatus {
    /// Key name from spec.
    pub name: String,
    /// First 16 hex digits of the sha256 of the key, for audit records.
    pub fingerprint: String,
    /// Secret holding the key.
    pub secret_name: String,
    /// When the key was minted (RFC 3339).
    pub created: String,
}

/// Where a tenant is.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum TenantPhase {
    /// Not every key in spec is minted (none listed, not yet, or a Secret with a key's name belongs to
    /// someone else: the `Ready` condition says which).
    #[default]
    Pending,
    /// Every key in spec is held by a Secret this Tenant owns; the tenant can call its endpoints.
    Ready,
}

/// Observed state of a Tenant.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    /// Pending or Ready.
    #[serde(default)]
    pub phase: TenantPhase,
    /// Minted keys with fingerprints and creation times.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyStatus>,
    /// Number of keys currently valid.
    #[serde(default)]
    pub active_keys: i32,
    /// Conditions: Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec the status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
