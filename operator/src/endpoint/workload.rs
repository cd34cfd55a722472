//! The Deployment and Service of one served version of an InferenceEndpoint (pure).
//!
//! Zero-downtime rules live here: `maxUnavailable: 0`, readiness on `/readyz` (ready only after the model
//! loaded and a warm-up generation ran), liveness on `/healthz`, a preStop pause so the gateway stops
//! routing to a pod before it gets SIGTERM, and a grace period longer than the server's drain timeout.
//! Every pod mounts its endpoint's backend key and needs it on every API route
//! ([`crate::endpoint::backend_access`]).

use std::collections::BTreeMap;

use anshin_crds::InferenceEndpoint;
use anshin_crds::model_version::{ArtifactFormat, ModelVersion};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, ExecAction, Lifecycle, LifecycleHandler, PodSecurityContext,
    PodSpec, PodTemplateSpec, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use super::backend_access;
use crate::artifact::{SourceError, parse_source};
use crate::model_version::verify;
use crate::names::{self, SERVER_PORT};
use crate::pods::{self, field_env, http_probe, restricted_container, restricted_pod};

/// Seconds a terminating pod keeps serving before SIGTERM, so the gateway sees it unready first.
pub const PRE_STOP_SECONDS: i32 = 5;

/// The labels of one version's pods; the gateway selects backends by them.
pub fn version_labels(endpoint: &str, model_version: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            names::LABEL_ENDPOINT.to_owned(),
            names::label_value(endpoint),
        ),
        (
            names::LABEL_MODEL_VERSION.to_owned(),
            names::label_value(model_version),
        ),
    ])
}

/// The label selector string (`k=v,k=v`) of one version's pods, as published in the routing table.
pub fn version_selector(endpoint: &str, model_version: &str) -> String {
    version_labels(endpoint, model_version)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The label selector string of all the endpoint's pods (for the scale subresource).
pub fn endpoint_selector(endpoint: &str) -> String {
    format!("{}={}", names::LABEL_ENDPOINT, names::label_value(endpoint))
}

fn meta(ie: &InferenceEndpoint, model_version: &str) -> ObjectMeta {
    let mut labels = version_labels(&ie.name_any(), model_version);
    labels.insert(
        names::LABEL_MANAGED_BY.to_owned(),
        names::FIELD_MANAGER.to_owned(),
    );
    ObjectMeta {
        name: Some(names::version_workload(&ie.name_any(), model_version)),
        namespace: ie.namespace(),
        labels: Some(labels),
        owner_references: ie.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// The Deployment serving `mv` for endpoint `ie` with `replicas` pods.
pub fn deployment(
    ie: &InferenceEndpoint,
    mv: &ModelVersion,
    replicas: i32,
) -> Result<Deployment, SourceError> {
    let source = parse_source(&mv.spec.artifact.uri)?;
    let (artifact, dir) = pods::artifact_volume(&source);
    let model_path = match mv.spec.artifact.format {
        ArtifactFormat::HuggingFace => dir,
        ArtifactFormat::Gguf => {
            let file = mv
                .spec
                .artifact
                .files
                .iter()
                .find(|f| f.path.ends_with(".gguf"))
                .map(|f| f.path.as_str());
            format!("{dir}/{}", file.unwrap_or("model.gguf"))
        }
    };
    let manifest = pods::manifest_volume(&verify::object_name(mv));
    let labels = version_labels(&ie.name_any(), &mv.name_any());
    let runtime = &ie.spec.runtime;
    let (key, key_mount) = backend_access::key_volume(ie);
    let mut container = server_container(ie, mv, model_path);
    container
        .volume_mounts
        .get_or_insert_default()
        .push(key_mount);
    let pod = PodSpec {
        containers: vec![container],
        volumes: Some(vec![artifact, manifest, key]),
        node_selector: (!runtime.node_selector.is_empty()).then(|| runtime.node_selector.clone()),
        tolerations: pods::tolerations(&runtime.tolerations),
        termination_grace_period_seconds: Some(i64::from(
            runtime.drain_timeout_seconds + PRE_STOP_SECONDS + 10,
        )),
        // The backend key is mode 0440: readable by the server through the pod's group.
        security_context: Some(PodSecurityContext {
            fs_group: restricted_pod().run_as_group,
            ..restricted_pod()
        }),
        automount_service_account_token: Some(false),
        ..PodSpec::default()
    };
    Ok(Deployment {
        metadata: meta(ie, &mv.name_any()),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(ie.spec.rollout.max_surge)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    })
}

fn server_container(ie: &InferenceEndpoint, mv: &ModelVersion, model_path: String) -> Container {
    let runtime = &ie.spec.runtime;
    let mut args = vec![
        "serve".to_owned(),
        format!("--model={model_path}"),
        format!("--manifest={}", pods::manifest_path()),
        format!("--listen=$(POD_IP):{SERVER_PORT}"),
        format!("--model-id={}", ie.name_any()),
        format!("--drain-timeout={}s", runtime.drain_timeout_seconds),
        backend_access::api_key_arg(),
    ];
    args.extend(runtime.args.iter().cloned());
    Container {
        name: "server".into(),
        image: Some(runtime.image.clone()),
        args: Some(args),
        env: Some(vec![
            field_env("POD_IP", "status.podIP"),
            field_env("POD_NAME", "metadata.name"),
            EnvVar {
                name: "ANSHIN_MODEL_VERSION".into(),
                value: Some(mv.name_any()),
                ..EnvVar::default()
            },
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: SERVER_PORT,
            // Server-side apply needs the list-map key spelled out on older servers.
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(http_probe("/readyz", SERVER_PORT, 1, 1)),
        liveness_probe: Some(http_probe("/healthz", SERVER_PORT, 10, 3)),
        // Loading weights can take minutes: liveness only starts once the server answers at all.
        startup_probe: Some(http_probe("/healthz", SERVER_PORT, 2, 300)),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(vec!["sleep".into(), PRE_STOP_SECONDS.to_string()]),
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        resources: Some(pods::resources(&runtime.resources)),
        volume_mounts: Some(pods::model_mounts()),
        security_context: Some(restricted_container()),
        ..Container::default()
    }
}

/// The ClusterIP Service of one served version.
pub fn service(ie: &InferenceEndpoint, model_version: &str) -> Service {
    Service {
        metadata: meta(ie, model_version),
        spec: Some(ServiceSpec {
            selector: Some(version_labels(&ie.name_any(), model_version)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: SERVER_PORT,
                protocol: Some("TCP".into()),
                target_port: Some(IntOrString::Int(SERVER_PORT)),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}
