//! Who may call an endpoint's model servers (pure): only the gateway, which holds the endpoint's
//! backend key, and the monitoring namespace for `/metrics`.
//!
//! Each InferenceEndpoint gets a Secret with a backend key (minted once, owned by the endpoint, named
//! and labelled by the shared contract in [`anshin_crds::labels`] so the gateway finds it); its pods
//! mount it and start the model server with `--api-key-file`, so every API route but the health
//! checks needs that key. A NetworkPolicy admits traffic to the model port only from gateway pods and
//! the monitoring namespace: defence in depth where the network plugin enforces NetworkPolicy (the key
//! check works without one).

use std::collections::BTreeMap;

use anshin_crds::InferenceEndpoint;
use anshin_crds::labels::{
    LABEL_BACKEND_KEY, LABEL_ENDPOINT, LABEL_MANAGED_BY, SECRET_KEY_FIELD, backend_key_secret,
    label_value,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, SecretVolumeSource, Volume, VolumeMount};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::names::{self, FIELD_MANAGER, SERVER_PORT};

/// Directory where pods mount their endpoint's backend key Secret.
pub const KEY_DIR: &str = "/var/run/anshin/backend-key";
/// Standard label on a namespace naming it (set by Kubernetes 1.21 and later).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Where the model servers' callers run.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkSettings {
    /// Namespace of the gateway pods.
    pub gateway_namespace: String,
    /// Labels of the gateway pods.
    pub gateway_labels: BTreeMap<String, String>,
    /// Namespace allowed to scrape the model servers' `/metrics` (`None`: none).
    pub monitoring_namespace: Option<String>,
}

/// The model-server argument that makes every API route need the endpoint's backend key.
pub fn api_key_arg() -> String {
    format!("--api-key-file={KEY_DIR}/{SECRET_KEY_FIELD}")
}

/// The pod volume holding the backend key (read-only, readable only by the pod's user and group).
pub fn key_volume(ie: &InferenceEndpoint) -> (Volume, VolumeMount) {
    let volume = Volume {
        name: "backend-key".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(backend_key_secret(&ie.name_any())),
            default_mode: Some(0o440),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    };
    let mount = VolumeMount {
        name: "backend-key".into(),
        mount_path: KEY_DIR.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    (volume, mount)
}

/// The Secret holding `ie`'s backend key `key` (create it once; a key is never rewritten).
pub fn key_secret(ie: &InferenceEndpoint, key: &str) -> Secret {
    let labels = BTreeMap::from([
        (LABEL_BACKEND_KEY.to_owned(), label_value(&ie.name_any())),
        (LABEL_MANAGED_BY.to_owned(), FIELD_MANAGER.to_owned()),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(backend_key_secret(&ie.name_any())),
            namespace: ie.namespace(),
            labels: Some(labels),
            owner_references: ie.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            SECRET_KEY_FIELD.to_owned(),
            ByteString(key.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

/// The NetworkPolicy of `ie`'s pods: ingress to the model port from gateway pods and, when set, the
/// monitoring namespace; nothing else.
pub fn network_policy(ie: &InferenceEndpoint, net: &NetworkSettings) -> NetworkPolicy {
    let namespace = |ns: &str| LabelSelector {
        match_labels: Some(BTreeMap::from([(
            NAMESPACE_NAME_LABEL.to_owned(),
            ns.to_owned(),
        )])),
        ..LabelSelector::default()
    };
    let mut from = vec![NetworkPolicyPeer {
        namespace_selector: Some(namespace(&net.gateway_namespace)),
        pod_selector: Some(LabelSelector {
            match_labels: Some(net.gateway_labels.clone()),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    }];
    if let Some(ns) = &net.monitoring_namespace {
        from.push(NetworkPolicyPeer {
            namespace_selector: Some(namespace(ns)),
            ..NetworkPolicyPeer::default()
        });
    }
    let endpoint = label_value(&ie.name_any());
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(names::network_policy(&ie.name_any())),
            namespace: ie.namespace(),
            labels: Some(BTreeMap::from([
                (LABEL_ENDPOINT.to_owned(), endpoint.clone()),
                (LABEL_MANAGED_BY.to_owned(), FIELD_MANAGER.to_owned()),
            ])),
            owner_references: ie.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(LABEL_ENDPOINT.to_owned(), endpoint)])),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(from),
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::Int(SERVER_PORT)),
                    protocol: Some("TCP".into()),
                    ..NetworkPolicyPort::default()
                }]),
            }]),
            ..NetworkPolicySpec::default()
        }),
    }
}
