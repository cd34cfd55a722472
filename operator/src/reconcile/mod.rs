//! What every controller shares, and the loop that runs each one.
//!
//! A kind's `run` builds its kube `Controller` (what it watches and owns) and hands it to [`drive`]
//! with its reconcile function: every reconcile is counted, a success resets the object's backoff, and
//! every error goes through one policy, [`on_error`] — an Event and a metric with a fixed label, then a
//! retry with per-object exponential backoff ([`context::Backoff`]) or, for an invalid object, a wait for it to
//! change. The reconcile functions read through [`context::Context`], write through [`apply`] and
//! report through [`events`]; [`error`] classifies failures and [`not_acted_on`] names the fields no
//! controller acts on yet.

pub mod apply;
pub mod context;
pub mod error;
pub mod events;
pub mod not_acted_on;

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use self::context::Context;
use self::error::{Error, Result};
use self::events::EventSpec;

/// Resolves when the controllers must stop (SIGTERM or lost leadership); cloneable for each controller.
pub type Shutdown = futures::future::Shared<futures::future::BoxFuture<'static, ()>>;

/// Runs `controller` until `shutdown`: every reconcile is counted, a success resets the object's
/// backoff, and errors go through [`on_error`] — the same for every kind.
pub async fn drive<K, F, Fut>(
    controller: Controller<K>,
    name: &'static str,
    mut reconcile: F,
    ctx: Arc<Context>,
    shutdown: Shutdown,
) where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    F: FnMut(Arc<K>, Arc<Context>) -> Fut,
    Fut: Future<Output = Result<Action>> + Send + 'static,
{
    let counted = move |obj: Arc<K>, ctx: Arc<Context>| {
        ctx.metrics.reconciles.with_label_values(&[name]).inc();
        let uid = obj.uid().unwrap_or_default();
        let done = ctx.clone();
        reconcile(obj, ctx).map(move |result| {
            if result.is_ok() {
                done.backoff.succeeded(&uid);
            }
            result
        })
    };
    controller
        .graceful_shutdown_on(shutdown)
        .run(
            counted,
            move |obj, err, ctx| on_error(name, obj, err, ctx),
            ctx,
        )
        .for_each(|_| futures::future::ready(()))
        .await;
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
    let retry = ctx.backoff.failed(&uid);
    tracing::warn!(controller, object = %obj.name_any(), error = %err, retry_s = retry.as_secs(), "reconcile failed");
    let event = EventSpec::warning("ReconcileError", err.to_string());
    tokio::spawn(async move { events::publish(&ctx, obj.as_ref(), event).await });
    if err.is_transient() {
        Action::requeue(retry)
    } else {
        Action::await_change()
    }
}
