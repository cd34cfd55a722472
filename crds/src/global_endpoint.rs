//! GlobalEndpoint (`ge`): one endpoint across regions, with health checks and failover.
//!
//! Not acted on yet: the API accepts GlobalEndpoints and the operator only sets the condition
//! `NotActedOn`. Designed: the operator probes each region's gateway, marks regions healthy or not,
//! fails over by priority and records how long detection and recovery took.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::conditions::Condition;

/// Not acted on yet: accepted and ignored. One endpoint served from several regions, failing over when a
/// region is lost.
// printcolumn(...) entries repeat `type_ = "string"`, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "anshin.dev",
    version = "v1alpha1",
    kind = "GlobalEndpoint",
    doc = "Not acted on yet: accepted and ignored (condition NotActedOn; nothing is probed or failed over). Designed: one endpoint served from several regions, with health checks and measured failover.",
    namespaced,
    status = "GlobalEndpointStatus",
    shortname = "ge",
    category = "anshin",
    cel,
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.failover.mode"),
    printcolumn(name = "Active", type_ = "string", json_path = ".status.activeRegions"),
    printcolumn(
        name = "Last-Failover",
        type_ = "date",
        json_path = ".status.lastFailover.time"
    ),
    printcolumn(
        name = "RTO-Seconds",
        type_ = "number",
        json_path = ".status.lastFailover.rtoSeconds"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.regions.all(r, self.regions.exists_one(s, s.name == r.name))").message(
    "spec.regions has two regions with the same name: give each region a unique name"
))]
#[x_kube(validation = Rule::new("self.failover.mode != 'ActivePassive' || self.regions.all(r, self.regions.exists_one(s, s.priority == r.priority))").message(
    "with failover.mode ActivePassive every region needs a distinct priority (0 is tried first)"
))]
#[serde(rename_all = "camelCase")]
pub struct GlobalEndpointSpec {
    /// Regions serving this endpoint; at least one, at most 16.
    #[schemars(length(min = 1, max = 16))]
    pub regions: Vec<Region>,
    /// How regions are probed.
    #[serde(default)]
    pub health_check: HealthCheck,
    /// How traffic moves when a region fails.
    #[serde(default)]
    pub failover: Failover,
    /// Publish the active regions as an external-dns `DNSEndpoint` (when external-dns is installed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsPublication>,
}

/// What a region's gateway URL must look like: `https://` anywhere, plain `http://` only on a
/// loopback host (`127.x.x.x`, `localhost`, `[::1]`: tests and development). The CRD schema and the
/// gateway's peer list ([`region_endpoint_allowed`]) use this one rule.
pub const REGION_ENDPOINT_PATTERN: &str =
    r"^(https://[^\s/]+(/\S*)?|http://(127\.[0-9.]+|localhost|\[::1\])(:[0-9]+)?(/\S*)?)$";

/// What a data-residency zone looks like, e.g. `jp` or `jp-east` (Region and Tenant).
pub const RESIDENCY_PATTERN: &str = r"^[a-z]{2}(-[a-z0-9]+)*$";

/// Whether `url` is an acceptable region gateway URL ([`REGION_ENDPOINT_PATTERN`]).
pub fn region_endpoint_allowed(url: &str) -> bool {
    static RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(REGION_ENDPOINT_PATTERN)
            .expect("REGION_ENDPOINT_PATTERN is a valid regex")
    });
    RE.is_match(url)
}

/// Whether `zone` is a valid data-residency zone ([`RESIDENCY_PATTERN`]).
pub fn residency_valid(zone: &str) -> bool {
    static RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(RESIDENCY_PATTERN).expect("RESIDENCY_PATTERN is a valid regex")
    });
    RE.is_match(zone)
}

/// One region.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Region {
    /// Region name, e.g. `tokyo`, `osaka`.
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// Lower is preferred; 0 is the primary.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000))]
    pub priority: i32,
    /// Base URL of the region's gateway (`https://`; `http://` only for loopback test setups). Gateways
    /// forwarding to it apply the same rule to their peers.
    #[schemars(pattern(REGION_ENDPOINT_PATTERN))]
    pub endpoint: String,
    /// Data-residency zone of the region, e.g. `jp`: a gateway never forwards a request of a tenant with
    /// a residency to a peer region without the same residency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(RESIDENCY_PATTERN))]
    pub residency: Option<String>,
}

/// Region health probing.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.timeoutSeconds < self.intervalSeconds").message(
    "healthCheck.timeoutSeconds must be shorter than healthCheck.intervalSeconds"
))]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// Seconds between probes of each region.
    #[serde(default = "default_interval")]
    #[schemars(range(min = 1, max = 300))]
    pub interval_seconds: i32,
    /// Seconds a probe may take before it counts as failed.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 60))]
    pub timeout_seconds: i32,
    /// Consecutive failed probes before a region is marked unhealthy.
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: i32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            interval_seconds: default_interval(),
            timeout_seconds: default_timeout(),
            failure_threshold: default_failure_threshold(),
        }
    }
}

fn default_interval() -> i32 {
    5
}

fn default_timeout() -> i32 {
    2
}

fn default_failure_threshold() -> i32 {
    3
}

/// Failover modes.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum FailoverMode {
    /// All traffic to the healthy region with the lowest priority number.
    #[default]
    ActivePassive,
    /// Traffic spread over all healthy regions.
    ActiveActive,
}

/// What happens when the preferred region comes back.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum Failback {
    /// Move traffic back automatically once the region is healthy again.
    #[default]
    Automatic,
    /// Stay on the failover region until an operator moves traffic back.
    Manual,
}

/// Failover policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failover {
    /// ActivePassive (default) or ActiveActive.
    #[serde(default)]
    pub mode: FailoverMode,
    /// Automatic (default) or Manual failback.
    #[serde(default)]
    pub failback: Failback,
    /// Only fail over to regions serving the same model digest (default true).
    #[serde(default = "default_true")]
    pub require_same_digest: bool,
}

impl Default for Failover {
    fn default() -> Self {
        Failover {
            mode: FailoverMode::default(),
            failback: Failback::default(),
            require_same_digest: true,
        }
    }
}

fn default_true() -> bool {
    true
}

/// DNS publication through external-dns.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsPublication {
    /// Host name to publish, e.g. `llm.example-hospital.jp`.
    #[schemars(pattern(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]{2,}$"))]
    pub hostname: String,
    /// Record TTL in seconds.
    #[serde(default = "default_ttl")]
    #[schemars(range(min = 1, max = 86400))]
    pub ttl_seconds: i32,
}

fn default_ttl() -> i32 {
    30
}

/// Health of one region.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionStatus {
    /// Region name.
    pub name: String,
    /// Whether the last probes succeeded.
    pub healthy: bool,
    /// Model digest the region serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Consecutive failed probes.
    #[serde(default)]
    pub consecutive_failures: i32,
    /// Time of the last probe (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<String>,
}

/// The last failover, as measured.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverRecord {
    /// When traffic moved (RFC 3339).
    pub time: String,
    /// Region traffic left.
    pub from: String,
    /// Region traffic went to.
    pub to: String,
    /// Seconds from the first failed probe to the decision.
    pub detection_seconds: f64,
    /// Seconds from the first failed probe until the new region served traffic.
    pub rto_seconds: f64,
}

/// Where a global endpoint is.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum GlobalPhase {
    /// Regions not probed yet.
    #[default]
    Pending,
    /// Preferred regions are serving.
    Healthy,
    /// Serving from a failover region.
    FailedOver,
    /// No region is healthy.
    Unavailable,
}

/// Observed state of a GlobalEndpoint.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GlobalEndpointStatus {
    /// Pending, Healthy, FailedOver or Unavailable; stays Pending while GlobalEndpoints are not acted on.
    #[serde(default)]
    pub phase: GlobalPhase,
    /// Health per region.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<RegionStatus>,
    /// Regions receiving traffic, comma-separated (for `kubectl get`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_regions: Option<String>,
    /// The last failover with its measured detection time and RTO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<FailoverRecord>,
    /// Conditions: NotActedOn (the operator does not act on GlobalEndpoints yet).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec the status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;
    use serde_json::json;

    use super::*;

    /// URLs a gateway might be given as a peer, with whether they are acceptable.
    const URLS: &[(&str, bool)] = &[
        ("https://gateway.osaka.example", true),
        ("https://gateway.osaka.example:8443", true),
        ("https://10.0.0.7:8443/base", true),
        ("http://127.0.0.1:8080", true),
        ("http://127.1.2.3", true),
        ("http://localhost:9000", true),
        ("http://[::1]:8080", true),
        ("http://gateway.osaka.example:8080", false),
        ("http://10.0.0.7:8080", false),
        ("http://localhost.evil.example", false),
        ("http://127.0.0.1@evil.example", false),
        ("ftp://gateway.osaka.example", false),
        ("gateway.osaka.example:8443", false),
        ("https://", false),
        ("", false),
    ];

    #[test]
    fn region_endpoint_rule_of_the_crd_schema_and_the_function_agree() {
        let crd = GlobalEndpoint::crd();
        for (url, ok) in URLS {
            assert_eq!(region_endpoint_allowed(url), *ok, "function on {url}");
            let obj = json!({
                "apiVersion": "anshin.dev/v1alpha1", "kind": "GlobalEndpoint",
                "metadata": {"name": "g", "namespace": "n"},
                "spec": {"regions": [{"name": "a", "endpoint": url}]}
            });
            let violations = crate::schema_check::check(&crd, &obj, None);
            assert_eq!(
                violations.is_empty(),
                *ok,
                "schema on {url}: {violations:?}"
            );
        }
    }

    #[test]
    fn residency_zones_are_lower_case_country_codes_with_optional_parts() {
        for (zone, ok) in [
            ("jp", true),
            ("jp-east", true),
            ("JP", false),
            ("j", false),
            ("jp_", false),
        ] {
            assert_eq!(residency_valid(zone), ok, "{zone}");
        }
    }
}
