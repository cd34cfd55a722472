//! When a pod worker posts its pod's status, like the kubelet's status manager: when its own status
//! changed, when the API holds something else (someone else wrote it — the node-lifecycle controller
//! marks pods NotReady while their node is unreachable), and every [`SYNC_PERIOD`] in any case. After a
//! failed post the next try waits for [`retry_delay`], so an unreachable API server is not hammered.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::PodStatus;
use serde_json::Value;

use super::retry::retry_delay;
use super::status::{differs_from_api, fingerprint};

/// The kubelet's status sync period: the full status is posted at least this often.
pub const SYNC_PERIOD: Duration = Duration::from_secs(10);
/// Retries of a failed post back off up to this.
const RETRY_CAP: Duration = Duration::from_secs(3);

/// A pod worker's record of its status posts.
#[derive(Debug, Clone)]
pub struct StatusSync {
    reported: String,
    last_post: Option<Instant>,
    failures: u32,
    retry_at: Instant,
}

impl StatusSync {
    /// Nothing posted yet.
    pub fn new(now: Instant) -> Self {
        Self {
            reported: String::new(),
            last_post: None,
            failures: 0,
            retry_at: now,
        }
    }

    /// Whether `status` (computed by the agent) should be posted now, given what the API holds (pure).
    pub fn due(&self, status: &Value, seen: Option<&PodStatus>, now: Instant) -> bool {
        if now < self.retry_at {
            return false;
        }
        let periodic = self
            .last_post
            .is_none_or(|t| now.duration_since(t) >= SYNC_PERIOD);
        periodic || fingerprint(status) != self.reported || differs_from_api(status, seen)
    }

    /// Records a successful post of `status`.
    pub fn posted(&mut self, status: &Value, now: Instant) {
        self.reported = fingerprint(status);
        self.last_post = Some(now);
        self.failures = 0;
        self.retry_at = now;
    }

    /// Records a failed post; the next try backs off. Returns the consecutive failures so far.
    pub fn failed(&mut self, now: Instant) -> u32 {
        self.failures = self.failures.saturating_add(1);
        self.retry_at = now + retry_delay(self.failures, RETRY_CAP);
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(ready: &str) -> Value {
        json!({ "phase": "Running", "podIP": "127.3.0.2",
                "conditions": [{ "type": "Ready", "status": ready, "lastTransitionTime": "2026-01-01T00:00:00Z" }] })
    }

    fn api(status: &Value) -> PodStatus {
        serde_json::from_value(status.clone()).expect("pod status")
    }

    #[test]
    fn posts_on_change_on_outside_change_and_every_period() {
        let t0 = Instant::now();
        let mut sync = StatusSync::new(t0);
        let ready = status("True");
        assert!(sync.due(&ready, None, t0), "first report");
        sync.posted(&ready, t0);
        let second = t0 + Duration::from_secs(1);
        assert!(!sync.due(&ready, Some(&api(&ready)), second), "nothing new");
        assert!(
            sync.due(&status("False"), Some(&api(&ready)), second),
            "own change"
        );
        assert!(
            sync.due(&ready, Some(&api(&status("False"))), second),
            "outside change"
        );
        assert!(
            sync.due(&ready, Some(&api(&ready)), t0 + SYNC_PERIOD),
            "periodic"
        );
    }

    #[test]
    fn failed_posts_back_off_then_retry() {
        let t0 = Instant::now();
        let mut sync = StatusSync::new(t0);
        let ready = status("True");
        sync.failed(t0);
        assert!(!sync.due(&ready, None, t0 + Duration::from_millis(100)));
        assert!(sync.due(&ready, None, t0 + Duration::from_millis(250)));
        sync.failed(t0);
        assert!(!sync.due(&ready, None, t0 + Duration::from_millis(400)));
        assert!(sync.due(&ready, None, t0 + Duration::from_millis(500)));
    }
}
