//! TrainingJob (`tj`): trains a new model version on GPU nodes, resumable from checkpoints.
//!
//! Not acted on yet: the API accepts TrainingJobs and the operator only sets the condition `NotActedOn`.
//! Designed: the operator runs the job as a gang of pods, one per node, restarts the whole gang from the
//! last checkpoint when a pod or node fails, and on success creates the output ModelVersion.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{Quantity, Toleration};
use crate::conditions::Condition;
use crate::model_version::{DatasetRef, TrainingMethod};

/// Not acted on yet: accepted and ignored. A training run on GPU nodes that produces a new ModelVersion.
// printcolumn(...) entries repeat `type_ = "string"`, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "anshin.dev",
    version = "v1alpha1",
    kind = "TrainingJob",
    doc = "Not acted on yet: accepted and ignored (condition NotActedOn; no pods start). Designed: a training run on GPU nodes (one pod per node, resumed from checkpoints after failures) that produces a new ModelVersion.",
    namespaced,
    status = "TrainingJobStatus",
    shortname = "tj",
    category = "anshin",
    cel,
    printcolumn(name = "Method", type_ = "string", json_path = ".spec.method"),
    printcolumn(name = "Nodes", type_ = "integer", json_path = ".spec.resources.nodes"),
    printcolumn(
        name = "GPUs/Node",
        type_ = "integer",
        json_path = ".spec.resources.gpusPerNode"
    ),
    printcolumn(name = "Step", type_ = "integer", json_path = ".status.step"),
    printcolumn(name = "Loss", type_ = "number", json_path = ".status.loss"),
    printcolumn(name = "Restarts", type_ = "integer", json_path = ".status.restarts"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.method == 'Scratch' || has(self.baseModel)").message(
    "spec.baseModel is required unless spec.method is Scratch: name the ModelVersion to start from"
))]
#[x_kube(validation = Rule::new("self.method != 'Scratch' || !has(self.baseModel)").message(
    "spec.baseModel must be empty when spec.method is Scratch: remove it or choose ContinuedPretraining, SFT or DPO"
))]
#[serde(rename_all = "camelCase")]
pub struct TrainingJobSpec {
    /// Training method: Scratch, ContinuedPretraining, SFT or DPO.
    pub method: TrainingMethod,
    /// ModelVersion (same namespace) to start from; required unless method is Scratch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"))]
    pub base_model: Option<String>,
    /// Training data, pinned by digest; at least one.
    #[schemars(length(min = 1, max = 64))]
    pub datasets: Vec<DatasetRef>,
    /// GPU nodes and GPUs per node for the gang.
    #[serde(default)]
    pub resources: TrainingResources,
    /// Where and how often checkpoints are written; a restarted gang resumes from the newest one.
    pub checkpoint: CheckpointSpec,
    /// Total optimiser steps to train.
    #[schemars(range(min = 1))]
    pub steps: i64,
    /// Trainer settings passed through as `--key=value` (e.g. `learningRate: "2e-5"`, `seqLen: "4096"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hyperparameters: BTreeMap<String, String>,
    /// How many times the gang is restarted from a checkpoint after a failure before the job fails.
    #[serde(default = "default_max_restarts")]
    #[schemars(range(min = 0, max = 100))]
    pub max_restarts: i32,
    /// Kueue LocalQueue to submit to; when set the gang is queued through Kueue (if installed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub queue: Option<String>,
    /// The ModelVersion created on success.
    pub output: TrainingOutput,
    /// Trainer image (mapped to the trainer binary in the local cluster).
    #[serde(default = "default_trainer_image")]
    pub image: String,
}

fn default_max_restarts() -> i32 {
    3
}

fn default_trainer_image() -> String {
    "anshin/trainer:latest".into()
}

/// GPU nodes for the training gang.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainingResources {
    /// Number of nodes (one pod per node).
    #[serde(default = "default_nodes")]
    #[schemars(range(min = 1, max = 512))]
    pub nodes: i32,
    /// GPUs per node, requested as `nvidia.com/gpu`.
    #[serde(default = "default_gpus_per_node")]
    #[schemars(range(min = 1, max = 16))]
    pub gpus_per_node: i32,
    /// Value of the `nvidia.com/gpu.product` node label to schedule on.
    #[serde(default = "default_gpu_product")]
    #[schemars(length(min = 1))]
    pub gpu_product: String,
    /// CPU and memory per pod, e.g. `cpu: "32"`, `memory: 512Gi`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, Quantity>,
    /// Extra tolerations; the `nvidia.com/gpu` NoSchedule taint is always tolerated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

impl Default for TrainingResources {
    fn default() -> Self {
        TrainingResources {
            nodes: default_nodes(),
            gpus_per_node: default_gpus_per_node(),
            gpu_product: default_gpu_product(),
            requests: BTreeMap::new(),
            tolerations: Vec::new(),
        }
    }
}

fn default_nodes() -> i32 {
    1
}

fn default_gpus_per_node() -> i32 {
    8
}

/// The GPU product Anshin trains on by default.
pub fn default_gpu_product() -> String {
    "NVIDIA-H100-80GB-HBM3".into()
}

/// Checkpoint policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointSpec {
    /// Where checkpoints go: `pvc://CLAIM/PATH` or `file:///PATH`; no path segment may be `.` or `..`.
    #[schemars(pattern(
        r"^(pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/([^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+)?)*|file:///([^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+)(/([^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+)?)*)$"
    ))]
    pub uri: String,
    /// Write a checkpoint every this many steps.
    #[serde(default = "default_every_steps")]
    #[schemars(range(min = 1))]
    pub every_steps: i64,
    /// How many checkpoints to keep (older ones are deleted).
    #[serde(default = "default_keep")]
    #[schemars(range(min = 1, max = 100))]
    pub keep: i32,
}

fn default_every_steps() -> i64 {
    500
}

fn default_keep() -> i32 {
    3
}

/// The ModelVersion a successful job creates.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainingOutput {
    /// Model family name of the new version.
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub model: String,
    /// Version label of the new version.
    #[schemars(length(min = 1, max = 63), pattern(r"^[A-Za-z0-9][A-Za-z0-9._-]*$"))]
    pub version: String,
    /// Where the trained weights are written: `pvc://CLAIM/PATH` or `file:///PATH`; no path segment may
    /// be `.` or `..`.
    #[schemars(pattern(
        r"^(pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/([^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+)?)*|file:///([^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+)(/([^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+)?)*)$"
    ))]
    pub uri: String,
}

/// Where a training job is.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum TrainingPhase {
    /// Accepted, pods not created yet.
    #[default]
    Pending,
    /// Waiting for quota in a Kueue queue.
    Queued,
    /// The gang is running.
    Running,
    /// A pod or node failed; the gang is restarting from the last checkpoint.
    Restarting,
    /// Training finished and the output ModelVersion exists.
    Succeeded,
    /// Failed beyond maxRestarts, or invalid.
    Failed,
}

/// A checkpoint that was written.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointRef {
    /// Step at which it was written.
    pub step: i64,
    /// Where it is.
    pub uri: String,
}

/// Observed state of a TrainingJob.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainingJobStatus {
    /// Pending, Queued, Running, Restarting, Succeeded or Failed; stays Pending while TrainingJobs are
    /// not acted on.
    #[serde(default)]
    pub phase: TrainingPhase,
    /// Last optimiser step reported by rank 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<i64>,
    /// Last training loss reported by rank 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Newest complete checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint: Option<CheckpointRef>,
    /// How many times the gang was restarted.
    #[serde(default)]
    pub restarts: i32,
    /// Name of the ModelVersion created on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_model_version: Option<String>,
    /// Conditions: NotActedOn (the operator does not run TrainingJobs yet).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec the status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
