//! The routing snapshot built from Kubernetes objects — a pure function, unit-tested without a
//! server. Inputs: InferenceEndpoint `status.routing` (versions, digests, weights, pod selectors,
//! ports) and `spec.guardrails`; Tenant `spec` (endpoints, limits, key names); key Secrets
//! (`<tenant>-key-<name>`, labels `anshin.dev/tenant` and `anshin.dev/key-name`, data `api-key`);
//! Pods (a version's backends are its pods matching the selector with condition Ready=True, at
//! `status.podIP:port`). A key is valid only while its Secret exists and its name is still listed in
//! the Tenant. Endpoints are named by `metadata.name`.

use std::collections::BTreeMap;
use std::sync::Arc;

use anshin_crds::inference_endpoint::GuardrailAction;
use anshin_crds::{InferenceEndpoint, Tenant as TenantCr};
use k8s_openapi::api::core::v1::{Pod, Secret};

use crate::keys::{KeyEntry, KeyRing, hash_key};
use crate::table::{Action, Endpoint, Limits, Policy, Snapshot, Tenant, Version};

/// Label on key Secrets naming the tenant.
pub const TENANT_LABEL: &str = "anshin.dev/tenant";
/// Label on key Secrets naming the key.
pub const KEY_NAME_LABEL: &str = "anshin.dev/key-name";
/// Data key of key Secrets holding the key string.
pub const KEY_DATA: &str = "api-key";

fn action(a: GuardrailAction) -> Action {
    match a {
        GuardrailAction::Redact => Action::Redact,
        GuardrailAction::Block => Action::Block,
        GuardrailAction::Off => Action::Off,
    }
}

/// Parses a `k=v,k2=v2` selector; `None` when it is empty or malformed (such a version gets no pods).
pub fn parse_selector(s: &str) -> Option<Vec<(String, String)>> {
    let pairs: Option<Vec<(String, String)>> = s
        .split(',')
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect();
    pairs.filter(|p| !p.is_empty() && p.iter().all(|(k, _)| !k.is_empty()))
}

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn backends(pods: &[Arc<Pod>], namespace: &str, selector: &str, port: i32) -> Vec<String> {
    let Some(sel) = parse_selector(selector) else {
        return Vec::new();
    };
    let mut out: Vec<String> = pods
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace) && is_ready(p))
        .filter(|p| {
            let labels = p.metadata.labels.as_ref();
            sel.iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        })
        .filter_map(|p| {
            p.status
                .as_ref()?
                .pod_ip
                .as_ref()
                .map(|ip| format!("{ip}:{port}"))
        })
        .collect();
    out.sort();
    out
}

fn endpoint(ie: &InferenceEndpoint, pods: &[Arc<Pod>]) -> Option<Endpoint> {
    let name = ie.metadata.name.clone()?;
    let ns = ie.metadata.namespace.clone().unwrap_or_default();
    let routing = ie
        .status
        .as_ref()
        .map(|s| s.routing.clone())
        .unwrap_or_default();
    let versions = routing
        .iter()
        .map(|r| Version {
            name: r.model_version.clone(),
            digest: r.digest.clone(),
            weight: u32::try_from(r.weight).unwrap_or(0),
            backends: backends(pods, &ns, &r.selector, r.port),
        })
        .collect();
    let g = &ie.spec.guardrails;
    Some(Endpoint {
        name,
        policy: Policy {
            input: action(g.input),
            output: action(g.output),
        },
        versions,
    })
}

fn limit(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn key_entries(t: &TenantCr, secrets: &[Arc<Secret>]) -> Vec<KeyEntry> {
    let (Some(name), Some(ns)) = (t.metadata.name.as_deref(), t.metadata.namespace.as_deref())
    else {
        return Vec::new();
    };
    t.spec
        .keys
        .iter()
        .filter_map(|k| {
            let secret = secrets.iter().find(|s| {
                let labels = s.metadata.labels.as_ref();
                s.metadata.namespace.as_deref() == Some(ns)
                    && s.metadata.name.as_deref() == Some(&format!("{name}-key-{}", k.name))
                    && labels.and_then(|l| l.get(TENANT_LABEL)).map(String::as_str) == Some(name)
                    && labels.and_then(|l| l.get(KEY_NAME_LABEL)) == Some(&k.name)
            })?;
            let raw = secret.data.as_ref()?.get(KEY_DATA)?;
            let key = std::str::from_utf8(&raw.0).ok()?.trim();
            (!key.is_empty()).then(|| KeyEntry {
                hash: hash_key(key),
                tenant: name.to_owned(),
                name: k.name.clone(),
            })
        })
        .collect()
}

/// Builds a snapshot from the objects the watchers hold.
pub fn build(
    ies: &[Arc<InferenceEndpoint>],
    tenants: &[Arc<TenantCr>],
    secrets: &[Arc<Secret>],
    pods: &[Arc<Pod>],
    peers: &[String],
) -> Snapshot {
    let mut snap = Snapshot {
        peers: peers.to_vec(),
        ..Snapshot::default()
    };
    let mut keys = Vec::new();
    for t in tenants {
        let Some(name) = t.metadata.name.clone() else {
            continue;
        };
        let l = &t.spec.limits;
        let limits = Limits {
            requests_per_minute: limit(l.requests_per_minute),
            tokens_per_minute: limit(l.tokens_per_minute),
            max_concurrent: limit(l.max_concurrent),
        };
        keys.extend(key_entries(t, secrets));
        snap.tenants.insert(
            name.clone(),
            Arc::new(Tenant::new(name, t.spec.endpoints.clone(), limits)),
        );
    }
    snap.keys = KeyRing::new(keys);
    snap.endpoints = ies
        .iter()
        .filter_map(|ie| endpoint(ie, pods))
        .map(|e| (e.name.clone(), Arc::new(e)))
        .collect::<BTreeMap<_, _>>();
    snap
}
