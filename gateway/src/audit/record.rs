//! What records say: one authenticated request ([`Event`]), the unauthenticated requests of one
//! source over an interval, records lost, and a cut end of the log. [`super::chain`] adds `seq`,
//! `prev_hash` and `hash` around them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What happened to one request (no PII).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339 time the request arrived.
    pub time: String,
    /// Request id.
    pub request_id: String,
    /// Tenant, when authenticated.
    pub tenant: Option<String>,
    /// Key fingerprint (16 hex digits of its SHA-256), when authenticated.
    pub key_fingerprint: Option<String>,
    /// Endpoint (`model`).
    pub endpoint: Option<String>,
    /// Version that answered.
    pub model_version: Option<String>,
    /// Its digest.
    pub model_digest: Option<String>,
    /// `local`, `peer` or `none`.
    pub route: String,
    /// HTTP status sent.
    pub status: u16,
    /// How it ended: `ok`, `blocked`, `backend_error`, `client_gone`, or the error code sent.
    pub outcome: String,
    /// Input policy applied.
    pub input_policy: String,
    /// Output policy applied.
    pub output_policy: String,
    /// Input PII replaced, by entity type.
    pub input_entities: BTreeMap<String, u64>,
    /// PII the model produced on its own, by entity type.
    pub output_leaks: BTreeMap<String, u64>,
    /// Whether the answer was blocked.
    pub output_blocked: bool,
    /// Prompt tokens (backend usage when reported, else the gateway's estimate).
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Latency in milliseconds.
    pub latency_ms: u64,
    /// `peer:<name>` when a peer region's gateway forwarded the request here (authenticated by its
    /// peer token); absent for a direct caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// Requests that never authenticated (401, and 400 before authentication), counted per source over
/// one interval instead of one record each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unauthenticated {
    /// RFC 3339 start of the interval.
    pub time: String,
    /// Length of the interval in milliseconds.
    pub interval_ms: u64,
    /// IPv4 address, IPv6 `/64` prefix, `unknown`, or `other` once too many sources were seen.
    pub source: String,
    /// HTTP status sent.
    pub status: u16,
    /// Requests counted.
    pub count: u64,
    /// The same requests by outcome (`missing_api_key`, `invalid_api_key`, …).
    pub outcomes: BTreeMap<String, u64>,
}

/// Records that could not be written (queue or retry buffer full) before this one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lost {
    /// RFC 3339 time this record was made.
    pub time: String,
    /// How many records are missing.
    pub count: u64,
}

/// The log's end was cut at start-up because its last line was incomplete or unreadable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recovered {
    /// RFC 3339 time of the start-up.
    pub time: String,
    /// Bytes removed from the end of the file.
    pub dropped_bytes: u64,
    /// Hex SHA-256 of those bytes.
    pub dropped_sha256: String,
}

/// What a record says; `kind` names the variant in the JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// One authenticated request.
    Request(Box<Event>),
    /// Unauthenticated requests of one source and status over one interval.
    Unauthenticated(Unauthenticated),
    /// Records lost before this one.
    Lost(Lost),
    /// A cut end of the log.
    Recovered(Recovered),
}
