//! What every reconcile is handed: the API client, the Event recorder, metrics, the operator's
//! settings, the standing warnings already published and the per-object failure counts behind the
//! backoff. Built once by the runtime when this replica becomes leader.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

use crate::metrics::Metrics;
use crate::names::FIELD_MANAGER;
use crate::policy::HostPathPolicy;

/// Operator settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Image that runs the verification Jobs (`anshin-inference verify`); pinned by tag or digest.
    pub verifier_image: String,
    /// Node directories `file://` artifacts may use.
    pub host_paths: HostPathPolicy,
    /// Who may call the model servers (the NetworkPolicy of every endpoint).
    pub network: crate::endpoint::backend_access::NetworkSettings,
}

/// Shared state of the controllers.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Publishes Events on the objects (through [`super::events::publish`]).
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Metrics,
    /// Settings.
    pub settings: Settings,
    /// The standing warning of each object, so that it is published once.
    pub warnings: Warnings,
    /// Consecutive failures per object, for the error policy's backoff.
    pub backoff: Backoff,
}

impl Context {
    /// A context for `client`, reporting Events as `anshin-operator` from `instance`.
    pub fn new(
        client: Client,
        metrics: Metrics,
        settings: Settings,
        instance: String,
    ) -> Arc<Context> {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(instance),
        };
        Arc::new(Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            settings,
            warnings: Warnings::default(),
            backoff: Backoff::default(),
        })
    }
}

/// The warning each object (by UID) has standing, as last published by this process.
#[derive(Default)]
pub struct Warnings(Mutex<HashMap<String, String>>);

impl Warnings {
    /// Records that `note` is the standing warning of `uid` (`None`: it has none any more) and says
    /// whether it is new to this process: a reconcile that reads a stale copy of its object must not
    /// publish the same warning twice.
    pub fn first(&self, uid: &str, note: Option<&str>) -> bool {
        let Ok(mut warned) = self.0.lock() else {
            return true;
        };
        match note {
            None => {
                warned.remove(uid);
                false
            }
            Some(n) if warned.get(uid).map(String::as_str) == Some(n) => false,
            Some(n) => {
                warned.insert(uid.to_owned(), n.to_owned());
                true
            }
        }
    }
}

/// Consecutive failures per object (by UID); kube-runtime has no per-object backoff built in.
#[derive(Default)]
pub struct Backoff(Mutex<HashMap<String, u32>>);

impl Backoff {
    /// Forgets the failures of `uid` after a successful reconcile.
    pub fn succeeded(&self, uid: &str) {
        if let Ok(mut f) = self.0.lock() {
            f.remove(uid);
        }
    }

    /// Records a failure of `uid` and returns how long to wait: 2 s doubling up to 5 min.
    pub fn failed(&self, uid: &str) -> Duration {
        let n = self.0.lock().map(|mut f| {
            let n = f.entry(uid.to_owned()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        });
        backoff_delay(n.unwrap_or(1))
    }
}

/// Wait after the `failures`-th consecutive failure: 2 s, 4 s, 8 s … capped at 5 min.
pub fn backoff_delay(failures: u32) -> Duration {
    let n = failures.clamp(1, 9);
    Duration::from_secs((2u64 << (n - 1)).min(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standing_warning_is_new_once_until_it_changes_or_goes() {
        let w = Warnings::default();
        assert!(w.first("uid-1", Some("a")));
        assert!(!w.first("uid-1", Some("a")), "same note again: not new");
        assert!(w.first("uid-2", Some("a")), "another object");
        assert!(w.first("uid-1", Some("b")), "changed note");
        assert!(!w.first("uid-1", None));
        assert!(w.first("uid-1", Some("b")), "gone, then back: new again");
    }

    #[test]
    fn backoff_doubles_from_two_seconds_and_caps_at_five_minutes() {
        let delays: Vec<u64> = (1..=10).map(|n| backoff_delay(n).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff_delay(u32::MAX).as_secs(), 300);
    }

    #[test]
    fn backoff_counts_per_object_and_resets_on_success() {
        let b = Backoff::default();
        assert_eq!(b.failed("a").as_secs(), 2);
        assert_eq!(b.failed("a").as_secs(), 4);
        assert_eq!(b.failed("b").as_secs(), 2, "another object");
        b.succeeded("a");
        assert_eq!(b.failed("a").as_secs(), 2, "reset after a success");
    }
}
