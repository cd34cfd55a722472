//! Tenant isolation with the Kubernetes source, against the real local API server, the gateway binary
//! watching every namespace, and real `anshin-inference` processes behind recording backends.
//!
//! Two namespaces hold objects with the same names (an endpoint `med`, a tenant `hosp`); namespace B's
//! tenant allows `*`. An authorisation matrix — (caller key, model) → status and which backend received
//! the request — shows that no request of one namespace's tenant reaches the other's pods, that `*`
//! stays in its namespace, that limits and cache scopes are per namespaced tenant, that a Secret with
//! a key's name and labels but not owned by the Tenant is no key, that tenant names with a dot, of 63
//! and of 200 characters authenticate (Secrets named and labelled by the shared contract, as the
//! operator mints them), and that audit records carry the namespace.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use anshin_crds::labels::{key_secret, label_value};
use anshin_e2e::fixture::{eventually, shared};
use common::backend::{Mode, TestBackend};
use common::kube_objects::*;
use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject};
use serde_json::{Value, json};

/// One namespace's objects: endpoints (name → backend) and tenants.
struct Side {
    ns: String,
    client: kube::Client,
}

impl Side {
    async fn endpoint(&self, name: &str, backend: &TestBackend) {
        let ies = dyn_api(
            &self.client,
            &self.ns,
            "InferenceEndpoint",
            "inferenceendpoints",
        );
        let ie = json!({"apiVersion": "anshin.dev/v1alpha1", "kind": "InferenceEndpoint", "metadata": {"name": name},
            "spec": {"modelVersion": "v1", "runtime": {"image": "anshin/inference"}, "replicas": {"min": 1}}});
        apply_when_served(&ies, name, ie).await;
        let selector = format!("app={name}");
        set_status(
            &ies,
            name,
            json!({"routing": [{"modelVersion": "v1", "digest": "sha256:v1", "weight": 100,
            "selector": selector, "port": backend.addr.port()}]}),
        )
        .await;
        let pods = dyn_api(&self.client, &self.ns, "Pod", "pods");
        let pod_name = format!("{name}-v1");
        apply(&pods, &pod_name, pod(&pod_name, json!({"app": name}))).await;
        set_status(&pods, &pod_name, pod_ready("True")).await;
    }

    /// A tenant with keys `(key name, key)`; each key's Secret is named, labelled and owned as the
    /// operator mints it, unless `owned` is false (then it has the labels but no owner).
    async fn tenant(
        &self,
        name: &str,
        endpoints: Value,
        rpm: i64,
        keys: &[(&str, &str)],
        owned: bool,
    ) -> DynamicObject {
        let tenants = dyn_api(&self.client, &self.ns, "Tenant", "tenants");
        let names: Vec<Value> = keys.iter().map(|(k, _)| json!({"name": k})).collect();
        let t = apply_when_served(&tenants, name, json!({"apiVersion": "anshin.dev/v1alpha1", "kind": "Tenant",
            "metadata": {"name": name},
            "spec": {"displayName": name, "endpoints": endpoints, "keys": names,
                     "limits": {"requestsPerMinute": rpm, "tokensPerMinute": 1000000, "maxConcurrent": 10}}}))
        .await;
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.ns);
        for (key_name, key) in keys {
            let secret_name = key_secret(name, key_name);
            let mut meta = json!({"name": secret_name, "labels": {
                "anshin.dev/tenant": label_value(name), "anshin.dev/key-name": key_name}});
            if owned {
                meta["ownerReferences"] = owned_by("Tenant", &t);
            }
            apply(
                &secrets,
                &secret_name,
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta,
                "stringData": {"api-key": key}}),
            )
            .await;
        }
        t
    }
}

async fn call(addr: std::net::SocketAddr, key: Option<&str>, model: &str) -> u16 {
    post(
        addr,
        "/v1/chat/completions",
        key,
        &chat_body(model, "頭痛があります", false),
    )
    .await
    .status
}

async fn models(addr: std::net::SocketAddr, key: &str) -> BTreeSet<String> {
    let r = get(addr, "/v1/models", Some(key))
        .await
        .expect("GET /v1/models");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_owned))
        .collect()
}

const KEY_A: &str = "sk-iso-hosp-a-0123456789";
const KEY_A_OLD: &str = "sk-iso-hosp-a-old-0123456789";
const KEY_B: &str = "sk-iso-hosp-b-0123456789";
const KEY_FORGED: &str = "sk-iso-forged-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenants_reach_only_their_own_namespace_with_same_names_everywhere() {
    let cluster = shared();
    let (ns_a, ns_b) = (
        cluster.namespace("iso-a").await,
        cluster.namespace("iso-b").await,
    );
    install_crds(&ns_a.client()).await;
    let dir = tempfile::tempdir().expect("dir");
    let model = fixture_model(dir.path());
    let (inf_a, inf_b) = (
        start_inference(&model, "a").await,
        start_inference(&model, "b").await,
    );
    let med_a = TestBackend::start(Mode::Forward(inf_a.addr)).await;
    let med_b = TestBackend::start(Mode::Forward(inf_b.addr)).await;
    let other_a = TestBackend::start(Mode::Echo).await;
    let only_b = TestBackend::start(Mode::Echo).await;
    let a = Side {
        ns: ns_a.name().to_owned(),
        client: ns_a.client(),
    };
    let b = Side {
        ns: ns_b.name().to_owned(),
        client: ns_b.client(),
    };
    a.endpoint("med", &med_a).await;
    a.endpoint("other", &other_a).await;
    b.endpoint("med", &med_b).await;
    b.endpoint("only-b", &only_b).await;
    let keys_a = [("main", KEY_A), ("old", KEY_A_OLD)];
    a.tenant("hosp", json!(["med"]), 1000, &keys_a, true).await;
    b.tenant("hosp", json!(["*"]), 2, &[("main", KEY_B)], true)
        .await;
    a.tenant(
        "forger",
        json!(["med"]),
        1000,
        &[("main", KEY_FORGED)],
        false,
    )
    .await;
    let long_names = [
        "hosp.dotted.example".to_owned(),
        format!("h{}", "x".repeat(62)),
        format!("h{}", "y".repeat(199)),
    ];
    let long_keys: Vec<String> = (0..3)
        .map(|i| format!("sk-iso-long-{i}-0123456789"))
        .collect();
    for (name, key) in long_names.iter().zip(&long_keys) {
        a.tenant(name, json!(["med"]), 1000, &[("main", key)], true)
            .await;
    }
    let audit = dir.path().join("audit.jsonl");
    let gw = start_kube_gateway(cluster.kubeconfig(), None, &audit).await;
    let addr = gw.addr;

    // (caller, model) → status, in order; B's limit (2 per minute) is spent by its two 200s.
    let matrix: [(&str, Option<&str>, &str, u16); 12] = [
        ("A's key, A's endpoint", Some(KEY_A), "med", 200),
        ("B's key, its med", Some(KEY_B), "med", 200),
        ("B's `*` key, A-only endpoint", Some(KEY_B), "other", 404),
        ("A's key, A's unlisted endpoint", Some(KEY_A), "other", 403),
        ("A's key, B-only endpoint", Some(KEY_A), "only-b", 404),
        ("B's `*` key, its own endpoint", Some(KEY_B), "only-b", 200),
        ("B over its own limit", Some(KEY_B), "med", 429),
        ("A unaffected by B's limit", Some(KEY_A), "med", 200),
        ("no key", None, "med", 401),
        ("unknown key", Some("sk-iso-nobody-0123456789"), "med", 401),
        ("key in an unowned Secret", Some(KEY_FORGED), "med", 401),
        ("A's second key", Some(KEY_A_OLD), "med", 200),
    ];
    for (what, key, model, want) in matrix {
        assert_eq!(call(addr, key, model).await, want, "{what}");
    }
    for (name, key) in long_names.iter().zip(&long_keys) {
        assert_eq!(
            call(addr, Some(key), "med").await,
            200,
            "tenant name of {} characters",
            name.len()
        );
    }
    assert_eq!(med_a.bodies().len(), 3 + long_keys.len(), "A's med pods");
    assert_eq!(
        med_b.bodies().len(),
        1,
        "B's med pods: B's one admitted call"
    );
    assert!(other_a.bodies().is_empty(), "nobody reached A's `other`");
    assert_eq!(only_b.bodies().len(), 1, "only B reached `only-b`");
    assert_eq!(models(addr, KEY_A).await, BTreeSet::from(["med".into()]));
    assert_eq!(
        models(addr, KEY_B).await,
        BTreeSet::from(["med".into(), "only-b".into()]),
        "`*` lists its own namespace only"
    );

    let scopes = |b: &TestBackend| -> BTreeSet<Option<String>> {
        b.scopes.lock().expect("lock").iter().cloned().collect()
    };
    let (scope_a, scope_b) = (scopes(&med_a), scopes(&med_b));
    assert!(scope_a.iter().all(Option::is_some) && scope_b.len() == 1);
    assert!(
        scope_a.is_disjoint(&scope_b),
        "same tenant name, different namespaces: different cache scopes"
    );

    let records: Vec<Value> = std::fs::read_to_string(&audit)
        .expect("audit log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit record"))
        .collect();
    let hosp_a = format!("{}/hosp", a.ns);
    let a_records: Vec<&Value> = records
        .iter()
        .filter(|r| r["tenant"] == hosp_a.as_str())
        .collect();
    assert_eq!(
        a_records.len(),
        5,
        "A's five chat calls are A's: {a_records:?}"
    );
    assert!(
        a_records
            .iter()
            .filter(|r| r["status"] == 200)
            .all(|r| r["endpoint"] == format!("{}/med", a.ns).as_str())
    );
    let b_records = records
        .iter()
        .filter(|r| r["tenant"] == format!("{}/hosp", b.ns).as_str())
        .count();
    assert_eq!(b_records, 4, "B's four chat calls carry B's namespace");

    // Revocation: the key removed from A's Tenant stops working; B is untouched.
    a.tenant("hosp", json!(["med"]), 1000, &keys_a[..1], true)
        .await;
    eventually(
        "the key removed from the Tenant to be refused",
        Duration::from_secs(10),
        || async move { (call(addr, Some(KEY_A_OLD), "med").await == 401).then_some(()) },
    )
    .await;
    assert_eq!(call(addr, Some(KEY_A), "med").await, 200);
}
