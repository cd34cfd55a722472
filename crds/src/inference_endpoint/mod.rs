//! InferenceEndpoint (`ie`): a stable endpoint serving one ModelVersion, with blue/green rollouts.
//!
//! The operator keeps a Deployment and a Service per served version and publishes the routing table
//! (versions, weights, digests) in status; the gateway routes by that table. Changing
//! `spec.modelVersion` starts a blue/green rollout. Canary steps and analysis and autoscaling are part of
//! the API but not acted on yet: their docs say so, and the operator sets the condition `NotActedOn`.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{Resources, Toleration};

mod rollout;
use crate::conditions::Condition;
pub use rollout::*;

/// A stable, guarded endpoint that serves one ModelVersion and rolls out new ones safely.
// printcolumn(...) entries repeat `type_ = "string"`, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "anshin.dev",
    version = "v1alpha1",
    kind = "InferenceEndpoint",
    doc = "A stable, guarded endpoint serving one ModelVersion, with blue/green rollouts and a routing table for the gateway. Canary rollouts and autoscaling are not acted on yet.",
    namespaced,
    status = "InferenceEndpointStatus",
    shortname = "ie",
    category = "anshin",
    cel,
    scale(
        spec_replicas_path = ".spec.replicas.desired",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Model", type_ = "string", json_path = ".spec.modelVersion"),
    printcolumn(name = "Stable", type_ = "string", json_path = ".status.stableVersion"),
    printcolumn(name = "Canary", type_ = "string", json_path = ".status.canaryVersion"),
    printcolumn(name = "Weight", type_ = "integer", json_path = ".status.canaryWeight"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct InferenceEndpointSpec {
    /// Name of the ModelVersion (same namespace) to serve; changing it starts a rollout.
    #[schemars(
        length(min = 1, max = 253),
        pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub model_version: String,
    /// How the model server pods run.
    #[serde(default)]
    pub runtime: Runtime,
    /// Replica bounds per served version.
    #[serde(default)]
    pub replicas: Replicas,
    /// Not acted on yet: accepted and ignored (replicas stay at spec.replicas; condition NotActedOn).
    /// Designed: scaling on LLM signals between replicas.min and replicas.max; off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// How a new model version replaces the current one.
    #[serde(default)]
    pub rollout: Rollout,
    /// What the gateway does with personal information on this endpoint.
    #[serde(default)]
    pub guardrails: GuardrailPolicy,
}

/// How the model server pods run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Runtime {
    /// Model server image (in the local cluster mapped to the `anshin-inference` binary).
    #[serde(default = "default_runtime_image")]
    #[schemars(length(min = 1))]
    pub image: String,
    /// Extra arguments for `anshin-inference serve` (e.g. `--max-batch=16`, `--max-waiting=128`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// CPU, memory and `nvidia.com/gpu` per pod.
    #[serde(default)]
    pub resources: Resources,
    /// Node labels the pods must match, e.g. `nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations, e.g. for the `nvidia.com/gpu` taint of GPU nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Seconds the server finishes in-flight requests after SIGTERM before it exits.
    #[serde(default = "default_drain_seconds")]
    #[schemars(range(min = 1, max = 3600))]
    pub drain_timeout_seconds: i32,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime {
            image: default_runtime_image(),
            args: Vec::new(),
            resources: Resources::default(),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            drain_timeout_seconds: default_drain_seconds(),
        }
    }
}

fn default_runtime_image() -> String {
    "anshin/inference:latest".into()
}

fn default_drain_seconds() -> i32 {
    30
}

/// Replica bounds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("!has(self.max) || self.min <= self.max").message(
    "replicas.min must be less than or equal to replicas.max: lower min or raise max"
))]
#[x_kube(validation = Rule::new("!has(self.desired) || !has(self.max) || self.desired <= self.max").message(
    "replicas.desired (set by kubectl scale or an HPA) must not exceed replicas.max"
))]
#[serde(rename_all = "camelCase")]
pub struct Replicas {
    /// Fewest pods per served version; replicas.desired below it is raised to it.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub min: i32,
    /// Most pods per served version; replicas.desired above it is lowered to it. Absent: no bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max: Option<i32>,
    /// Pods per served version, written directly or through the scale subresource (`kubectl scale`, an
    /// external HPA); kept within min and max. Absent: min. The new version of a rollout gets as many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub desired: Option<i32>,
}

impl Default for Replicas {
    fn default() -> Self {
        Replicas {
            min: default_min_replicas(),
            max: None,
            desired: None,
        }
    }
}

fn default_min_replicas() -> i32 {
    1
}

/// LLM signal the autoscaler follows.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum ScalingMetric {
    /// Requests waiting in the model servers' queues, per pod.
    QueueDepth,
    /// Tokens being generated or prefilled, per pod.
    InflightTokens,
    /// Fraction of KV-cache memory in use, per pod, in percent.
    KvCacheUtilization,
}

/// Autoscaling on LLM signals.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Autoscaling {
    /// Signal to follow: QueueDepth, InflightTokens or KvCacheUtilization.
    pub metric: ScalingMetric,
    /// Target value of the signal per pod (for KvCacheUtilization, percent 1–100).
    #[schemars(range(min = 1))]
    pub target: i64,
    /// Seconds the signal must stay high before scaling up.
    #[serde(default)]
    #[schemars(range(min = 0, max = 3600))]
    pub scale_up_stabilization_seconds: i32,
    /// Seconds the signal must stay low before scaling down.
    #[serde(default = "default_scale_down_seconds")]
    #[schemars(range(min = 0, max = 3600))]
    pub scale_down_stabilization_seconds: i32,
}

fn default_scale_down_seconds() -> i32 {
    300
}

/// What the gateway does when it finds personal information.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum GuardrailAction {
    /// Replace it with typed placeholders (e.g. 〔氏名1〕).
    #[default]
    Redact,
    /// Refuse the request or withhold the answer.
    Block,
    /// Let it through (only for endpoints that never see patient data).
    Off,
}

/// Guardrail policy for input (prompts) and output (answers).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GuardrailPolicy {
    /// What to do with PII in prompts before the model sees them (default Redact).
    #[serde(default)]
    pub input: GuardrailAction,
    /// What to do with PII the model produced on its own (default Redact).
    #[serde(default)]
    pub output: GuardrailAction,
}

/// Where an endpoint is.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum EndpointPhase {
    /// Waiting for a verified model version or for pods.
    #[default]
    Pending,
    /// A rollout is in progress.
    Progressing,
    /// Serving with every version at its replica count.
    Ready,
    /// Serving, but below its replica count or a rollout failed.
    Degraded,
}

/// One row of the routing table the gateway follows.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteVersion {
    /// ModelVersion name.
    pub model_version: String,
    /// Artifact digest of that version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Percent of traffic, 0–100; the weights of a table add up to 100.
    pub weight: i32,
    /// Label selector (`key=value,…`) of this version's ready pods.
    pub selector: String,
    /// Container port the pods serve on.
    pub port: i32,
}

/// A version taken out of the routing table, kept running until its in-flight requests drained.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetiringVersion {
    /// ModelVersion name.
    pub model_version: String,
    /// When it stopped receiving new requests (RFC 3339).
    pub since: String,
}

/// Observed state of an InferenceEndpoint.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InferenceEndpointStatus {
    /// Pending, Progressing, Ready or Degraded.
    #[serde(default)]
    pub phase: EndpointPhase,
    /// Version serving all traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_version: Option<String>,
    /// New version coming up beside the stable one, without traffic until all its pods are Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_version: Option<String>,
    /// Percent of traffic on the canary version: 0 (blue/green switches all traffic at once).
    #[serde(default)]
    pub canary_weight: i32,
    /// Pods of the stable version (the scale subresource reads it); a new or retiring version's pods are
    /// not counted.
    #[serde(default)]
    pub replicas: i32,
    /// Ready pods of the stable version.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the endpoint's pods of every version, for the scale subresource and HPAs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Versions with weights the gateway routes by.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routing: Vec<RouteVersion>,
    /// Versions that no longer receive traffic and are kept until their in-flight requests drained.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retiring: Vec<RetiringVersion>,
    /// Conditions: Ready, ModelVersionResolved, RolloutProgressing, and NotActedOn while the spec uses
    /// fields the operator does not act on yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec the status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
