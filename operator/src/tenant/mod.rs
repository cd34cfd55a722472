//! Tenant controller: mints API keys into Secrets, revokes removed ones, records fingerprints.
//!
//! Pipeline of [`reconcile`]: observe (the tenant's key Secrets) → decide ([`keys::plan`], pure: which
//! Secrets to create and delete) → apply (create the new keys, leaving alone a Secret of that name the
//! tenant does not own; delete removed keys) → Events (`KeyRevoked`, `KeyMinted`) → status if changed
//! ([`keys::readiness`], pure); a name taken by someone else's Secret then fails the reconcile, so it
//! backs off and becomes an Event.
//! (`spec.residency` is enforced by the gateway when it forwards to peer regions.)
//! Keys are never logged; only fingerprints reach status and Events.

pub mod keys;

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use anshin_crds::Tenant;
use anshin_crds::conditions::{Condition, set_condition};
use anshin_crds::tenant::TenantStatus;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::names;
use crate::reconcile::apply::{apply_status, delete_if_exists};
use crate::reconcile::context::Context;
use crate::reconcile::error::{Error, Result};
use crate::reconcile::events::{self, EventSpec};

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
    let existing = key_secrets(&secrets, &tenant).await?;
    let now = Timestamp::now();
    let mut plan = keys::plan(&tenant, &existing, keys::mint_key, &now.to_string());
    let taken = match create_keys(&secrets, &tenant, &plan).await? {
        ControlFlow::Continue(taken) => taken,
        ControlFlow::Break(action) => return Ok(action),
    };
    plan.status.retain(|k| !taken.contains(&k.secret_name));
    plan.create.retain(|c| !taken.contains(&c.name_any()));
    revoke_keys(&secrets, &tenant, &plan.delete, &ctx).await?;
    announce_minted(&tenant, &plan, &ctx).await;
    let ready = keys::readiness(tenant.spec.keys.len(), &taken);
    let status = status_of(&tenant, plan, &ready, now);
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
    Ok(Action::requeue(Duration::from_secs(600)))
}

/// The Secrets carrying the tenant's label (the plan counts only those the tenant owns).
async fn key_secrets(secrets: &Api<Secret>, tenant: &Tenant) -> Result<Vec<Secret>> {
    let selector = format!(
        "{}={}",
        names::LABEL_TENANT,
        names::label_value(&tenant.name_any())
    );
    let existing = secrets
        .list(&ListParams::default().labels(&selector))
        .await?;
    Ok(existing.items)
}

/// Creates the planned key Secrets and continues with the names taken by Secrets the tenant does not
/// own; stops (to look again shortly) when one exists that the tenant owns, made by an earlier pass.
async fn create_keys(
    secrets: &Api<Secret>,
    tenant: &Tenant,
    plan: &keys::KeysPlan,
) -> Result<ControlFlow<Action, Vec<String>>> {
    let mut taken = Vec::new();
    for secret in &plan.create {
        match secrets.create(&PostParams::default(), secret).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let name = secret.name_any();
                match secrets.get_opt(&name).await? {
                    // Created by a previous reconcile that failed later: keep that key, the next pass
                    // records it.
                    Some(own) if keys::owned_by(&own, tenant) => {
                        return Ok(ControlFlow::Break(Action::requeue(Duration::from_secs(1))));
                    }
                    // Someone else's Secret has this key's name: never reuse or overwrite it.
                    _ => taken.push(name),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(ControlFlow::Continue(taken))
}

/// Deletes the Secrets of keys removed from spec (revoking them), each with a `KeyRevoked` Event.
async fn revoke_keys(
    secrets: &Api<Secret>,
    tenant: &Tenant,
    delete: &[String],
    ctx: &Context,
) -> Result<()> {
    for name in delete {
        delete_if_exists(secrets, name).await?;
        let event = EventSpec::normal("KeyRevoked", format!("deleted key Secret {name}"));
        events::publish(ctx, tenant, event).await;
    }
    Ok(())
}

/// A `KeyMinted` Event (fingerprint, never the key) for every key created by this pass.
async fn announce_minted(tenant: &Tenant, plan: &keys::KeysPlan, ctx: &Context) {
    for s in plan
        .status
        .iter()
        .filter(|s| plan.create.iter().any(|c| c.name_any() == s.secret_name))
    {
        let note = format!(
            "minted key {} (fingerprint {}) into Secret {}",
            s.name, s.fingerprint, s.secret_name
        );
        events::publish(ctx, tenant, EventSpec::normal("KeyMinted", note)).await;
    }
}

/// The tenant's new status: its keys, phase and `Ready` condition (pure).
fn status_of(
    tenant: &Tenant,
    plan: keys::KeysPlan,
    ready: &keys::Readiness,
    now: Timestamp,
) -> TenantStatus {
    let mut status = tenant.status.clone().unwrap_or_default();
    status.active_keys = i32::try_from(plan.status.len()).unwrap_or(i32::MAX);
    status.keys = plan.status;
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
    status
}
