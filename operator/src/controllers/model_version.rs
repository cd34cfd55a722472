//! ModelVersion controller: runs the verification Job and records its verdict.
//!
//! read (the version, its Job and the Job's pods) → `verify::build` / `verify::outcome` /
//! `verify::status` (pure) → apply the ConfigMap and Job → write status only when it changed.

use std::sync::Arc;
use std::time::Duration;

use anshin_crds::ModelVersion;
use anshin_crds::model_version::ModelVersionPhase;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::context::{Context, apply, apply_status};
use crate::error::Result;
use crate::names;
use crate::verify::{self, Outcome};

const CONTROLLER: &str = "modelversion";

/// Runs the controller until `shutdown` resolves.
pub async fn run(client: Client, ctx: Arc<Context>, shutdown: super::Shutdown) {
    let controller = Controller::new(
        Api::<ModelVersion>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Job>::all(client), watcher::Config::default());
    super::drive(controller, CONTROLLER, reconcile, ctx, shutdown).await;
}

async fn reconcile(mv: Arc<ModelVersion>, ctx: Arc<Context>) -> Result<Action> {
    if verify::is_final(&mv) {
        return Ok(Action::await_change());
    }
    let ns = mv.namespace().unwrap_or_default();
    let now = Timestamp::now();
    let (config_map, job) = match verify::build(&mv, &ctx.settings.inference_image) {
        Ok(objects) => objects,
        Err(e) => {
            let status = verify::status(&mv, Err(&e), now);
            write_status(&mv, status, &ctx).await?;
            return Ok(Action::await_change());
        }
    };
    apply(
        &Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns),
        &config_map,
    )
    .await?;
    let jobs = Api::<Job>::namespaced(ctx.client.clone(), &ns);
    let job = match jobs.get_opt(&job.name_any()).await? {
        Some(existing) => existing,
        None => apply(&jobs, &job).await?,
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
    let status = verify::status(&mv, Ok(&outcome), now);
    write_status(&mv, status, &ctx).await?;
    Ok(match outcome {
        Outcome::Running => Action::requeue(Duration::from_secs(10)),
        _ => Action::await_change(),
    })
}

async fn write_status(
    mv: &ModelVersion,
    status: anshin_crds::model_version::ModelVersionStatus,
    ctx: &Context,
) -> Result<()> {
    let old_phase = mv.status.as_ref().map(|s| s.phase);
    if mv.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api =
        Api::<ModelVersion>::namespaced(ctx.client.clone(), &mv.namespace().unwrap_or_default());
    apply_status(&api, &mv.name_any(), &status).await?;
    if old_phase != Some(status.phase) {
        let message = status
            .conditions
            .iter()
            .find(|c| c.type_ == verify::ARTIFACT_VERIFIED)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        let type_ = if status.phase == ModelVersionPhase::Rejected {
            EventType::Warning
        } else {
            EventType::Normal
        };
        tracing::info!(model_version = %mv.name_any(), phase = ?status.phase, "model version phase changed");
        ctx.event(mv, type_, &format!("{:?}", status.phase), message)
            .await;
    }
    Ok(())
}
