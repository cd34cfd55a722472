//! Tenant keys against the real API server: minted into owned Secrets and revoked, and keys of
//! tenants with dotted and long names authenticate at a real gateway process.

use std::time::Duration;

use anshin_crds::Tenant;
use anshin_e2e::fixture::eventually;
use anshin_operator::names;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use super::cluster;
use super::support::{free_port, object};

#[tokio::test]
async fn tenant_keys_are_minted_into_secrets_and_revoked() {
    let ns = cluster().namespace("tenant-keys").await;
    let tenants: Api<Tenant> = ns.api();
    let tenant: Tenant = object(json!({
        "apiVersion": "anshin.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "toto"},
        "spec": {"displayName": "東都病院", "endpoints": ["chat"], "keys": [{"name": "ehr"}, {"name": "app"}]}
    }));
    tenants
        .create(&PostParams::default(), &tenant)
        .await
        .expect("create tenant");
    let status = eventually("two keys in status", Duration::from_secs(30), || async {
        let s = tenants.get("toto").await.ok()?.status?;
        (s.keys.len() == 2).then_some(s)
    })
    .await;
    let secrets: Api<Secret> = ns.api();
    let secret = secrets
        .get("toto-key-ehr")
        .await
        .expect("key Secret exists");
    let key = String::from_utf8(
        secret.data.expect("data")[names::SECRET_KEY_FIELD]
            .0
            .clone(),
    )
    .expect("utf8");
    let recorded = status
        .keys
        .iter()
        .find(|k| k.name == "ehr")
        .expect("ehr in status");
    assert_eq!(recorded.fingerprint, names::key_fingerprint(&key));
    assert!(
        !serde_json::to_string(&status).expect("json").contains(&key),
        "status never holds the key"
    );
    let owner = &secret.metadata.owner_references.expect("owned")[0];
    assert_eq!(owner.kind, "Tenant");

    let patch = json!({"spec": {"keys": [{"name": "ehr"}]}});
    tenants
        .patch("toto", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("remove a key");
    eventually(
        "the removed key's Secret to be deleted",
        Duration::from_secs(30),
        || async {
            secrets
                .get_opt("toto-key-app")
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
    let again = secrets.get("toto-key-ehr").await.expect("kept key");
    assert_eq!(
        again.data.expect("data")[names::SECRET_KEY_FIELD].0,
        key.as_bytes(),
        "kept key unchanged"
    );
}

/// Tenant names with a dot, of 63 and of 200 characters: the operator mints their keys into Secrets
/// named and labelled by the shared contract, and the gateway (a real process on the same namespace)
/// authenticates every one of them.
#[tokio::test]
async fn keys_of_dotted_and_long_tenant_names_authenticate_at_the_gateway() {
    let cluster = cluster();
    let ns = cluster.namespace("tenant-names").await;
    let tenants: Api<Tenant> = ns.api();
    let names = [
        "toto.hospital.example".to_owned(),
        format!("t{}", "6".repeat(62)),
        format!("t{}", "2".repeat(199)),
    ];
    for name in &names {
        let tenant: Tenant = object(json!({
            "apiVersion": "anshin.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
            "spec": {"displayName": "長い名前の病院", "endpoints": ["chat"], "keys": [{"name": "ehr"}]}
        }));
        tenants
            .create(&PostParams::default(), &tenant)
            .await
            .unwrap_or_else(|e| panic!("create tenant of {} characters: {e}", name.len()));
    }
    let secrets: Api<Secret> = ns.api();
    let mut keys = Vec::new();
    for name in &names {
        let status = eventually("the key in status", Duration::from_secs(30), || async {
            let s = tenants.get(name).await.ok()?.status?;
            (s.keys.len() == 1).then_some(s)
        })
        .await;
        assert_eq!(status.keys[0].secret_name, names::key_secret(name, "ehr"));
        let secret = secrets
            .get(&status.keys[0].secret_name)
            .await
            .expect("key Secret");
        keys.push(
            String::from_utf8(
                secret.data.expect("data")[names::SECRET_KEY_FIELD]
                    .0
                    .clone(),
            )
            .expect("utf8"),
        );
    }
    let gateway = anshin_e2e::cluster::project_bin_dir()
        .expect("target dir")
        .join("anshin-gateway");
    assert!(
        gateway.exists(),
        "build it first: cargo build -p anshin-gateway"
    );
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let mut cmd = std::process::Command::new(gateway);
    cmd.env("KUBECONFIG", cluster.kubeconfig())
        .args(["serve", "--kube", "--kube-namespace", ns.name()])
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg(format!("--metrics-listen=127.0.0.1:{}", free_port()))
        .arg(format!(
            "--audit-log={}",
            dir.path().join("audit.jsonl").display()
        ));
    let _gw =
        anshin_e2e::process::ManagedProcess::spawn("gateway", &mut cmd, &dir.path().join("gw.log"))
            .expect("gateway starts");
    let models = |key: String| async move {
        let r = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/v1/models"))
            .bearer_auth(key)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        Some(r.status().as_u16()).filter(|s| *s != 503)
    };
    for (name, key) in names.iter().zip(&keys) {
        let status = eventually("the gateway to answer", Duration::from_secs(60), || {
            models(key.clone())
        })
        .await;
        assert_eq!(status, 200, "tenant name of {} characters", name.len());
    }
    assert_eq!(models("ansk-not-a-key".into()).await, Some(401));
}

/// A Secret that already has a key's name but belongs to someone else is neither overwritten nor
/// adopted: the key is not minted, the Tenant says why (condition and a Warning Event) and is not
/// Ready; once that Secret is gone the key is minted and the Tenant becomes Ready.
#[tokio::test]
async fn a_foreign_secret_with_a_keys_name_is_reported_not_reused() {
    use anshin_crds::conditions::find_condition;
    use anshin_crds::tenant::TenantPhase;
    let ns = cluster().namespace("tenant-conflict").await;
    let secrets: Api<Secret> = ns.api();
    let planted: Secret = object(json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "kita-key-ehr", "labels": {"anshin.dev/tenant": "kita", "anshin.dev/key-name": "ehr"}},
        "stringData": {"api-key": "ansk-planted-by-someone-else"}}));
    secrets
        .create(&PostParams::default(), &planted)
        .await
        .expect("plant a Secret");
    let tenants: Api<Tenant> = ns.api();
    let tenant: Tenant = object(json!({
        "apiVersion": "anshin.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "kita"},
        "spec": {"displayName": "北病院", "endpoints": ["chat"], "keys": [{"name": "ehr"}]}
    }));
    tenants
        .create(&PostParams::default(), &tenant)
        .await
        .expect("create tenant");
    let status = eventually(
        "the conflict in status",
        Duration::from_secs(30),
        || async {
            let s = tenants.get("kita").await.ok()?.status?;
            let c = find_condition(&s.conditions, "Ready")?;
            (c.reason == "KeySecretConflict").then_some(s)
        },
    )
    .await;
    assert_eq!(status.phase, TenantPhase::Pending);
    assert!(status.keys.is_empty(), "no key recorded: {:?}", status.keys);
    let kept = secrets.get("kita-key-ehr").await.expect("planted Secret");
    assert_eq!(
        kept.data.expect("data")[names::SECRET_KEY_FIELD].0,
        b"ansk-planted-by-someone-else",
        "never overwritten"
    );
    let events: Api<k8s_openapi::api::core::v1::Event> = ns.api();
    eventually(
        "a Warning Event naming the Secret",
        Duration::from_secs(30),
        || async {
            let list = events.list(&Default::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| {
                    e.type_.as_deref() == Some("Warning")
                        && e.message
                            .as_deref()
                            .is_some_and(|m| m.contains("kita-key-ehr"))
                })
                .then_some(())
        },
    )
    .await;
    secrets
        .delete("kita-key-ehr", &Default::default())
        .await
        .expect("remove the planted Secret");
    eventually(
        "the key minted after the conflict is gone",
        Duration::from_secs(60),
        || async {
            let s = tenants.get("kita").await.ok()?.status?;
            (s.phase == TenantPhase::Ready && s.keys.len() == 1).then_some(())
        },
    )
    .await;
}
