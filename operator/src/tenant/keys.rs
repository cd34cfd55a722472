//! Tenant API keys (pure): which key Secrets must exist, which must go, and what status records.
//!
//! Each key in `spec.keys` is a Secret `<tenant>-key-<name>` owned by the Tenant, holding the key under
//! `api-key`. A key is minted once and never rewritten; removing it from spec deletes its Secret, which
//! revokes it (the gateway accepts a key only while its Secret exists and its name is in spec). Status
//! records fingerprints, never keys. Only Secrets whose owner reference names this Tenant's UID count as
//! its keys: the tenant label is a sanitised name (`a.b` and `a-b` share it), so a label alone would let
//! one tenant reuse or delete another's keys.

use std::collections::BTreeMap;

use anshin_crds::Tenant;
use anshin_crds::conditions::ConditionStatus;
use anshin_crds::tenant::{KeyStatus, TenantPhase};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::names;

/// Annotation with the time a key was minted.
pub const ANNOTATION_CREATED: &str = "anshin.dev/created";
/// Prefix of every Anshin API key, so leaked keys are easy to recognise and scan for.
pub const KEY_PREFIX: &str = "ansk-";

/// The key Secrets to create and delete, and the keys to record in status.
#[derive(Clone, Debug, PartialEq)]
pub struct KeysPlan {
    /// New Secrets (with freshly minted keys).
    pub create: Vec<Secret>,
    /// Names of Secrets of keys no longer in spec.
    pub delete: Vec<String>,
    /// Status entries for every key in spec, in spec order.
    pub status: Vec<KeyStatus>,
}

/// A new random key: the prefix and 64 hex digits (256 bits) from the operating system's generator.
pub fn mint_key() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{KEY_PREFIX}{}", hex::encode(bytes))
}

fn key_of(secret: &Secret) -> Option<String> {
    let data = secret.data.as_ref()?.get(names::SECRET_KEY_FIELD)?;
    String::from_utf8(data.0.clone()).ok()
}

/// Whether `secret` is owned by `tenant` (an owner reference with the tenant's UID).
pub fn owned_by(secret: &Secret, tenant: &Tenant) -> bool {
    anshin_crds::labels::owned_by(&secret.metadata, tenant.meta().uid.as_deref())
}

/// Plans the key Secrets of `tenant` given the Secrets carrying its label; `mint` makes new keys,
/// `now` stamps them. Secrets not owned by the tenant are neither reused nor deleted.
pub fn plan(
    tenant: &Tenant,
    existing: &[Secret],
    mut mint: impl FnMut() -> String,
    now: &str,
) -> KeysPlan {
    let tenant_name = tenant.name_any();
    let by_key_name: BTreeMap<String, &Secret> = existing
        .iter()
        .filter(|s| owned_by(s, tenant))
        .filter_map(|s| Some((s.labels().get(names::LABEL_KEY_NAME)?.clone(), s)))
        .collect();
    let mut plan = KeysPlan {
        create: vec![],
        delete: vec![],
        status: vec![],
    };
    for key in &tenant.spec.keys {
        let secret_name = names::key_secret(&tenant_name, &key.name);
        let (value, created) = match by_key_name
            .get(&key.name)
            .and_then(|s| Some((key_of(s)?, *s)))
        {
            Some((value, secret)) => {
                let created = secret
                    .annotations()
                    .get(ANNOTATION_CREATED)
                    .cloned()
                    .unwrap_or_else(|| now.to_owned());
                (value, created)
            }
            None => {
                let value = mint();
                plan.create
                    .push(secret(tenant, &key.name, &secret_name, &value, now));
                (value, now.to_owned())
            }
        };
        plan.status.push(KeyStatus {
            name: key.name.clone(),
            fingerprint: names::key_fingerprint(&value),
            secret_name,
            created,
        });
    }
    let wanted: Vec<&str> = tenant.spec.keys.iter().map(|k| k.name.as_str()).collect();
    plan.delete = by_key_name
        .iter()
        .filter(|(k, _)| !wanted.contains(&k.as_str()))
        .map(|(_, s)| s.name_any())
        .collect();
    plan
}

/// A tenant's phase and `Ready` condition, from what really exists.
#[derive(Clone, Debug, PartialEq)]
pub struct Readiness {
    /// Pending until every key in spec is held by a Secret the tenant owns.
    pub phase: TenantPhase,
    /// The `Ready` condition's status.
    pub status: ConditionStatus,
    /// Its reason: `KeysMinted`, `NoKeys` or `KeySecretConflict`.
    pub reason: &'static str,
    /// Its message, saying what to do when not ready.
    pub message: String,
}

/// Readiness of a tenant with `wanted` keys in spec, of which the Secrets named in `taken` exist but
/// belong to someone else (so those keys were not minted).
pub fn readiness(wanted: usize, taken: &[String]) -> Readiness {
    if !taken.is_empty() {
        return Readiness {
            phase: TenantPhase::Pending,
            status: ConditionStatus::False,
            reason: "KeySecretConflict",
            message: format!(
                "Secret {} already exists and is not owned by this Tenant, so its key was not minted: \
                 delete or rename that Secret, or rename the key in spec.keys",
                taken.join(", ")
            ),
        };
    }
    if wanted == 0 {
        return Readiness {
            phase: TenantPhase::Pending,
            status: ConditionStatus::False,
            reason: "NoKeys",
            message: "spec.keys is empty, so no request can authenticate as this tenant: add a key"
                .into(),
        };
    }
    Readiness {
        phase: TenantPhase::Ready,
        status: ConditionStatus::True,
        reason: "KeysMinted",
        message: format!("{wanted} API keys active"),
    }
}

fn secret(tenant: &Tenant, key_name: &str, secret_name: &str, value: &str, now: &str) -> Secret {
    let labels = BTreeMap::from([
        (
            names::LABEL_TENANT.to_owned(),
            names::label_value(&tenant.name_any()),
        ),
        (names::LABEL_KEY_NAME.to_owned(), key_name.to_owned()),
        (
            names::LABEL_MANAGED_BY.to_owned(),
            names::FIELD_MANAGER.to_owned(),
        ),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name.to_owned()),
            namespace: tenant.namespace(),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                ANNOTATION_CREATED.to_owned(),
                now.to_owned(),
            )])),
            owner_references: tenant.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            names::SECRET_KEY_FIELD.to_owned(),
            ByteString(value.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}
