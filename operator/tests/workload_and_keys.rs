//! Deployment/Service builders and tenant key plans, from YAML fixtures.

mod support;

use anshin_crds::conditions::ConditionStatus;
use anshin_crds::tenant::TenantPhase;
use anshin_crds::{InferenceEndpoint, ModelVersion, Tenant};
use anshin_operator::endpoint::{backend_access, workload};
use anshin_operator::names;
use anshin_operator::tenant::keys;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use support::fixture;

#[test]
fn the_deployment_follows_the_zero_downtime_rules() {
    let ie: InferenceEndpoint = fixture("endpoint.yaml");
    let mv: ModelVersion = fixture("mv-hf-pvc.yaml");
    let d = workload::deployment(&ie, &mv, 2).expect("pvc source");
    assert_eq!(d.name_any(), "med-ja-chat-med-ja-v2");
    let spec = d.spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(2));
    let rolling = spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .expect("rolling update");
    assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(0)));
    let pod = spec.template.spec.as_ref().expect("pod");
    let c = &pod.containers[0];
    let readiness = c
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .expect("readiness");
    assert_eq!(readiness.path.as_deref(), Some("/readyz"));
    let liveness = c
        .liveness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .expect("liveness");
    assert_eq!(liveness.path.as_deref(), Some("/healthz"));
    assert!(
        c.lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
            .is_some(),
        "preStop"
    );
    let drain = ie.spec.runtime.drain_timeout_seconds as i64;
    assert!(
        pod.termination_grace_period_seconds.expect("grace")
            > drain + workload::PRE_STOP_SECONDS as i64
    );
    let args = c.args.clone().expect("args");
    assert!(args.contains(&"--drain-timeout=20s".to_owned()), "{args:?}");
    assert!(
        args.contains(&"--max-batch=8".to_owned()),
        "user args are passed on: {args:?}"
    );
    assert!(args.contains(&"--listen=$(POD_IP):8000".to_owned()));
    assert_eq!(
        pod.security_context
            .as_ref()
            .and_then(|s| s.run_as_non_root),
        Some(true)
    );
    assert_eq!(
        c.security_context
            .as_ref()
            .and_then(|s| s.allow_privilege_escalation),
        Some(false)
    );
    let limits = c
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .expect("limits");
    assert_eq!(limits["nvidia.com/gpu"].0, "1");
    assert_eq!(
        pod.node_selector.as_ref().expect("selector")["nvidia.com/gpu.product"],
        "NVIDIA-H100-80GB-HBM3"
    );
    assert_eq!(
        pod.tolerations.as_ref().expect("tolerations")[0]
            .operator
            .as_deref(),
        Some("Exists")
    );
    let owner = &d.metadata.owner_references.as_ref().expect("owned")[0];
    assert_eq!(owner.kind, "InferenceEndpoint");
}

#[test]
fn a_gguf_artifact_is_served_from_its_file() {
    let ie: InferenceEndpoint = fixture("endpoint.yaml");
    let mv: ModelVersion = fixture("mv-gguf-file.yaml");
    let d = workload::deployment(&ie, &mv, 1).expect("file source");
    let pod = d.spec.and_then(|s| s.template.spec).expect("pod");
    let args = pod.containers[0].args.clone().expect("args");
    assert!(
        args.contains(&"--model=/artifact/SmolLM2-135M-Instruct.Q4_1.gguf".to_owned()),
        "{args:?}"
    );
    let host = pod.volumes.as_ref().expect("volumes")[0]
        .host_path
        .as_ref()
        .expect("hostPath");
    assert_eq!(host.path, "/var/lib/anshin/models/smollm2");
}

#[test]
fn the_service_selects_exactly_one_version() {
    let ie: InferenceEndpoint = fixture("endpoint.yaml");
    let s = workload::service(&ie, "med-ja-v2");
    let selector = s.spec.and_then(|s| s.selector).expect("selector");
    assert_eq!(selector[names::LABEL_MODEL_VERSION], "med-ja-v2");
    assert_eq!(selector[names::LABEL_ENDPOINT], "med-ja-chat");
}

#[test]
fn keys_are_minted_once_and_removed_keys_are_revoked() {
    let mut tenant: Tenant = fixture("tenant.yaml");
    let mut n = 0;
    let mut mint = || {
        n += 1;
        format!("ansk-test-{n}")
    };
    let plan = keys::plan(&tenant, &[], &mut mint, "2026-11-22T00:00:00Z");
    assert_eq!(plan.create.len(), 2);
    assert!(plan.delete.is_empty());
    assert_eq!(plan.status[0].secret_name, "toto-hospital-key-ehr-prod");
    assert_eq!(
        plan.status[0].fingerprint,
        names::key_fingerprint("ansk-test-1")
    );
    let status_json = serde_json::to_string(&plan.status).expect("json");
    assert!(
        !status_json.contains("ansk-test"),
        "status never holds a key"
    );
    // Next pass: the Secrets exist, nothing is minted again and the fingerprints stay.
    let existing: Vec<Secret> = plan.create.clone();
    let again = keys::plan(&tenant, &existing, || unreachable!("no new key"), "later");
    assert!(again.create.is_empty());
    assert_eq!(again.status, plan.status);
    // A key removed from spec is revoked by deleting its Secret.
    tenant.spec.keys.retain(|k| k.name != "clinician-app");
    let revoked = keys::plan(&tenant, &existing, || unreachable!("no new key"), "later");
    assert_eq!(
        revoked.delete,
        vec!["toto-hospital-key-clinician-app".to_owned()]
    );
    assert_eq!(revoked.status.len(), 1);
}

#[test]
fn minted_keys_are_long_random_and_prefixed() {
    let (a, b) = (keys::mint_key(), keys::mint_key());
    assert_ne!(a, b);
    assert!(
        a.starts_with(keys::KEY_PREFIX) && a.len() == keys::KEY_PREFIX.len() + 64,
        "{a}"
    );
}

#[test]
fn key_secrets_of_another_tenant_with_the_same_label_are_neither_reused_nor_deleted() {
    // Tenants `toto.hospital` and `toto-hospital` share the sanitised label value; only the owner
    // reference tells their Secrets apart.
    let tenant: Tenant = fixture("tenant.yaml");
    let mut other: Tenant = fixture("tenant.yaml");
    other.metadata.name = Some("toto.hospital".into());
    other.metadata.uid = Some("6f1c9a52-0000-4000-8000-0000000000ff".into());
    let mut mint = || "ansk-other".to_owned();
    let foreign = keys::plan(&other, &[], &mut mint, "t0").create;
    assert_eq!(
        foreign[0].metadata.labels.as_ref().expect("labels")[names::LABEL_TENANT],
        "toto-hospital",
        "the two tenants really share the label value"
    );
    let mut n = 0;
    let plan = keys::plan(
        &tenant,
        &foreign,
        || {
            n += 1;
            format!("ansk-own-{n}")
        },
        "t1",
    );
    assert_eq!(
        plan.create.len(),
        2,
        "the other tenant's keys are not reused"
    );
    assert!(plan.delete.is_empty(), "nor deleted: {:?}", plan.delete);
    assert_eq!(
        plan.status[0].fingerprint,
        names::key_fingerprint("ansk-own-1")
    );
}

#[test]
fn tenant_readiness_reflects_keys_that_really_exist() {
    let ok = keys::readiness(2, &[]);
    assert_eq!((ok.phase, ok.reason), (TenantPhase::Ready, "KeysMinted"));
    let none = keys::readiness(0, &[]);
    assert_eq!((none.phase, none.reason), (TenantPhase::Pending, "NoKeys"));
    assert_eq!(none.status, ConditionStatus::False);
    let taken = keys::readiness(2, &["toto-hospital-key-ehr-prod".into()]);
    assert_eq!(
        (taken.phase, taken.reason),
        (TenantPhase::Pending, "KeySecretConflict")
    );
    assert!(
        taken.message.contains("toto-hospital-key-ehr-prod")
            && taken.message.contains("delete or rename"),
        "{}",
        taken.message
    );
}

#[test]
fn model_servers_need_the_endpoints_backend_key() {
    let ie: InferenceEndpoint = fixture("endpoint.yaml");
    let mv: ModelVersion = fixture("mv-hf-pvc.yaml");
    let d = workload::deployment(&ie, &mv, 1).expect("pvc source");
    let pod = d.spec.expect("spec").template.spec.expect("pod");
    let args = pod.containers[0].args.clone().expect("args");
    assert!(
        args.contains(&"--api-key-file=/var/run/anshin/backend-key/api-key".to_owned()),
        "{args:?}"
    );
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "backend-key")
        .expect("key volume");
    let secret = volume.secret.as_ref().expect("secret volume");
    assert_eq!(
        secret.secret_name.as_deref(),
        Some("med-ja-chat-backend-key")
    );
    assert_eq!(secret.default_mode, Some(0o440));
    assert_eq!(
        pod.security_context.and_then(|s| s.fs_group),
        Some(65532),
        "the non-root server can read the 0440 key through its group"
    );
    let key = backend_access::key_secret(&ie, "ansk-backend");
    assert_eq!(
        key.metadata.labels.as_ref().expect("labels")["anshin.dev/backend-key-of"],
        "med-ja-chat"
    );
    assert_eq!(
        key.metadata.owner_references.as_ref().expect("owned")[0].kind,
        "InferenceEndpoint"
    );
}

#[test]
fn the_network_policy_admits_only_gateway_pods_and_monitoring_to_the_model_port() {
    let ie: InferenceEndpoint = fixture("endpoint.yaml");
    let net = backend_access::NetworkSettings {
        gateway_namespace: "anshin-system".into(),
        gateway_labels: [("app.kubernetes.io/name".into(), "anshin-gateway".into())].into(),
        monitoring_namespace: Some("monitoring".into()),
    };
    let p = backend_access::network_policy(&ie, &net);
    let v = serde_json::to_value(&p.spec).expect("json");
    assert_eq!(
        v,
        serde_json::json!({
            "podSelector": {"matchLabels": {"anshin.dev/endpoint": "med-ja-chat"}},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "anshin-system"}},
                     "podSelector": {"matchLabels": {"app.kubernetes.io/name": "anshin-gateway"}}},
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
                ],
                "ports": [{"port": 8000, "protocol": "TCP"}]
            }]
        })
    );
    let without = backend_access::network_policy(
        &ie,
        &backend_access::NetworkSettings {
            monitoring_namespace: None,
            ..net
        },
    );
    let from = without.spec.and_then(|s| s.ingress).expect("ingress")[0]
        .from
        .clone()
        .expect("from");
    assert_eq!(
        from.len(),
        1,
        "without a monitoring namespace only the gateway"
    );
}
