//! Tenant controller: mints API keys into Secrets, revokes removed ones, records fingerprints.
//!
//! read (tenant, its key Secrets) → `keys::plan` (pure) → create/delete Secrets → status if changed.
//! (`spec.residency` is enforced by the gateway when it forwards to peer regions.)
//! Keys are never logged; only fingerprints reach status and Events.

pub mod keys;

use std::sync::Arc;

use anshin_crds::Tenant;
use anshin_crds::conditions::{Condition, set_condition};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::names;
use crate::reconcile::context::{Context, apply_status, delete_if_exists};
use crate::reconcile::error::{Error, Result};

const CONTROLLER: &str = "tenant";

/// Runs the controller until `shutdown` resolves.
pub async fn run(client: Client, ctx: Arc<Context>, shutdown: crate::reconcile::Shutdown) {
    let controller = Controller::new(
        Api::<Tenant>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(
        Api::<Secret>::all(client),
        watcher::Config::default().labels(names::LABEL_TENANT),
    );
    crate::reconcile::drive(controller, CONTROLLER, reconcile, ctx, shutdown).await;
}

async fn reconcile(tenant: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action> {
    let ns = tenant
        .namespace()
        .ok_or_else(|| Error::Invalid("Tenant without a namespace".into()))?;
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), &ns);
    let selector = format!(
        "{}={}",
        names::LABEL_TENANT,
        names::label_value(&tenant.name_any())
    );
    let existing = secrets
        .list(&ListParams::default().labels(&selector))
        .await?;
    let now = Timestamp::now();
    let mut plan = keys::plan(&tenant, &existing.items, keys::mint_key, &now.to_string());
    let mut taken = Vec::new();
    for secret in &plan.create {
        match secrets.create(&PostParams::default(), secret).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let name = secret.name_any();
                match secrets.get_opt(&name).await? {
                    // Created by a previous reconcile that failed later: keep that key, the next pass
                    // records it.
                    Some(own) if keys::owned_by(&own, &tenant) => {
                        return Ok(Action::requeue(std::time::Duration::from_secs(1)));
                    }
                    // Someone else's Secret has this key's name: never reuse or overwrite it.
                    _ => taken.push(name),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    plan.status.retain(|k| !taken.contains(&k.secret_name));
    plan.create.retain(|c| !taken.contains(&c.name_any()));
    for name in &plan.delete {
        delete_if_exists(&secrets, name).await?;
        ctx.event(
            tenant.as_ref(),
            EventType::Normal,
            "KeyRevoked",
            format!("deleted key Secret {name}"),
        )
        .await;
    }
    for s in plan
        .status
        .iter()
        .filter(|s| plan.create.iter().any(|c| c.name_any() == s.secret_name))
    {
        let note = format!(
            "minted key {} (fingerprint {}) into Secret {}",
            s.name, s.fingerprint, s.secret_name
        );
        ctx.event(tenant.as_ref(), EventType::Normal, "KeyMinted", note)
            .await;
    }
    let mut status = tenant.status.clone().unwrap_or_default();
    status.active_keys = i32::try_from(plan.status.len()).unwrap_or(i32::MAX);
    status.keys = plan.status;
    let ready = keys::readiness(tenant.spec.keys.len(), &taken);
    status.phase = ready.phase;
    status.observed_generation = tenant.metadata.generation;
    set_condition(
        &mut status.conditions,
        Condition::new(
            "Ready",
            ready.status,
            ready.reason,
            ready.message.clone(),
            tenant.metadata.generation,
            now,
        ),
    );
    if tenant.status.as_ref() != Some(&status) {
        apply_status(
            &Api::<Tenant>::namespaced(ctx.client.clone(), &ns),
            &tenant.name_any(),
            &status,
        )
        .await?;
    }
    if !taken.is_empty() {
        // Backs off per object (2 s doubling to 5 min) and publishes the message as an Event.
        return Err(Error::NameTaken(ready.message));
    }
    Ok(Action::requeue(std::time::Duration::from_secs(600)))
}
