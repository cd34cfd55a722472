//! The label and naming contract shared by the operator (which creates the objects) and the gateway
//! (which finds them): one definition, so a name the operator sanitises is the name the gateway looks
//! for. Label values are at most 63 characters without dots; longer or dotted names are mapped by
//! [`label_value`], and Secret names are bounded by [`key_secret`] the same way on both sides.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::{Digest, Sha256};

/// Label: the InferenceEndpoint a pod, Deployment or Service belongs to.
pub const LABEL_ENDPOINT: &str = "anshin.dev/endpoint";
/// Label: the ModelVersion a pod serves (hashed when the name is longer than a label value may be).
pub const LABEL_MODEL_VERSION: &str = "anshin.dev/model-version";
/// Label: the Tenant a key Secret belongs to ([`label_value`] of the Tenant's name).
pub const LABEL_TENANT: &str = "anshin.dev/tenant";
/// Label: the key name of a key Secret.
pub const LABEL_KEY_NAME: &str = "anshin.dev/key-name";
/// Label: the ModelVersion a verification Job checks.
pub const LABEL_VERIFIES: &str = "anshin.dev/verifies";
/// Standard label: which program manages the object.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label: the InferenceEndpoint whose backend key a Secret holds ([`label_value`] of its name).
pub const LABEL_BACKEND_KEY: &str = "anshin.dev/backend-key-of";
/// Data key of the API key in a tenant's key Secret and in an endpoint's backend key Secret.
pub const SECRET_KEY_FIELD: &str = "api-key";

/// The longest label value (and DNS label) Kubernetes accepts.
pub const MAX_LABEL: usize = 63;
/// The longest object name (DNS subdomain) Kubernetes accepts.
pub const MAX_NAME: usize = 253;

/// `name` if it fits `max` characters, else its head and 8 hex digits of its sha256 (stable, unique).
pub fn bounded(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let hash = hex::encode(Sha256::digest(name.as_bytes()));
    let head: String = name.chars().take(max - 9).collect();
    format!("{}-{}", head.trim_end_matches(['-', '.']), &hash[..8])
}

/// A label value naming an object: at most 63 characters and no dots (names `a.b` and `a-b` map to
/// the same value, so a label alone never identifies an object: match the owner reference too).
pub fn label_value(name: &str) -> String {
    bounded(name, MAX_LABEL).replace('.', "-")
}

/// Whether `meta` lists the object with UID `owner_uid` among its owners. A label value is a
/// sanitised name, so only the owner's UID ties a key Secret to its Tenant or InferenceEndpoint
/// (`None`: an owner not stored yet owns nothing).
pub fn owned_by(meta: &ObjectMeta, owner_uid: Option<&str>) -> bool {
    owner_uid.is_some_and(|uid| meta.owner_references.iter().flatten().any(|o| o.uid == uid))
}

/// Name of the Secret holding a tenant's key `key`.
pub fn key_secret(tenant: &str, key: &str) -> String {
    bounded(&format!("{tenant}-key-{key}"), MAX_NAME)
}

/// Name of the Secret holding the key the gateway presents to an endpoint's model servers.
pub fn backend_key_secret(endpoint: &str) -> String {
    bounded(&format!("{endpoint}-backend-key"), MAX_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_have_no_dots_and_fit() {
        let v = label_value(&"x.".repeat(60));
        assert!(v.len() <= 63 && !v.contains('.'), "{v}");
        assert_eq!(label_value("hosp.a"), "hosp-a");
        assert_eq!(label_value("hosp-a"), "hosp-a");
    }

    #[test]
    fn ownership_is_by_uid_only() {
        let meta: ObjectMeta = serde_json::from_value(serde_json::json!({"ownerReferences": [
            {"apiVersion": "anshin.dev/v1alpha1", "kind": "Tenant", "name": "a", "uid": "u-1"}]}))
        .expect("meta");
        assert!(owned_by(&meta, Some("u-1")));
        assert!(!owned_by(&meta, Some("u-2")));
        assert!(!owned_by(&meta, None));
        assert!(!owned_by(&ObjectMeta::default(), Some("u-1")));
    }

    #[test]
    fn key_secret_names_fit_and_stay_distinct() {
        let long = "t".repeat(250);
        let a = key_secret(&long, "main");
        let b = key_secret(&long, "backup");
        assert!(a.len() <= MAX_NAME && b.len() <= MAX_NAME, "{a} {b}");
        assert_ne!(a, b);
        assert_eq!(key_secret("hosp.a", "main"), "hosp.a-key-main");
    }
}
