//! TrainingJob controller, for now only honest about doing nothing: the operator does not run training
//! yet, so every TrainingJob gets the condition `NotActedOn` and one Warning Event.
//!
//! read (the job) → `not_acted_on::training_job` (pure) → status if changed → Event when the condition
//! appeared or changed. No pods, Jobs or ModelVersions are created.

use std::sync::Arc;

use anshin_crds::TrainingJob;
use jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::reconcile::apply::apply_status;
use crate::reconcile::context::Context;
use crate::reconcile::error::{Error, Result};
use crate::reconcile::{events, not_acted_on};

const CONTROLLER: &str = "trainingjob";

/// Runs the controller until `shutdown` resolves.
pub async fn run(client: Client, ctx: Arc<Context>, shutdown: crate::reconcile::Shutdown) {
    let controller = Controller::new(Api::<TrainingJob>::all(client), watcher::Config::default());
    crate::reconcile::drive(controller, CONTROLLER, reconcile, ctx, shutdown).await;
}

async fn reconcile(tj: Arc<TrainingJob>, ctx: Arc<Context>) -> Result<Action> {
    let ns = tj
        .namespace()
        .ok_or_else(|| Error::Invalid("TrainingJob without a namespace".into()))?;
    let old = tj.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let generation = tj.metadata.generation;
    not_acted_on::mark(
        &mut status.conditions,
        &not_acted_on::training_job(&tj.spec),
        generation,
        Timestamp::now(),
    );
    status.observed_generation = generation;
    if tj.status.as_ref() != Some(&status) {
        let api = Api::<TrainingJob>::namespaced(ctx.client.clone(), &ns);
        apply_status(&api, &tj.name_any(), &status).await?;
        events::warn_not_acted_on(&ctx, tj.as_ref(), &old.conditions, &status.conditions).await;
    }
    Ok(Action::await_change())
}
