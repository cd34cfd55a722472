//! The snapshot built from Kubernetes objects (pure; objects as the API server would return them).

use std::sync::Arc;

use anshin_crds::{InferenceEndpoint, Tenant};
use anshin_gateway::kube_table::build;
use anshin_gateway::table::Action;
use k8s_openapi::api::core::v1::{Pod, Secret};
use serde_json::json;

fn ie() -> Arc<InferenceEndpoint> {
    Arc::new(serde_json::from_value(json!({
        "apiVersion": "anshin.dev/v1alpha1", "kind": "InferenceEndpoint",
        "metadata": {"name": "med", "namespace": "hosp"},
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
    let keys: Vec<_> = keys.iter().map(|k| json!({"name": k})).collect();
    Arc::new(serde_json::from_value(json!({
        "apiVersion": "anshin.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": "hosp-a", "namespace": "hosp"},
        "spec": {"displayName": "Hospital A", "endpoints": ["med"],
                 "limits": {"requestsPerMinute": 60, "tokensPerMinute": 1000, "maxConcurrent": 4}, "keys": keys}
    })).expect("Tenant"))
}

fn secret(key_name: &str, key: &str) -> Arc<Secret> {
    use base64_free::encode;
    Arc::new(serde_json::from_value(json!({
        "metadata": {"name": format!("hosp-a-key-{key_name}"), "namespace": "hosp",
                     "labels": {"anshin.dev/tenant": "hosp-a", "anshin.dev/key-name": key_name}},
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
    let snap = build(&[ie()], &[], &[], &pods, &["http://peer:8080".into()]);
    let ep = &snap.endpoints["med"];
    assert_eq!(ep.policy.input, Action::Block);
    assert_eq!(ep.policy.output, Action::Redact);
    assert_eq!(ep.versions[0].backends, vec!["10.0.0.1:8000".to_string()]);
    assert_eq!(ep.versions[0].weight, 90);
    assert_eq!(ep.versions[0].digest.as_deref(), Some("sha256:aaa"));
    assert_eq!(ep.versions[1].backends, vec!["10.0.0.3:8000".to_string()]);
    assert_eq!(snap.peers, vec!["http://peer:8080".to_string()]);
}

#[test]
fn keys_are_valid_only_while_listed_in_the_tenant_and_their_secret_exists() {
    let secrets = vec![secret("ehr", "sk-ehr-1"), secret("old", "sk-old-1")];
    let snap = build(&[ie()], &[tenant(&["ehr", "old"])], &secrets, &[], &[]);
    assert_eq!(
        snap.keys.authenticate("sk-ehr-1").map(|i| i.tenant),
        Some("hosp-a".into())
    );
    assert!(snap.keys.authenticate("sk-old-1").is_some());
    assert_eq!(snap.tenants["hosp-a"].limits.requests_per_minute, 60);
    assert!(snap.tenants["hosp-a"].allows("med"));

    let removed_from_spec = build(&[ie()], &[tenant(&["ehr"])], &secrets, &[], &[]);
    assert!(removed_from_spec.keys.authenticate("sk-old-1").is_none());
    let secret_deleted = build(&[ie()], &[tenant(&["ehr", "old"])], &secrets[..1], &[], &[]);
    assert!(secret_deleted.keys.authenticate("sk-old-1").is_none());
    assert!(secret_deleted.keys.authenticate("sk-ehr-1").is_some());
}
