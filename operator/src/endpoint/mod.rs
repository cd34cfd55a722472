//! InferenceEndpoint controller: a Deployment and Service per served version, the routing table in
//! status, and blue/green version changes.
//!
//! Pipeline of [`reconcile`]: observe (the endpoint, its target and served ModelVersions, its
//! Deployments) → decide ([`rollout::decide`], pure, plus the `NotActedOn` condition for fields the
//! operator does not act on yet: autoscaling, canary) → build and apply the backend key Secret and
//! NetworkPolicy ([`backend_access`]) → build ([`workload`], pure) and apply the Deployments/Services
//! of the versions to serve, delete the rest → status if changed, with the Events
//! [`events::derive`] derives from the old and new status.

pub mod backend_access;
pub mod canary;
pub mod events;
pub mod rollout;
pub mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anshin_crds::inference_endpoint::InferenceEndpointStatus;
use anshin_crds::labels::{backend_key_secret, owned_by};
use anshin_crds::model_version::ModelVersionPhase;
use anshin_crds::{InferenceEndpoint, ModelVersion};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};

use self::rollout::{Decision, Observed, Target, VersionPods};
use crate::names;
use crate::reconcile::apply::{apply, apply_status, delete_if_exists};
use crate::reconcile::context::Context;
use crate::reconcile::error::{Error, Result};
use crate::reconcile::events::{publish_all, warn_not_acted_on};
use crate::reconcile::not_acted_on;
use crate::tenant::keys;

const CONTROLLER: &str = "inferenceendpoint";

/// Runs the controller until `shutdown` resolves.
pub async fn run(client: Client, ctx: Arc<Context>, shutdown: crate::reconcile::Shutdown) {
    let endpoints = Api::<InferenceEndpoint>::all(client.clone());
    let controller = Controller::new(endpoints, watcher::Config::default());
    let store = controller.store();
    let controller = controller
        .owns(
            Api::<Deployment>::all(client.clone()),
            watcher::Config::default(),
        )
        .watches(
            Api::<ModelVersion>::all(client),
            watcher::Config::default(),
            move |mv| {
                // A version becoming servable (or rejected) concerns every endpoint that names it.
                let ns = mv.namespace();
                store
                    .state()
                    .into_iter()
                    .filter(|ie| ie.namespace() == ns && ie.spec.model_version == mv.name_any())
                    .map(|ie| ObjectRef::from_obj(ie.as_ref()))
                    .collect::<Vec<_>>()
            },
        );
    crate::reconcile::drive(controller, CONTROLLER, reconcile, ctx, shutdown).await;
}

/// What the reconcile read: the decision's input, the ModelVersions it names, the endpoint's Deployments.
struct Observation {
    observed: Observed,
    versions: BTreeMap<String, ModelVersion>,
    owned: Vec<Deployment>,
}

async fn reconcile(ie: Arc<InferenceEndpoint>, ctx: Arc<Context>) -> Result<Action> {
    let Observation {
        observed,
        versions,
        owned,
    } = observe(&ie, &ctx).await?;
    let decision = decide(&ie, &observed);
    ensure_backend_access(&ie, &ctx).await?;
    apply_workloads(&ie, &ctx, &decision, &versions, &owned).await?;
    report(&ie, &ctx, &observed.status, &decision.status).await?;
    Ok(Action::requeue(next_look(&decision)))
}

/// Reads the endpoint's target, stable, canary and retiring ModelVersions and its Deployments.
async fn observe(ie: &InferenceEndpoint, ctx: &Context) -> Result<Observation> {
    let ns = ie
        .namespace()
        .ok_or_else(|| Error::Invalid("InferenceEndpoint without a namespace".into()))?;
    let name = ie.name_any();
    let mvs = Api::<ModelVersion>::namespaced(ctx.client.clone(), &ns);
    let deployments = Api::<Deployment>::namespaced(ctx.client.clone(), &ns);
    let status = ie.status.clone().unwrap_or_default();
    let mut candidates: BTreeSet<String> = status
        .retiring
        .iter()
        .map(|r| r.model_version.clone())
        .collect();
    candidates.extend(
        status
            .stable_version
            .iter()
            .chain(status.canary_version.iter())
            .cloned(),
    );
    candidates.insert(ie.spec.model_version.clone());
    let mut versions = BTreeMap::new();
    for v in &candidates {
        if let Some(mv) = mvs.get_opt(v).await? {
            versions.insert(v.clone(), mv);
        }
    }
    let owned = deployments
        .list(&ListParams::default().labels(&workload::endpoint_selector(&name)))
        .await?
        .items;
    let pods = pods_by_version(&name, &candidates, &owned);
    let observed = Observed {
        endpoint: name,
        generation: ie.metadata.generation,
        target_name: ie.spec.model_version.clone(),
        target: target_of(versions.get(&ie.spec.model_version)),
        status,
        pods,
        digests: versions
            .iter()
            .filter_map(|(k, mv)| Some((k.clone(), mv.status.as_ref()?.digest.clone()?)))
            .collect(),
        replicas: rollout::replicas(&ie.spec.replicas),
        drain: SignedDuration::from_secs(i64::from(
            ie.spec.runtime.drain_timeout_seconds + workload::PRE_STOP_SECONDS,
        )),
        now: Timestamp::now(),
    };
    Ok(Observation {
        observed,
        versions,
        owned,
    })
}

/// The rollout decision, with the fields the operator does not act on yet named in its status (pure).
fn decide(ie: &InferenceEndpoint, observed: &Observed) -> Decision {
    let mut decision = rollout::decide(observed);
    not_acted_on::mark(
        &mut decision.status.conditions,
        &not_acted_on::inference_endpoint(&ie.spec),
        ie.metadata.generation,
        observed.now,
    );
    decision
}

/// When to look again without a change: when a drain window ends, soon while a rollout is under way.
fn next_look(decision: &Decision) -> Duration {
    let busy = decision.status.canary_version.is_some() || !decision.status.retiring.is_empty();
    let next = decision
        .requeue_after
        .map(|d| d.unsigned_abs())
        .unwrap_or(Duration::from_secs(if busy { 5 } else { 300 }));
    next.max(Duration::from_millis(500))
}

fn target_of(mv: Option<&ModelVersion>) -> Target {
    let Some(mv) = mv else { return Target::Missing };
    let status = mv.status.clone().unwrap_or_default();
    match status.phase {
        ModelVersionPhase::Verified | ModelVersionPhase::Approved => {
            Target::Servable(status.digest)
        }
        ModelVersionPhase::Rejected => {
            let why = status
                .conditions
                .iter()
                .find(|c| !c.is_true())
                .map(|c| c.message.clone())
                .unwrap_or_default();
            Target::Rejected(why)
        }
        phase => Target::NotVerified(phase),
    }
}

/// Observed pods per version, matching Deployments to versions by their labels.
fn pods_by_version(
    endpoint: &str,
    versions: &BTreeSet<String>,
    owned: &[Deployment],
) -> BTreeMap<String, VersionPods> {
    let mut out = BTreeMap::new();
    for d in owned {
        let Some(label) = d.labels().get(names::LABEL_MODEL_VERSION) else {
            continue;
        };
        let Some(version) = versions.iter().find(|v| names::label_value(v) == *label) else {
            continue;
        };
        if d.name_any() != names::version_workload(endpoint, version) {
            continue;
        }
        let s = d.status.clone().unwrap_or_default();
        out.insert(
            version.clone(),
            VersionPods {
                replicas: s.replicas.unwrap_or(0),
                ready: s.ready_replicas.unwrap_or(0),
            },
        );
    }
    out
}

/// Mints the endpoint's backend key once (never rewritten) and applies its NetworkPolicy.
async fn ensure_backend_access(ie: &InferenceEndpoint, ctx: &Context) -> Result<()> {
    let ns = ie.namespace().unwrap_or_default();
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), &ns);
    let name = backend_key_secret(&ie.name_any());
    match secrets.get_opt(&name).await? {
        None => {
            let secret = backend_access::key_secret(ie, &keys::mint_key());
            match secrets.create(&PostParams::default(), &secret).await {
                // Created meanwhile by another reconcile of this endpoint: checked on the next pass.
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Some(s) if owned_by(&s.metadata, ie.meta().uid.as_deref()) => {}
        Some(_) => {
            return Err(Error::NameTaken(format!(
                "Secret {name} exists and is not owned by this InferenceEndpoint, so its model \
                 servers cannot get a backend key: delete or rename that Secret"
            )));
        }
    }
    let policy = backend_access::network_policy(ie, &ctx.settings.network);
    apply(
        &Api::<NetworkPolicy>::namespaced(ctx.client.clone(), &ns),
        &policy,
    )
    .await?;
    Ok(())
}

async fn apply_workloads(
    ie: &InferenceEndpoint,
    ctx: &Context,
    decision: &Decision,
    versions: &BTreeMap<String, ModelVersion>,
    owned: &[Deployment],
) -> Result<()> {
    let ns = ie.namespace().unwrap_or_default();
    let deployments = Api::<Deployment>::namespaced(ctx.client.clone(), &ns);
    let services = Api::<Service>::namespaced(ctx.client.clone(), &ns);
    let mut keep = BTreeSet::new();
    for (version, replicas) in &decision.serve {
        let workload_name = names::version_workload(&ie.name_any(), version);
        keep.insert(workload_name);
        // A served version whose ModelVersion was deleted keeps its running Deployment as it is.
        let Some(mv) = versions.get(version) else {
            continue;
        };
        let deployment =
            workload::deployment(ie, mv, *replicas).map_err(|e| Error::Invalid(e.to_string()))?;
        apply(&deployments, &deployment).await?;
        apply(&services, &workload::service(ie, version)).await?;
    }
    for d in owned.iter().filter(|d| !keep.contains(&d.name_any())) {
        tracing::info!(endpoint = %ie.name_any(), deployment = %d.name_any(), "removing drained version");
        delete_if_exists(&deployments, &d.name_any()).await?;
        delete_if_exists(&services, &d.name_any()).await?;
    }
    Ok(())
}

/// Writes the new status if it changed, then the Events derived from the change.
async fn report(
    ie: &InferenceEndpoint,
    ctx: &Context,
    old: &InferenceEndpointStatus,
    new: &InferenceEndpointStatus,
) -> Result<()> {
    if ie.status.as_ref() == Some(new) {
        return Ok(());
    }
    let api = Api::<InferenceEndpoint>::namespaced(
        ctx.client.clone(),
        &ie.namespace().unwrap_or_default(),
    );
    apply_status(&api, &ie.name_any(), new).await?;
    warn_not_acted_on(ctx, ie, &old.conditions, &new.conditions).await;
    if new.stable_version != old.stable_version
        && let Some(s) = &new.stable_version
    {
        tracing::info!(endpoint = %ie.name_any(), stable = %s, "traffic switched");
    }
    publish_all(ctx, ie, events::derive(old, new)).await;
    Ok(())
}
