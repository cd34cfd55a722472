//! Events on the objects: what to say ([`EventSpec`], derived by each kind from its old and new
//! status), and publishing it ([`publish`]; a failure is logged, never fatal). A standing warning is
//! published once per process even when a reconcile reads a stale copy of its object
//! ([`super::context::Warnings`]).
//!
//! Each kind derives its Events with a pure function of (old status, new status) next to its decision
//! (`endpoint::events::derive`, `model_version::verify::event`); the `NotActedOn` warning every kind
//! shares is [`not_acted_on`].

use anshin_crds::Condition;
use anshin_crds::conditions::find_condition;
use kube::Resource;
use kube::runtime::events::{Event, EventType};

use super::context::Context;
use super::not_acted_on;

/// One Event to publish on an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSpec {
    /// Normal or Warning.
    pub type_: EventType,
    /// CamelCase reason (also the Event's action).
    pub reason: String,
    /// What happened, for the user.
    pub note: String,
}

impl EventSpec {
    /// A Normal Event.
    pub fn normal(reason: impl Into<String>, note: impl Into<String>) -> EventSpec {
        EventSpec {
            type_: EventType::Normal,
            reason: reason.into(),
            note: note.into(),
        }
    }

    /// A Warning Event.
    pub fn warning(reason: impl Into<String>, note: impl Into<String>) -> EventSpec {
        EventSpec {
            type_: EventType::Warning,
            reason: reason.into(),
            note: note.into(),
        }
    }
}

/// Publishes `event` on `obj`; a failure to publish is logged, never fatal.
pub async fn publish<K>(ctx: &Context, obj: &K, event: EventSpec)
where
    K: Resource<DynamicType = ()>,
{
    let ev = Event {
        type_: event.type_,
        reason: event.reason.clone(),
        note: Some(event.note),
        action: event.reason.clone(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &obj.object_ref(&())).await {
        tracing::warn!(error = %e, reason = %event.reason, "cannot publish event");
    }
}

/// Publishes every event of `events` on `obj`, in order.
pub async fn publish_all<K>(ctx: &Context, obj: &K, events: Vec<EventSpec>)
where
    K: Resource<DynamicType = ()>,
{
    for event in events {
        publish(ctx, obj, event).await;
    }
}

/// The `NotActedOn` Warning when the status went from `old` to `new` conditions and the condition
/// appeared or changed its message (pure).
pub fn not_acted_on(old: &[Condition], new: &[Condition]) -> Option<EventSpec> {
    not_acted_on::warning(old, new).map(|note| EventSpec::warning(not_acted_on::EVENT_REASON, note))
}

/// Publishes the `NotActedOn` Warning Event when a status write took `old` conditions to `new` ones
/// and the condition appeared or changed its message — once, even if a later reconcile reads a stale
/// copy of the object.
pub async fn warn_not_acted_on<K>(ctx: &Context, obj: &K, old: &[Condition], new: &[Condition])
where
    K: Resource<DynamicType = ()>,
{
    let uid = obj.meta().uid.clone().unwrap_or_default();
    let standing = find_condition(new, not_acted_on::CONDITION).map(|c| c.message.as_str());
    let first = ctx.warnings.first(&uid, standing);
    if let Some(event) = not_acted_on(old, new).filter(|_| first) {
        publish(ctx, obj, event).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_acted_on_is_a_warning_named_by_the_event_reason() {
        let mut new = Vec::new();
        not_acted_on::mark(
            &mut new,
            &[not_acted_on::AUTOSCALING],
            Some(1),
            jiff::Timestamp::UNIX_EPOCH,
        );
        let event = not_acted_on(&[], &new).expect("condition appeared");
        assert_eq!(event.type_, EventType::Warning);
        assert_eq!(event.reason, not_acted_on::EVENT_REASON);
        assert!(event.note.contains(not_acted_on::AUTOSCALING));
        assert_eq!(not_acted_on(&new, &new), None);
    }
}
