//! The rollout part of an InferenceEndpoint's spec: blue/green (acted on) and canary steps with
//! their analysis (accepted, not acted on yet: `kubectl explain` says so field by field).

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// How a new model version replaces the current one.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum RolloutStrategy {
    /// Not acted on yet: accepted and rolled out blue/green. Designed: shift traffic step by step,
    /// analysing each step, rolling back automatically on failure.
    Canary,
    /// Bring the new version up fully, then switch all traffic at once.
    #[default]
    BlueGreen,
}

/// Rollout policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.strategy != 'Canary' || (has(self.steps) && size(self.steps) > 0)").message(
    "rollout.strategy Canary needs at least one entry in rollout.steps, e.g. [{weight: 10}, {weight: 50}]"
))]
#[x_kube(validation = Rule::new("!has(self.steps) || (self.steps.map(s, s.weight).isSorted() && self.steps.all(s, self.steps.exists_one(t, t.weight == s.weight)))").message(
    "rollout.steps weights must strictly increase (e.g. 5, 25, 50): reorder or remove duplicate steps"
))]
#[x_kube(validation = Rule::new("!has(self.maxSurge) || self.maxSurge >= 1").message(
    "rollout.maxSurge must be at least 1: the new version's pods start beside the serving ones (maxUnavailable is always 0), so a rollout needs room for one more pod"
))]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// BlueGreen (default) or Canary; Canary is not acted on yet (rolled out blue/green).
    #[serde(default)]
    pub strategy: RolloutStrategy,
    /// Not acted on yet: accepted and ignored. Canary steps: traffic percent to the new version and how
    /// long to hold it; strictly increasing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub steps: Vec<CanaryStep>,
    /// Not acted on yet: accepted and ignored. Thresholds a canary step must meet to go on; otherwise
    /// the rollout is rolled back.
    #[serde(default)]
    pub analysis: Analysis,
    /// Not acted on yet: accepted and ignored. Consecutive analysis windows that break a threshold
    /// before a canary is aborted, 1–10 (default 1).
    #[serde(default = "default_failure_limit")]
    #[schemars(range(min = 1, max = 10))]
    pub failure_limit: i32,
    /// Not acted on yet: accepted and ignored. Longest a canary step may go without Ready canary pods
    /// or without a passing analysis window before the canary is aborted, in seconds, 30–86400
    /// (default 600).
    #[serde(default = "default_progress_deadline")]
    #[schemars(range(min = 30, max = 86400))]
    pub progress_deadline_seconds: i32,
    /// Not acted on yet: accepted and ignored. How traffic returns to a retired version when
    /// `spec.modelVersion` is set back to it: Stepped (default: warmed, then the same steps) or
    /// Immediate (warmed, then all at once).
    #[serde(default)]
    pub rollback: RollbackMode,
    /// Extra pods a version's Deployment may start while it replaces its own pods (after a runtime
    /// change), 1–1000 (default 1); 0 is refused, since pods are never taken down before their
    /// successors are Ready. A version change brings the new version up at full count beside the old one.
    #[serde(default = "default_max_surge")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_surge: i32,
}

impl Default for Rollout {
    fn default() -> Self {
        Rollout {
            strategy: RolloutStrategy::default(),
            steps: Vec::new(),
            analysis: Analysis::default(),
            failure_limit: default_failure_limit(),
            progress_deadline_seconds: default_progress_deadline(),
            rollback: RollbackMode::default(),
            max_surge: default_max_surge(),
        }
    }
}

fn default_max_surge() -> i32 {
    1
}

fn default_failure_limit() -> i32 {
    1
}

fn default_progress_deadline() -> i32 {
    600
}

/// How a rollback to a retired version shifts traffic (it is always warmed first).
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum RollbackMode {
    /// Through the same canary steps.
    #[default]
    Stepped,
    /// All traffic at once once it is Ready.
    Immediate,
}

/// One canary step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    /// Percent of traffic sent to the new version, 1–100.
    #[schemars(range(min = 1, max = 100))]
    pub weight: i32,
    /// Seconds to hold this weight while analysing before the next step.
    #[serde(default = "default_pause_seconds")]
    #[schemars(range(min = 0, max = 86400))]
    pub pause_seconds: i32,
}

fn default_pause_seconds() -> i32 {
    60
}

/// Canary analysis thresholds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    /// Highest tolerated fraction of failed requests on the canary (0–1).
    #[serde(default = "default_max_error_rate")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_error_rate: f64,
    /// Highest tolerated p95 latency on the canary, in milliseconds.
    #[serde(default = "default_max_p95_ms")]
    #[schemars(range(min = 1))]
    pub max_p95_latency_ms: i64,
    /// Fewest canary requests a step needs before it can be judged.
    #[serde(default = "default_min_requests")]
    #[schemars(range(min = 0))]
    pub min_requests: i64,
    /// Length of one analysis window in seconds, 10–3600 (default 30).
    #[serde(default = "default_window_seconds")]
    #[schemars(range(min = 10, max = 3600))]
    pub window_seconds: i32,
    /// Highest tolerated p95 time to the first streamed byte on the canary, in milliseconds (absent:
    /// not judged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_ttft_p95_ms: Option<i64>,
    /// Highest tolerated fraction of the canary's answers with personal information the model
    /// produced on its own (found by the gateway's output guardrails), 0–1 (absent: not judged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_output_leak_rate: Option<f64>,
    /// Limits relative to the stable version's figures in the same window (absent: not judged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative: Option<RelativeAnalysis>,
}

/// Canary limits relative to the stable version in the same analysis window.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RelativeAnalysis {
    /// Most the canary's error rate may exceed the stable version's, in absolute terms (0.02 = two
    /// percentage points), 0–1.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_error_rate_increase: f64,
    /// Most the canary's p95 latency may be as a multiple of the stable version's (1.5 = 50 % slower),
    /// at least 1.
    #[schemars(range(min = 1.0))]
    pub max_p95_latency_ratio: f64,
}

impl Default for Analysis {
    fn default() -> Self {
        Analysis {
            max_error_rate: default_max_error_rate(),
            max_p95_latency_ms: default_max_p95_ms(),
            min_requests: default_min_requests(),
            window_seconds: default_window_seconds(),
            max_ttft_p95_ms: None,
            max_output_leak_rate: None,
            relative: None,
        }
    }
}

fn default_max_error_rate() -> f64 {
    0.01
}

fn default_max_p95_ms() -> i64 {
    5000
}

fn default_min_requests() -> i64 {
    50
}

fn default_window_seconds() -> i32 {
    30
}
