//! The routing snapshot built from Kubernetes objects — a pure function, unit-tested without a
//! server. Inputs: InferenceEndpoint `status.routing` (versions, digests, weights, pod selectors,
//! ports) and `spec.guardrails`; Tenant `spec` (endpoints, limits, key names); key Secrets (named and
//! labelled by the shared contract in [`anshin_crds::labels`], data `api-key`); Pods (a version's
//! backends are its pods matching the selector with condition Ready=True, at `status.podIP:port`).
//!
//! Every identity is namespaced (`namespace/name`): a Tenant reaches only endpoints of its own
//! namespace, so equal names in two namespaces never share routing, limits, cache scope or audit
//! identity. A key is valid only while its Secret exists in the Tenant's namespace, is owned by that
//! Tenant (owner reference UID: the label alone is a sanitised name that `a.b` and `a-b` share), and
//! its name is still listed in the Tenant. An endpoint's backend key (what its model servers require)
//! comes from the Secret the operator minted for it, owned by that InferenceEndpoint.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use anshin_crds::inference_endpoint::GuardrailAction;
use anshin_crds::labels::{
    LABEL_BACKEND_KEY, LABEL_KEY_NAME, LABEL_TENANT, SECRET_KEY_FIELD, backend_key_secret,
    key_secret, label_value, owned_by,
};
use anshin_crds::{InferenceEndpoint, Tenant as TenantCr};
use k8s_openapi::api::core::v1::{Pod, Secret};

use crate::keys::{KeyEntry, KeyRing, hash_key};
use crate::table::{
    Action, Endpoint, Limits, Peer, Policy, Snapshot, Tenant, Version, backend_auth, qualified,
};

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

/// Addresses (`podIP`) of the pods that exist and are neither being deleted nor finished, whatever
/// their readiness: the backends [`crate::last_good`] may keep serving.
pub fn present_pod_ips(pods: &[Arc<Pod>]) -> HashSet<String> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.status.as_ref())
        .filter(|s| !matches!(s.phase.as_deref(), Some("Succeeded" | "Failed")))
        .filter_map(|s| s.pod_ip.clone())
        .collect()
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

/// The key in the Secret `name` of `ns` that is owned by `owner_uid` and carries every `labels` pair.
fn owned_secret<'a>(
    secrets: &'a [Arc<Secret>],
    ns: &str,
    name: &str,
    owner_uid: Option<&str>,
    labels: &[(&str, &str)],
) -> Option<&'a str> {
    let s = secrets.iter().find(|s| {
        let has = |(k, v): &(&str, &str)| {
            let value = s.metadata.labels.as_ref().and_then(|l| l.get(*k));
            value.map(String::as_str) == Some(*v)
        };
        s.metadata.namespace.as_deref() == Some(ns)
            && s.metadata.name.as_deref() == Some(name)
            && owned_by(&s.metadata, owner_uid)
            && labels.iter().all(has)
    })?;
    let raw = s.data.as_ref()?.get(SECRET_KEY_FIELD)?;
    let key = std::str::from_utf8(&raw.0).ok()?.trim();
    (!key.is_empty()).then_some(key)
}

fn endpoint(
    ie: &InferenceEndpoint,
    pods: &[Arc<Pod>],
    secrets: &[Arc<Secret>],
) -> Option<Endpoint> {
    let name = ie.metadata.name.clone()?;
    let ns = ie.metadata.namespace.clone()?;
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
    let key = owned_secret(
        secrets,
        &ns,
        &backend_key_secret(&name),
        ie.metadata.uid.as_deref(),
        &[(LABEL_BACKEND_KEY, &label_value(&name))],
    );
    Some(Endpoint {
        backend_auth: key.and_then(backend_auth),
        id: qualified(Some(&ns), &name),
        namespace: Some(ns),
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

fn key_entries(t: &TenantCr, id: &str, secrets: &[Arc<Secret>]) -> Vec<KeyEntry> {
    let (Some(name), Some(ns)) = (t.metadata.name.as_deref(), t.metadata.namespace.as_deref())
    else {
        return Vec::new();
    };
    let label = label_value(name);
    t.spec
        .keys
        .iter()
        .filter_map(|k| {
            let secret_name = key_secret(name, &k.name);
            let labels = [(LABEL_TENANT, label.as_str()), (LABEL_KEY_NAME, &k.name)];
            let uid = t.metadata.uid.as_deref();
            let key = owned_secret(secrets, ns, &secret_name, uid, &labels)?;
            Some(KeyEntry {
                hash: hash_key(key),
                tenant: id.to_owned(),
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
    peers: &[Peer],
) -> Snapshot {
    let mut snap = Snapshot {
        peers: peers.to_vec(),
        ..Snapshot::default()
    };
    let mut keys = Vec::new();
    for t in tenants {
        let (Some(name), Some(ns)) = (t.metadata.name.as_deref(), t.metadata.namespace.clone())
        else {
            continue;
        };
        let l = &t.spec.limits;
        let limits = Limits {
            requests_per_minute: limit(l.requests_per_minute),
            tokens_per_minute: limit(l.tokens_per_minute),
            max_concurrent: limit(l.max_concurrent),
        };
        let tenant = Tenant::new(Some(ns), name, t.spec.endpoints.clone(), limits)
            .with_residency(t.spec.residency.clone());
        keys.extend(key_entries(t, &tenant.id, secrets));
        snap.tenants.insert(tenant.id.clone(), Arc::new(tenant));
    }
    snap.keys = KeyRing::new(keys);
    snap.endpoints = ies
        .iter()
        .filter_map(|ie| endpoint(ie, pods, secrets))
        .map(|e| (e.id.clone(), Arc::new(e)))
        .collect::<BTreeMap<_, _>>();
    snap
}
