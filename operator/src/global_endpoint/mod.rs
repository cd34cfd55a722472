//! GlobalEndpoint controller, for now only honest about doing nothing: the operator does not probe
//! regions or fail over yet, so every GlobalEndpoint gets the condition `NotActedOn` and one Warning Event.
//!
//! read (the endpoint) → `not_acted_on::global_endpoint` (pure) → status if changed → Event when the condition
//! appeared or changed. Nothing is probed and no DNS is published.

use std::sync::Arc;

use anshin_crds::GlobalEndpoint;
use jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::reconcile::apply::apply_status;
use crate::reconcile::context::Context;
use crate::reconcile::error::{Error, Result};
use crate::reconcile::{events, not_acted_on};

const CONTROLLER: &str = "globalendpoint";

/// Runs the controller until `shutdown` resolves.
pub async fn run(client: Client, ctx: Arc<Context>, shutdown: crate::reconcile::Shutdown) {
    let controller = Controller::new(
        Api::<GlobalEndpoint>::all(client),
        watcher::Config::default(),
    );
    crate::reconcile::drive(controller, CONTROLLER, reconcile, ctx, shutdown).await;
}

async fn reconcile(ge: Arc<GlobalEndpoint>, ctx: Arc<Context>) -> Result<Action> {
    let ns = ge
        .namespace()
        .ok_or_else(|| Error::Invalid("GlobalEndpoint without a namespace".into()))?;
    let old = ge.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let generation = ge.metadata.generation;
    not_acted_on::mark(
        &mut status.conditions,
        &not_acted_on::global_endpoint(&ge.spec),
        generation,
        Timestamp::now(),
    );
    status.observed_generation = generation;
    if ge.status.as_ref() != Some(&status) {
        let api = Api::<GlobalEndpoint>::namespaced(ctx.client.clone(), &ns);
        apply_status(&api, &ge.name_any(), &status).await?;
        events::warn_not_acted_on(&ctx, ge.as_ref(), &old.conditions, &status.conditions).await;
    }
    Ok(Action::await_change())
}
