//! What every controller shares: [`drive`] runs a kind's reconcile function (counted, per-object
//! backoff reset on success, errors through [`context::on_error`]), [`context`] holds the client,
//! settings and metrics, [`error`] classifies failures, [`not_acted_on`] names the fields no
//! controller acts on yet.

pub mod context;
pub mod error;
pub mod not_acted_on;

/// Publishes the `NotActedOn` Warning Event when a status write took `old` conditions to `new` ones
/// and the condition appeared or changed its message — once, even if a later reconcile reads a stale
/// copy of the object.
pub async fn warn_not_acted_on<K>(
    ctx: &crate::reconcile::context::Context,
    obj: &K,
    old: &[anshin_crds::Condition],
    new: &[anshin_crds::Condition],
) where
    K: kube::Resource<DynamicType = ()>,
{
    use crate::reconcile::not_acted_on;
    let uid = obj.meta().uid.clone().unwrap_or_default();
    let standing = anshin_crds::conditions::find_condition(new, not_acted_on::CONDITION)
        .map(|c| c.message.as_str());
    let first = ctx.warnings.first(&uid, standing);
    if let Some(note) = not_acted_on::warning(old, new).filter(|_| first) {
        ctx.event(
            obj,
            kube::runtime::events::EventType::Warning,
            not_acted_on::EVENT_REASON,
            note,
        )
        .await;
    }
}

/// Resolves when the controllers must stop (SIGTERM or lost leadership); cloneable for each controller.
pub type Shutdown = futures::future::Shared<futures::future::BoxFuture<'static, ()>>;

/// Runs `controller` until `shutdown`: every reconcile is counted, a success resets the object's
/// backoff, and errors go through [`crate::reconcile::context::on_error`] — the same for every kind.
pub async fn drive<K, F, Fut>(
    controller: kube::runtime::Controller<K>,
    name: &'static str,
    mut reconcile: F,
    ctx: std::sync::Arc<crate::reconcile::context::Context>,
    shutdown: Shutdown,
) where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    F: FnMut(std::sync::Arc<K>, std::sync::Arc<crate::reconcile::context::Context>) -> Fut,
    Fut: std::future::Future<
            Output = crate::reconcile::error::Result<kube::runtime::controller::Action>,
        > + Send
        + 'static,
{
    use futures::{FutureExt, StreamExt};
    let counted = move |obj: std::sync::Arc<K>,
                        ctx: std::sync::Arc<crate::reconcile::context::Context>| {
        ctx.metrics.reconciles.with_label_values(&[name]).inc();
        let uid = kube::ResourceExt::uid(obj.as_ref()).unwrap_or_default();
        let done = ctx.clone();
        reconcile(obj, ctx).map(move |result| {
            if result.is_ok() {
                done.succeeded(&uid);
            }
            result
        })
    };
    controller
        .graceful_shutdown_on(shutdown)
        .run(
            counted,
            move |obj, err, ctx| crate::reconcile::context::on_error(name, obj, err, ctx),
            ctx,
        )
        .for_each(|_| futures::future::ready(()))
        .await;
}
