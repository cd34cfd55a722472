//! The snapshot built from Kubernetes objects (pure; objects as the API server would return them).

use std::sync::Arc;

use anshin_crds::labels::{backend_key_secret, key_secret, label_value};
use anshin_crds::{InferenceEndpoint, Tenant};
use anshin_gateway::kube_table::build;
use anshin_gateway::table::{Action, Peer};
use k8s_openapi::api::core::v1::{Pod, Secret};
use serde_json::json;

fn ie() -> Arc<InferenceEndpoint> {
    ie_in("hosp")
}

fn ie_in(ns: &str) -> Arc<InferenceEndpoint> {
    Arc::new(serde_json::from_value(json!({
        "apiVersion": "anshin.dev/v1alpha1", "kind": "InferenceEndpoint",
        "metadata": {"name": "med", "namespace": ns, "uid": format!("uid-ie-{ns}")},
        "spec": {"modelVersion": "v2", "runtime": {"image": "anshin-inference"}, "replicas": {"min": 1},
                 "guardrails": {"input": "Block", "output": "Redact"}},
        "status": {"routing": [
            {"modelVersion": "v1", "digest": "sha256:aaa", "weight": 90, "selector": "app=med,version=v1", "port": 8000},
            {"modelVersion": "v2", "weight": 10, "selector": "app=med,version=v2", "port": 8000}]}
    })).expect("InferenceEndpoint"))
}

fn pod(name: &str, ns: &str, version: &str, ip: &str, ready: bool) -> Arc<Pod> {
    Arc::new(serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns, "labels": {"app": "med", "version": version}},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
    })).expect("Pod"))
}

fn tenant(keys: &[&str]) -> Arc<Tenant> {
    tenant_in("hosp", "hosp-a", json!(["med"]), keys)
}

fn tenant_in(ns: &str, name: &str, endpoints: serde_json::Value, keys: &[&str]) -> Arc<Tenant> {
    let keys: Vec<_> = keys.iter().map(|k| json!({"name": k})).collect();
    Arc::new(serde_json::from_value(json!({
        "apiVersion": "anshin.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{ns}-{name}")},
        "spec": {"displayName": "Hospital A", "endpoints": endpoints,
                 "limits": {"requestsPerMinute": 60, "tokensPerMinute": 1000, "maxConcurrent": 4}, "keys": keys}
    })).expect("Tenant"))
}

fn secret(key_name: &str, key: &str) -> Arc<Secret> {
    secret_in("hosp", "hosp-a", key_name, key, Some("uid-hosp-hosp-a"))
}

/// A key Secret named and labelled as the operator mints it, owned by `owner_uid` when given.
fn secret_in(
    ns: &str,
    tenant: &str,
    key_name: &str,
    key: &str,
    owner_uid: Option<&str>,
) -> Arc<Secret> {
    use base64_free::encode;
    let owners: Vec<_> = owner_uid
        .iter()
        .map(|uid| json!({"apiVersion": "anshin.dev/v1alpha1", "kind": "Tenant", "name": tenant, "uid": uid}))
        .collect();
    Arc::new(serde_json::from_value(json!({
        "metadata": {"name": key_secret(tenant, key_name), "namespace": ns, "ownerReferences": owners,
                     "labels": {"anshin.dev/tenant": label_value(tenant), "anshin.dev/key-name": key_name}},
        "data": {"api-key": encode(key.as_bytes())}
    })).expect("Secret"))
}

/// The backend key Secret of endpoint `med` in `ns`, owned by `owner_uid`.
fn backend_key(ns: &str, key: &str, owner_uid: &str) -> Arc<Secret> {
    use base64_free::encode;
    Arc::new(serde_json::from_value(json!({
        "metadata": {"name": backend_key_secret("med"), "namespace": ns,
                     "ownerReferences": [{"apiVersion": "anshin.dev/v1alpha1", "kind": "InferenceEndpoint",
                                          "name": "med", "uid": owner_uid}],
                     "labels": {"anshin.dev/backend-key-of": "med"}},
        "data": {"api-key": encode(key.as_bytes())}
    })).expect("Secret"))
}

/// Base64 without another dependency (the API server sends Secret data base64-encoded).
mod base64_free {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    pub fn encode(b: &[u8]) -> String {
        let mut out = String::new();
        for c in b.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= c.len() {
                    out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char)
                } else {
                    out.push('=')
                }
            }
        }
        out
    }
}

#[test]
fn versions_get_their_ready_pods_in_the_same_namespace() {
    let pods = vec![
        pod("a", "hosp", "v1", "10.0.0.1", true),
        pod("b", "hosp", "v1", "10.0.0.2", false),
        pod("c", "hosp", "v2", "10.0.0.3", true),
        pod("d", "other", "v1", "10.0.0.4", true),
    ];
    let peer = Peer::new("https://peer:8443", Some("jp".into())).expect("valid peer");
    let snap = build(&[ie()], &[], &[], &pods, std::slice::from_ref(&peer));
    let ep = &snap.endpoints["hosp/med"];
    assert_eq!(ep.policy.input, Action::Block);
    assert_eq!(ep.policy.output, Action::Redact);
    assert_eq!(ep.versions[0].backends, vec!["10.0.0.1:8000".to_string()]);
    assert_eq!(ep.versions[0].weight, 90);
    assert_eq!(ep.versions[0].digest.as_deref(), Some("sha256:aaa"));
    assert_eq!(ep.versions[1].backends, vec!["10.0.0.3:8000".to_string()]);
    assert_eq!(snap.peers, vec![peer]);
}

#[test]
fn a_tenants_residency_comes_from_its_spec() {
    let mut jp = (*tenant(&[])).clone();
    jp.spec.residency = Some("jp".into());
    let other = tenant_in("hosp", "hosp-b", json!(["med"]), &[]);
    let snap = build(&[ie()], &[Arc::new(jp), other], &[], &[], &[]);
    assert_eq!(snap.tenants["hosp/hosp-a"].residency.as_deref(), Some("jp"));
    assert_eq!(snap.tenants["hosp/hosp-b"].residency, None);
}

#[test]
fn keys_are_valid_only_while_listed_in_the_tenant_and_their_secret_exists() {
    let secrets = vec![secret("ehr", "sk-ehr-1"), secret("old", "sk-old-1")];
    let snap = build(&[ie()], &[tenant(&["ehr", "old"])], &secrets, &[], &[]);
    assert_eq!(
        snap.keys.authenticate("sk-ehr-1").map(|i| i.tenant),
        Some("hosp/hosp-a".into())
    );
    assert!(snap.keys.authenticate("sk-old-1").is_some());
    let t = &snap.tenants["hosp/hosp-a"];
    assert_eq!(t.limits.requests_per_minute, 60);
    assert!(t.allows(&snap.endpoints["hosp/med"]));

    let removed_from_spec = build(&[ie()], &[tenant(&["ehr"])], &secrets, &[], &[]);
    assert!(removed_from_spec.keys.authenticate("sk-old-1").is_none());
    let secret_deleted = build(&[ie()], &[tenant(&["ehr", "old"])], &secrets[..1], &[], &[]);
    assert!(secret_deleted.keys.authenticate("sk-old-1").is_none());
    assert!(secret_deleted.keys.authenticate("sk-ehr-1").is_some());
}

#[test]
fn equal_names_in_two_namespaces_stay_apart() {
    let ies = [ie_in("hosp"), ie_in("evil")];
    let tenants = [
        tenant_in("hosp", "hosp-a", json!(["med"]), &["ehr"]),
        tenant_in("evil", "hosp-a", json!(["*"]), &["ehr"]),
    ];
    let secrets = [
        secret_in("hosp", "hosp-a", "ehr", "sk-good", Some("uid-hosp-hosp-a")),
        secret_in("evil", "hosp-a", "ehr", "sk-evil", Some("uid-evil-hosp-a")),
    ];
    let snap = build(&ies, &tenants, &secrets, &[], &[]);
    assert_eq!(snap.endpoints.len(), 2, "both endpoints are kept");
    let who = |k: &str| snap.keys.authenticate(k).map(|i| i.tenant);
    assert_eq!(who("sk-good").as_deref(), Some("hosp/hosp-a"));
    assert_eq!(who("sk-evil").as_deref(), Some("evil/hosp-a"));
    let (good, evil) = (&snap.tenants["hosp/hosp-a"], &snap.tenants["evil/hosp-a"]);
    assert_ne!(good.cache_scope, evil.cache_scope);
    assert_eq!(
        snap.endpoint_for(evil, "med").map(|e| e.id.as_str()),
        Some("evil/med")
    );
    assert_eq!(
        snap.endpoint_for(good, "med").map(|e| e.id.as_str()),
        Some("hosp/med")
    );
    assert!(
        !evil.allows(&snap.endpoints["hosp/med"]),
        "`*` stays in its namespace"
    );
    assert!(snap.endpoint_for(evil, "hosp/med").is_none());
}

#[test]
fn a_key_secret_not_owned_by_its_tenant_is_no_key() {
    let unowned = secret_in("hosp", "hosp-a", "ehr", "sk-planted", None);
    let foreign = secret_in(
        "hosp",
        "hosp-a",
        "old",
        "sk-foreign",
        Some("uid-someone-else"),
    );
    let snap = build(
        &[ie()],
        &[tenant(&["ehr", "old"])],
        &[unowned, foreign],
        &[],
        &[],
    );
    assert!(snap.keys.is_empty());
}

#[test]
fn dotted_and_long_tenant_names_find_the_secrets_the_operator_names() {
    let names = ["hosp.a.example".to_owned(), "h".repeat(63), "h".repeat(200)];
    let tenants: Vec<_> = names
        .iter()
        .map(|n| tenant_in("hosp", n, json!(["med"]), &["main"]))
        .collect();
    let secrets: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            secret_in(
                "hosp",
                n,
                "main",
                &format!("sk-{i}"),
                Some(&format!("uid-hosp-{n}")),
            )
        })
        .collect();
    let snap = build(&[ie()], &tenants, &secrets, &[], &[]);
    for (i, n) in names.iter().enumerate() {
        assert_eq!(
            snap.keys
                .authenticate(&format!("sk-{i}"))
                .map(|id| id.tenant),
            Some(format!("hosp/{n}")),
            "tenant name of {} characters",
            n.len()
        );
    }
}

#[test]
fn the_backend_key_comes_from_the_secret_the_endpoint_owns() {
    let owned = build(
        &[ie()],
        &[],
        &[backend_key("hosp", "ansk-backend", "uid-ie-hosp")],
        &[],
        &[],
    );
    let auth = owned.endpoints["hosp/med"]
        .backend_auth
        .clone()
        .expect("a key");
    assert_eq!(auth.to_str().ok(), Some("Bearer ansk-backend"));
    assert!(auth.is_sensitive());
    let planted = build(
        &[ie()],
        &[],
        &[backend_key("hosp", "ansk-planted", "uid-other")],
        &[],
        &[],
    );
    assert!(planted.endpoints["hosp/med"].backend_auth.is_none());
    let other_ns = build(
        &[ie()],
        &[],
        &[backend_key("evil", "ansk-x", "uid-ie-hosp")],
        &[],
        &[],
    );
    assert!(other_ns.endpoints["hosp/med"].backend_auth.is_none());
}
