//! Spec types shared by several kinds: resources, tolerations, digests.
//!
//! These are small own types rather than k8s-openapi's: embedding k8s-openapi types in a CRD needs its
//! `schemars` feature, which roughly doubles its compile time, and the subset here is all a user sets.

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize};

/// Pattern of a file or dataset digest: `sha256:` and 64 lowercase hex digits.
pub const SHA256_PATTERN: &str = "^sha256:[a-f0-9]{64}$";
/// Pattern of a Kubernetes object name (DNS-1123 subdomain, the shape most names here take).
pub const NAME_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// Pattern of a DNS-1123 label (a single name segment, e.g. a key or region name).
pub const LABEL_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// A Kubernetes resource quantity such as `8`, `500m`, `64Gi`; written as a YAML number or string.
#[derive(Serialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(transparent)]
pub struct Quantity(pub String);

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum IntOrString {
            Int(i64),
            Float(f64),
            String(String),
        }
        Ok(match IntOrString::deserialize(deserializer)? {
            IntOrString::Int(i) => Quantity(i.to_string()),
            IntOrString::Float(f) => Quantity(f.to_string()),
            IntOrString::String(s) => Quantity(s),
        })
    }
}

impl JsonSchema for Quantity {
    fn schema_name() -> Cow<'static, str> {
        "Quantity".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A resource quantity such as 8, 500m or 64Gi.",
            // No anyOf: Kubernetes 1.20 fails to publish OpenAPI models for a map of anyOf values.
            "x-kubernetes-int-or-string": true,
            "pattern": "^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$"
        })
    }
}

/// Compute resources for a container, as in a Pod spec.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// Resources the scheduler reserves, e.g. `cpu: "4"`, `memory: 32Gi`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, Quantity>,
    /// Upper limits, e.g. `nvidia.com/gpu: 1`. GPUs are requested through limits, as on Kubernetes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, Quantity>,
}

/// How a taint is matched by a toleration.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum TolerationOperator {
    /// Any value of the key matches.
    Exists,
    /// The value must equal `value`.
    #[default]
    Equal,
}

/// Which scheduling effect a taint has.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TaintEffect {
    /// New pods are not scheduled on the node.
    NoSchedule,
    /// The scheduler avoids the node when it can.
    PreferNoSchedule,
    /// Running pods are evicted.
    NoExecute,
}

/// A pod toleration, as in a Pod spec (e.g. for the `nvidia.com/gpu` taint of GPU nodes).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Toleration {
    /// Taint key to tolerate, e.g. `nvidia.com/gpu`; empty with operator Exists tolerates everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Exists or Equal (default Equal).
    #[serde(default)]
    pub operator: TolerationOperator,
    /// Taint value to match when the operator is Equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Taint effect to match; empty matches all effects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<TaintEffect>,
    /// With NoExecute: how long the pod stays bound after the taint appears; unset means forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub toleration_seconds: Option<i64>,
}

/// A file of a model artifact or dataset, pinned by digest.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileDigest {
    /// Path relative to the artifact root, e.g. `model-00001-of-00002.safetensors` or `tokenizer/tokenizer.json`;
    /// segments are separated by `/` and may not start with `.` (so no `..`, no hidden files, no leading `/`).
    #[schemars(
        length(min = 1, max = 512),
        pattern(r"^[A-Za-z0-9_@+=,-][A-Za-z0-9_.@+=,-]*(/[A-Za-z0-9_@+=,-][A-Za-z0-9_.@+=,-]*)*$")
    )]
    pub path: String,
    /// Digest of the file's bytes: `sha256:` followed by 64 lowercase hex digits.
    #[schemars(pattern(r"^sha256:[a-f0-9]{64}$"))]
    pub sha256: String,
    /// Size of the file in bytes.
    #[schemars(range(min = 0))]
    pub size: i64,
}
