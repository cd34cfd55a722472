//! What every controller shares: the client, the event recorder, metrics, settings, and the per-object
//! failure counts behind the exponential backoff (kube-runtime has none built in).

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::metrics::Metrics;
use crate::names::FIELD_MANAGER;
use crate::policy::HostPathPolicy;
use crate::reconcile::error::{Error, Result};

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
    /// Publishes Events on the objects.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Metrics,
    /// Settings.
    pub settings: Settings,
    /// The standing warning of each object, so that it is published once.
    pub warnings: Warnings,
    failures: Mutex<HashMap<String, u32>>,
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
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// Publishes an Event on `obj`; a failure to publish is logged, never fatal.
    pub async fn event<K>(&self, obj: &K, type_: EventType, reason: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "cannot publish event");
        }
    }

    /// Forgets the failures of `uid` after a successful reconcile.
    pub fn succeeded(&self, uid: &str) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(uid);
        }
    }

    /// Records a failure of `uid` and returns how long to wait: 2 s doubling up to 5 min.
    pub fn backoff(&self, uid: &str) -> Duration {
        let n = self.failures.lock().map(|mut f| {
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

/// The error policy of every controller: an Event and a metric for each error; transient errors retry
/// with per-object exponential backoff, invalid objects wait for a change.
pub fn on_error<K>(controller: &'static str, obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action
where
    K: Resource<DynamicType = ()> + Clone + Debug + Send + Sync + 'static,
{
    ctx.metrics
        .errors
        .with_label_values(&[controller, err.metric_label()])
        .inc();
    let uid = obj.uid().unwrap_or_default();
    let retry = ctx.backoff(&uid);
    tracing::warn!(controller, object = %obj.name_any(), error = %err, retry_s = retry.as_secs(), "reconcile failed");
    let note = err.to_string();
    tokio::spawn(async move {
        ctx.event(obj.as_ref(), EventType::Warning, "ReconcileError", note)
            .await
    });
    if err.is_transient() {
        Action::requeue(retry)
    } else {
        Action::await_change()
    }
}

/// Server-side applies `obj` with the operator's field manager, taking ownership of its fields.
pub async fn apply<K>(api: &Api<K>, obj: &K) -> Result<K>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = obj
        .meta()
        .name
        .clone()
        .ok_or_else(|| Error::Invalid("object without a name".into()))?;
    Ok(api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await?)
}

/// Server-side applies a status, only fields the operator owns.
pub async fn apply_status<K, S>(api: &Api<K>, name: &str, status: &S) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
    S: Serialize,
{
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// Deletes `name`, treating "already gone" as success.
pub async fn delete_if_exists<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
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
}
