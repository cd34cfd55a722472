//! ModelVersion (`mv`): an immutable, digest-pinned model artifact.
//!
//! The operator verifies every file against `spec.artifact.files` before anything may serve the version.
//! Evaluation and human approval are designed (the phases exist) but not built: a Verified version may
//! serve. The spec can never change after creation: a new model is a new ModelVersion.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::FileDigest;
use crate::conditions::Condition;

/// An immutable, digest-pinned model artifact that endpoints may serve once verified.
// printcolumn(...) entries repeat `type_ = "string"`, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "anshin.dev",
    version = "v1alpha1",
    kind = "ModelVersion",
    doc = "An immutable, digest-pinned model artifact, verified against its file digests before any endpoint may serve it. Evaluation and approval are not built yet.",
    namespaced,
    status = "ModelVersionStatus",
    shortname = "mv",
    category = "anshin",
    cel,
    printcolumn(name = "Model", type_ = "string", json_path = ".spec.model"),
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.version"),
    printcolumn(name = "Method", type_ = "string", json_path = ".spec.lineage.method"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self == oldSelf").message(
    "ModelVersion spec is immutable: create a new ModelVersion (e.g. with a new version) instead of editing this one"
))]
#[serde(rename_all = "camelCase")]
pub struct ModelVersionSpec {
    /// Name of the model family this version belongs to, e.g. `anshin-med-ja`.
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub model: String,
    /// Version label, e.g. `2026.11.1` or `v3-sft`; unique per model by convention.
    #[schemars(length(min = 1, max = 63), pattern(r"^[A-Za-z0-9][A-Za-z0-9._-]*$"))]
    pub version: String,
    /// Where the artifact's bytes are and what they must hash to.
    pub artifact: Artifact,
    /// How this version was produced (training method, base version, datasets).
    pub lineage: Lineage,
}

/// On-disk layout of a model artifact.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum ArtifactFormat {
    /// Hugging Face layout: config.json, *.safetensors (optionally sharded), tokenizer.json.
    #[default]
    HuggingFace,
    /// A single GGUF file (weights, tokenizer and chat template in its metadata).
    #[serde(rename = "GGUF")]
    Gguf,
}

/// Location and digests of a model artifact.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.files.all(f, self.files.exists_one(g, g.path == f.path))").message(
    "artifact.files lists a path twice: give each file exactly one entry"
))]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// Where the files are: `pvc://CLAIM/PATH` (a PersistentVolumeClaim in the same namespace) or
    /// `file:///PATH` (a directory on the node, accepted only under a prefix the operator was started
    /// with, `--allow-host-path`; none by default). No path segment may be `.` or `..`. `s3://`,
    /// `gs://` and `hf://` are accepted but not served yet.
    #[schemars(pattern(
        r"^(pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/([^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+)?)*|file:///([^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+)(/([^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+)?)*|s3://.+|gs://.+|hf://.+)$"
    ))]
    pub uri: String,
    /// Layout of the files (default HuggingFace).
    #[serde(default)]
    pub format: ArtifactFormat,
    /// Every file of the artifact with its sha256 and size; the version is rejected when any differs.
    #[schemars(length(min = 1, max = 1000))]
    pub files: Vec<FileDigest>,
}

/// How a model version was trained.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum TrainingMethod {
    /// Trained from random initialisation; no base model.
    Scratch,
    /// Further pretraining of a base model on new (e.g. Japanese medical) text.
    ContinuedPretraining,
    /// Supervised fine-tuning of a base model on instruction data.
    #[serde(rename = "SFT")]
    Sft,
    /// Direct preference optimisation of a base model.
    #[serde(rename = "DPO")]
    Dpo,
}

/// Where a model version comes from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.method == 'Scratch' || has(self.base)").message(
    "lineage.base is required unless lineage.method is Scratch: name the ModelVersion this one was trained from"
))]
#[serde(rename_all = "camelCase")]
pub struct Lineage {
    /// Training method: Scratch, ContinuedPretraining, SFT or DPO.
    pub method: TrainingMethod,
    /// Name of the base ModelVersion (same namespace); required unless method is Scratch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"))]
    pub base: Option<String>,
    /// Name of the TrainingJob that produced this version, when the operator trained it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_job: Option<String>,
    /// Datasets used for training, pinned by digest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datasets: Vec<DatasetRef>,
}

/// A dataset pinned by URI and digest.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatasetRef {
    /// Where the dataset is, e.g. `pvc://datasets/jmed-corpus-v2/`.
    #[schemars(pattern(r"^(pvc|file|s3|gs|hf)://.+$"))]
    pub uri: String,
    /// Digest of the dataset manifest: `sha256:` followed by 64 lowercase hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^sha256:[a-f0-9]{64}$"))]
    pub sha256: Option<String>,
}

/// Where a version is on its way from upload to serving.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum ModelVersionPhase {
    /// Seen, nothing checked yet.
    #[default]
    Pending,
    /// The verification Job is checking the files' digests.
    Verifying,
    /// Every file matched its digest.
    Verified,
    /// Not set yet (evaluation is not built). Designed: the safety and accuracy evaluation is running.
    Evaluating,
    /// Not set yet (approval is not built). Designed: evaluated; waiting for a human approval.
    AwaitingApproval,
    /// Not set yet (approval is not built). Designed: approved; endpoints may serve it.
    Approved,
    /// Digests did not match (later also: evaluation failed, approval refused): never served.
    Rejected,
}

/// Observed state of a ModelVersion.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelVersionStatus {
    /// Where the version is: Pending, Verifying, Verified, Evaluating, AwaitingApproval, Approved, Rejected.
    #[serde(default)]
    pub phase: ModelVersionPhase,
    /// Conditions: ArtifactVerified (Evaluated and Approved are designed, not set yet).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec the status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Digest over the whole artifact (sha256 of the sorted file list with digests), set once verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}
