//! ModelVersion controller: runs the verification Job and records its verdict.
//!
//! read (the version, its manifest ConfigMap, its Job and the Job's pods) → `verify::build` (pure) →
//! `ownership::judge_*` (pure: only the version's own objects count; a foreign one is reported and
//! left alone, a stale own one replaced) → create what is missing → `verify::outcome` /
//! `verify::status` (pure) → write status only when it changed.

pub mod ownership;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use anshin_crds::ModelVersion;
use anshin_crds::conditions::ConditionStatus;
use anshin_crds::model_version::ModelVersionStatus;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use self::ownership::Found;
use self::verify::Outcome;
use crate::names;
use crate::reconcile::context::{Context, apply_status, delete_if_exists};
use crate::reconcile::error::Result;

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
    let ns = mv.namespace().unwrap_or_default();
    let uid = mv.uid().unwrap_or_default();
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
    let config_maps = Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns);
    let found = config_maps.get_opt(&config_map.name_any()).await?;
    match ownership::judge_config_map(&uid, &config_map, found.as_ref()) {
        Found::Missing => drop(create(&config_maps, &config_map).await?),
        Found::Own => {}
        Found::Stale(why) => return replace(&config_maps, &config_map, why, &mv, &ctx).await,
        Found::Foreign(why) => return foreign(&mv, why, now, &ctx).await,
    }
    let jobs = Api::<Job>::namespaced(ctx.client.clone(), &ns);
    let found = jobs.get_opt(&job.name_any()).await?;
    let job = match (ownership::judge_job(&uid, &job, found.as_ref()), found) {
        (Found::Own, Some(existing)) => existing,
        (Found::Stale(why), _) => return replace(&jobs, &job, why, &mv, &ctx).await,
        (Found::Foreign(why), _) => return foreign(&mv, why, now, &ctx).await,
        (Found::Missing | Found::Own, _) => create(&jobs, &job).await?,
    };
    let selector = format!(
        "{}={}",
        names::LABEL_VERIFIES,
        names::label_value(&mv.name_any())
    );
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default().labels(&selector))
        .await?;
    let outcome = verify::outcome(&job, &pods.items);
    write_status(&mv, verify::status(&mv, Ok(&outcome), now), &ctx).await?;
    Ok(match outcome {
        Outcome::Running => Action::requeue(Duration::from_secs(10)),
        _ => Action::await_change(),
    })
}

/// Creates `obj` (never adopts: an object already under its name is judged first).
async fn create<K>(api: &Api<K>, obj: &K) -> Result<K>
where
    K: Resource + Clone + std::fmt::Debug + Serialize + DeserializeOwned,
{
    let params = PostParams {
        field_manager: Some(names::FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    Ok(api.create(&params, obj).await?)
}

/// Deletes a stale own object; the next reconcile creates it anew.
async fn replace<K>(
    api: &Api<K>,
    obj: &K,
    why: String,
    mv: &ModelVersion,
    ctx: &Context,
) -> Result<Action>
where
    K: Resource + Clone + std::fmt::Debug + DeserializeOwned,
{
    tracing::info!(model_version = %mv.name_any(), object = %obj.name_any(), "replacing a stale verification object");
    delete_if_exists(api, &obj.name_any()).await?;
    ctx.event(mv, EventType::Normal, "ReplacingVerificationObject", why)
        .await;
    Ok(Action::requeue(Duration::from_secs(2)))
}

/// Reports an object under the verification name that the version does not control.
async fn foreign(mv: &ModelVersion, why: String, now: Timestamp, ctx: &Context) -> Result<Action> {
    tracing::warn!(model_version = %mv.name_any(), "verification name taken by an object the version does not control");
    let status = verify::status(mv, Ok(&Outcome::Foreign(why)), now);
    write_status(mv, status, ctx).await?;
    Ok(Action::requeue(FOREIGN_RECHECK))
}

/// Writes `status` if it changed; an Event when the phase or the verification reason changed
/// (Warning, named by the reason, when verification is False; else Normal, named by the phase).
async fn write_status(mv: &ModelVersion, status: ModelVersionStatus, ctx: &Context) -> Result<()> {
    if mv.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api =
        Api::<ModelVersion>::namespaced(ctx.client.clone(), &mv.namespace().unwrap_or_default());
    apply_status(&api, &mv.name_any(), &status).await?;
    let summary = |s: &ModelVersionStatus| {
        let c = s
            .conditions
            .iter()
            .find(|c| c.type_ == verify::ARTIFACT_VERIFIED);
        (s.phase, c.map(|c| c.reason.clone()))
    };
    if mv.status.as_ref().map(summary) == Some(summary(&status)) {
        return Ok(());
    }
    let Some(condition) = status
        .conditions
        .iter()
        .find(|c| c.type_ == verify::ARTIFACT_VERIFIED)
    else {
        return Ok(());
    };
    let (type_, reason) = if condition.status == ConditionStatus::False {
        (EventType::Warning, condition.reason.clone())
    } else {
        (EventType::Normal, format!("{:?}", status.phase))
    };
    tracing::info!(model_version = %mv.name_any(), phase = ?status.phase, reason, "model version verification changed");
    ctx.event(mv, type_, &reason, condition.message.clone())
        .await;
    Ok(())
}
