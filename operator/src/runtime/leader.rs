//! Leader election on a `coordination.k8s.io/v1` Lease (served from Kubernetes 1.14 on).
//!
//! The holder renews the lease every `renew`; a standby takes the lease over once it has not been
//! renewed for `duration`. Every write carries the lease's resourceVersion, so two replicas can never
//! both win. Losing the lease ends leadership: the caller stops reconciling (and the process exits, to
//! come back as a standby).

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;

/// Lease timing.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Lease name.
    pub name: String,
    /// This replica's identity (pod name).
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub duration: Duration,
    /// How often the holder renews and a standby retries.
    pub renew: Duration,
}

/// What one attempt found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// This replica holds the lease.
    Leading,
    /// Another replica holds a live lease.
    Following,
}

/// Whether a lease held by someone else has expired at `now` (pure).
pub fn expired(spec: &LeaseSpec, now: Timestamp, default_duration: Duration) -> bool {
    let Some(renewed) = spec.renew_time.as_ref().map(|t| t.0) else {
        return true;
    };
    let duration = spec
        .lease_duration_seconds
        .map_or(default_duration.as_secs() as i64, i64::from);
    now.duration_since(renewed).as_secs() >= duration
}

/// One election round: create, renew or take over the lease.
pub async fn try_acquire(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<Attempt, kube::Error> {
    let now = Timestamp::now();
    let Some(mut lease) = api.get_opt(&cfg.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(cfg.name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(spec_for(cfg, now, None, 0)),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Attempt::Leading),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Following),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let mine = spec.holder_identity.as_deref() == Some(cfg.identity.as_str());
    if !mine && !expired(&spec, now, cfg.duration) {
        return Ok(Attempt::Following);
    }
    let acquired = if mine {
        spec.acquire_time.clone()
    } else {
        None
    };
    let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
    lease.spec = Some(spec_for(cfg, now, acquired, transitions));
    // replace() sends our resourceVersion: if another replica wrote first, we get 409 and follow.
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(Attempt::Leading),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Following),
        Err(e) => Err(e),
    }
}

fn spec_for(
    cfg: &LeaseConfig,
    now: Timestamp,
    acquired: Option<MicroTime>,
    transitions: i32,
) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(cfg.duration.as_secs() as i32),
        acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    }
}

/// How long after the start of its last successful renewal a leader may still act: the lease's
/// duration less one renewal interval. A standby takes over only once `duration` has passed since the
/// renewal time the leader wrote (taken before that request was sent), so a leader that stops acting
/// at this deadline never overlaps with the next one, even while its own requests hang (an API server
/// paused or unreachable) — it does not wait for a request to fail before stepping down.
pub fn renew_deadline(cfg: &LeaseConfig) -> Duration {
    cfg.duration.saturating_sub(cfg.renew)
}

/// Runs the election forever, publishing leadership on `tx`. Returns when leadership is lost
/// (after having been held) so the caller can stop: lost to another replica, or not renewed within
/// [`renew_deadline`]. Every attempt is bounded by the renewal interval and by that deadline.
pub async fn run(api: Api<Lease>, cfg: LeaseConfig, tx: watch::Sender<bool>) {
    let mut leading = false;
    let mut step_down_at = tokio::time::Instant::now();
    loop {
        let started = tokio::time::Instant::now();
        if leading && started >= step_down_at {
            return step_down(&cfg, &tx);
        }
        let mut until = started + cfg.renew.max(Duration::from_millis(100));
        if leading {
            until = until.min(step_down_at);
        }
        match tokio::time::timeout_at(until, try_acquire(&api, &cfg)).await {
            Ok(Ok(Attempt::Leading)) => {
                if !leading {
                    tracing::info!(identity = %cfg.identity, lease = %cfg.name, "became leader");
                }
                leading = true;
                step_down_at = started + renew_deadline(&cfg);
                let _ = tx.send(true);
            }
            Ok(Ok(Attempt::Following)) if leading => {
                tracing::warn!(identity = %cfg.identity, "lost the leader lease to another replica");
                let _ = tx.send(false);
                return;
            }
            Ok(Ok(Attempt::Following)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "leader election request failed"),
            Err(_) => tracing::warn!("leader election request timed out"),
        }
        // The next attempt one interval after this one started (at once after a timeout).
        tokio::time::sleep_until(until).await;
    }
}

fn step_down(cfg: &LeaseConfig, tx: &watch::Sender<bool>) {
    tracing::warn!(identity = %cfg.identity, deadline_s = renew_deadline(cfg).as_secs_f64(),
        "could not renew the leader lease within its deadline; stepping down");
    let _ = tx.send(false);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(renewed_secs_ago: i64, duration: i32, now: Timestamp) -> LeaseSpec {
        LeaseSpec {
            renew_time: Some(MicroTime(
                now - jiff::SignedDuration::from_secs(renewed_secs_ago),
            )),
            lease_duration_seconds: Some(duration),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_leader_stops_acting_one_renewal_before_a_standby_may_take_over() {
        let cfg = LeaseConfig {
            name: "l".into(),
            identity: "a".into(),
            duration: Duration::from_secs(4),
            renew: Duration::from_secs(1),
        };
        assert_eq!(renew_deadline(&cfg), Duration::from_secs(3));
        assert!(renew_deadline(&cfg) < cfg.duration);
    }

    #[test]
    fn a_fresh_lease_is_not_expired() {
        let now = Timestamp::now();
        assert!(!expired(&spec(3, 10, now), now, Duration::from_secs(10)));
    }

    #[test]
    fn a_lease_not_renewed_for_its_duration_is_expired() {
        let now = Timestamp::now();
        assert!(expired(&spec(10, 10, now), now, Duration::from_secs(10)));
        assert!(
            expired(&LeaseSpec::default(), now, Duration::from_secs(10)),
            "never renewed"
        );
    }
}
