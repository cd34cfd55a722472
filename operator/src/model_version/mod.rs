//! ModelVersion controller: runs the verification Job and records its verdict.
//!
//! Pipeline of [`reconcile`]: a final verdict stops here → build the manifest ConfigMap and Job
//! ([`verify::build`], pure; an artifact that cannot be mounted is reported and waits for a change) →
//! ensure each is the version's own ([`ownership`], pure: a missing one is created, a stale own one
//! replaced, a foreign one reported and left alone) → observe the Job's pods → judge
//! ([`verify::outcome`], [`verify::status`], pure) → write status only when it changed, with the Event
//! [`verify::event`] derives from the old and new status.

pub mod ownership;
pub mod verify;

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use anshin_crds::ModelVersion;
use anshin_crds::model_version::ModelVersionStatus;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};

use self::ownership::Found;
use self::verify::Outcome;
use crate::names;
use crate::reconcile::apply::{apply_status, create, delete_if_exists};
use crate::reconcile::context::Context;
use crate::reconcile::error::Result;
use crate::reconcile::events::{self, EventSpec};

const CONTROLLER: &str = "modelversion";
/// A foreign object is not watched (nothing links it to the version): look again this often.
const FOREIGN_RECHECK: Duration = Duration::from_secs(15);

/// Runs the controller until `shutdown` resolves.
pub async fn run(client: Client, ctx: Arc<Context>, shutdown: crate::reconcile::Shutdown) {
    let controller = Controller::new(
        Api::<ModelVersion>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Job>::all(client), watcher::Config::default());
    crate::reconcile::drive(controller, CONTROLLER, reconcile, ctx, shutdown).await;
}

async fn reconcile(mv: Arc<ModelVersion>, ctx: Arc<Context>) -> Result<Action> {
    if verify::is_final(&mv) {
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();
    let settings = &ctx.settings;
    let (config_map, job) = match verify::build(&mv, &settings.verifier_image, &settings.host_paths)
    {
        Ok(objects) => objects,
        Err(e) => {
            write_status(&mv, verify::status(&mv, Err(&e), now), &ctx).await?;
            return Ok(Action::await_change());
        }
    };
    let job = match ensure_own(&mv, &ctx, &config_map, &job, now).await? {
        ControlFlow::Continue(job) => job,
        ControlFlow::Break(action) => return Ok(action),
    };
    let pods = verification_pods(&mv, &ctx).await?;
    let outcome = verify::outcome(&job, &pods);
    write_status(&mv, verify::status(&mv, Ok(&outcome), now), &ctx).await?;
    Ok(match outcome {
        Outcome::Running => Action::requeue(Duration::from_secs(10)),
        _ => Action::await_change(),
    })
}

/// Makes sure the ConfigMap and the Job under the verification name are the version's own: creates
/// what is missing and continues with the Job, or stops with the action for a stale or foreign object.
async fn ensure_own(
    mv: &ModelVersion,
    ctx: &Context,
    config_map: &ConfigMap,
    job: &Job,
    now: Timestamp,
) -> Result<ControlFlow<Action, Job>> {
    let ns = mv.namespace().unwrap_or_default();
    let uid = mv.uid().unwrap_or_default();
    let config_maps = Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns);
    let found = config_maps.get_opt(&config_map.name_any()).await?;
    match ownership::judge_config_map(&uid, config_map, found.as_ref()) {
        Found::Missing => drop(create(&config_maps, config_map).await?),
        Found::Own => {}
        Found::Stale(why) => return replace(&config_maps, config_map, why, mv, ctx).await,
        Found::Foreign(why) => return foreign(mv, why, now, ctx).await,
    }
    let jobs = Api::<Job>::namespaced(ctx.client.clone(), &ns);
    let found = jobs.get_opt(&job.name_any()).await?;
    Ok(ControlFlow::Continue(
        match (ownership::judge_job(&uid, job, found.as_ref()), found) {
            (Found::Own, Some(existing)) => existing,
            (Found::Stale(why), _) => return replace(&jobs, job, why, mv, ctx).await,
            (Found::Foreign(why), _) => return foreign(mv, why, now, ctx).await,
            (Found::Missing | Found::Own, _) => create(&jobs, job).await?,
        },
    ))
}

/// The pods of the version's verification Job (the verdict reads their termination messages).
async fn verification_pods(mv: &ModelVersion, ctx: &Context) -> Result<Vec<Pod>> {
    let selector = format!(
        "{}={}",
        names::LABEL_VERIFIES,
        names::label_value(&mv.name_any())
    );
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &mv.namespace().unwrap_or_default())
        .list(&ListParams::default().labels(&selector))
        .await?;
    Ok(pods.items)
}

/// Deletes a stale own object; the next reconcile creates it anew.
async fn replace<K, T>(
    api: &Api<K>,
    obj: &K,
    why: String,
    mv: &ModelVersion,
    ctx: &Context,
) -> Result<ControlFlow<Action, T>>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    tracing::info!(model_version = %mv.name_any(), object = %obj.name_any(), "replacing a stale verification object");
    delete_if_exists(api, &obj.name_any()).await?;
    let event = EventSpec::normal("ReplacingVerificationObject", why);
    events::publish(ctx, mv, event).await;
    Ok(ControlFlow::Break(Action::requeue(Duration::from_secs(2))))
}

/// Reports an object under the verification name that the version does not control.
async fn foreign<T>(
    mv: &ModelVersion,
    why: String,
    now: Timestamp,
    ctx: &Context,
) -> Result<ControlFlow<Action, T>> {
    tracing::warn!(model_version = %mv.name_any(), "verification name taken by an object the version does not control");
    let status = verify::status(mv, Ok(&Outcome::Foreign(why)), now);
    write_status(mv, status, ctx).await?;
    Ok(ControlFlow::Break(Action::requeue(FOREIGN_RECHECK)))
}

/// Writes `status` if it changed, then the Event [`verify::event`] derives from the change.
async fn write_status(mv: &ModelVersion, status: ModelVersionStatus, ctx: &Context) -> Result<()> {
    if mv.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api =
        Api::<ModelVersion>::namespaced(ctx.client.clone(), &mv.namespace().unwrap_or_default());
    apply_status(&api, &mv.name_any(), &status).await?;
    if let Some(event) = verify::event(mv.status.as_ref(), &status) {
        tracing::info!(model_version = %mv.name_any(), phase = ?status.phase, reason = %event.reason, "model version verification changed");
        events::publish(ctx, mv, event).await;
    }
    Ok(())
}
