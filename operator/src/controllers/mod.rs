//! One controller per kind. Each reads, calls a pure function of the crate, applies, and writes status.

pub mod endpoint;
pub mod global_endpoint;
pub mod model_version;
pub mod tenant;
pub mod training_job;

/// Publishes the `NotActedOn` Warning Event when a status write took `old` conditions to `new` ones
/// and the condition appeared or changed its message — once, even if a later reconcile reads a stale
/// copy of the object.
pub async fn warn_not_acted_on<K>(
    ctx: &crate::context::Context,
    obj: &K,
    old: &[anshin_crds::Condition],
    new: &[anshin_crds::Condition],
) where
    K: kube::Resource<DynamicType = ()>,
{
    use crate::not_acted_on;
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
/// backoff, and errors go through [`crate::context::on_error`] — the same for every kind.
pub async fn drive<K, F, Fut>(
    controller: kube::runtime::Controller<K>,
    name: &'static str,
    mut reconcile: F,
    ctx: std::sync::Arc<crate::context::Context>,
    shutdown: Shutdown,
) where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    F: FnMut(std::sync::Arc<K>, std::sync::Arc<crate::context::Context>) -> Fut,
    Fut: std::future::Future<Output = crate::error::Result<kube::runtime::controller::Action>>
        + Send
        + 'static,
{
    use futures::{FutureExt, StreamExt};
    let counted = move |obj: std::sync::Arc<K>, ctx: std::sync::Arc<crate::context::Context>| {
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
            move |obj, err, ctx| crate::context::on_error(name, obj, err, ctx),
            ctx,
        )
        .for_each(|_| futures::future::ready(()))
        .await;
}
