//! Pure pod pieces shared by every workload the operator builds — the verification Job
//! ([`crate::model_version::verify`]), the endpoint Deployments ([`crate::endpoint::workload`]), and
//! the training and evaluation pods to come — so that each of them runs with the same restrictions
//! and sees the model at the same paths.
//!
//! A builder takes the restricted security contexts ([`restricted_pod`], [`restricted_container`]),
//! the artifact volume of a [`Source`] and its read-only mount at [`ARTIFACT_MOUNT`], the digest
//! manifest's ConfigMap volume and mount at [`MANIFEST_MOUNT`], and converts the CRDs' resources and
//! tolerations into their Kubernetes types; nothing here reads the cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, EnvVar, EnvVarSource, HTTPGetAction, HostPathVolumeSource,
    ObjectFieldSelector, PersistentVolumeClaimVolumeSource, PodSecurityContext, Probe,
    ResourceRequirements, SeccompProfile, SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::artifact::Source;

/// Where the artifact is mounted in every container that reads it.
pub const ARTIFACT_MOUNT: &str = "/artifact";
/// Where the digest manifest ConfigMap is mounted.
pub const MANIFEST_MOUNT: &str = "/manifest";
/// The manifest's key in its ConfigMap, so its file name under [`MANIFEST_MOUNT`].
pub const MANIFEST_FILE: &str = "manifest.json";
/// User and group every Anshin container runs as.
const USER: i64 = 65532;

/// Pod security context every Anshin workload runs with: non-root, RuntimeDefault seccomp.
pub fn restricted_pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(USER),
        run_as_group: Some(USER),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// Container security context: no privilege escalation, read-only root, no capabilities.
pub fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..SecurityContext::default()
    }
}

/// The volume holding the artifact, and the model path inside the container.
pub fn artifact_volume(source: &Source) -> (Volume, String) {
    let mut volume = Volume {
        name: "artifact".into(),
        ..Volume::default()
    };
    let model_path = match source {
        Source::Pvc { claim, path } => {
            volume.persistent_volume_claim = Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: Some(true),
            });
            if path.is_empty() {
                ARTIFACT_MOUNT.to_owned()
            } else {
                format!("{ARTIFACT_MOUNT}/{path}")
            }
        }
        Source::HostPath { path } => {
            volume.host_path = Some(HostPathVolumeSource {
                path: path.clone(),
                type_: Some("Directory".into()),
            });
            ARTIFACT_MOUNT.to_owned()
        }
    };
    (volume, model_path)
}

/// The volume of the digest manifest held by the ConfigMap `config_map`.
pub fn manifest_volume(config_map: &str) -> Volume {
    Volume {
        name: "manifest".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map.to_owned(),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// The read-only mounts of the artifact and the manifest volumes, in that order.
pub fn model_mounts() -> Vec<VolumeMount> {
    vec![
        read_only_mount("artifact", ARTIFACT_MOUNT),
        read_only_mount("manifest", MANIFEST_MOUNT),
    ]
}

/// The manifest's path inside the container.
pub fn manifest_path() -> String {
    format!("{MANIFEST_MOUNT}/{MANIFEST_FILE}")
}

fn read_only_mount(volume: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

/// Kubernetes resource requests and limits from the CRDs' (an empty map stays unset).
pub fn resources(r: &anshin_crds::common::Resources) -> ResourceRequirements {
    let convert = |m: &BTreeMap<String, anshin_crds::common::Quantity>| {
        (!m.is_empty()).then(|| {
            m.iter()
                .map(|(k, v)| (k.clone(), Quantity(v.0.clone())))
                .collect()
        })
    };
    ResourceRequirements {
        requests: convert(&r.requests),
        limits: convert(&r.limits),
        ..ResourceRequirements::default()
    }
}

/// Kubernetes tolerations from the CRDs' (`None` when there are none).
pub fn tolerations(ts: &[anshin_crds::common::Toleration]) -> Option<Vec<Toleration>> {
    (!ts.is_empty()).then(|| ts.iter().map(toleration).collect())
}

fn toleration(t: &anshin_crds::common::Toleration) -> Toleration {
    Toleration {
        key: t.key.clone(),
        operator: Some(format!("{:?}", t.operator)),
        value: t.value.clone(),
        effect: t.effect.map(|e| format!("{e:?}")),
        toleration_seconds: t.toleration_seconds,
    }
}

/// An HTTP GET probe of `path` on `port`, every `period` seconds, failing after `failures` misses
/// (each may take 2 s).
pub fn http_probe(path: &str, port: i32, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(port),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

/// An environment variable set from the pod's own field `path` (e.g. `status.podIP`).
pub fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}
