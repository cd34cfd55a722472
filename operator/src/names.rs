//! Names and labels of the objects the operator creates, in one place so every controller and the
//! gateway agree on them.

use sha2::{Digest, Sha256};

/// The one field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "anshin-operator";
/// Label: the InferenceEndpoint a pod, Deployment or Service belongs to.
pub const LABEL_ENDPOINT: &str = "anshin.dev/endpoint";
/// Label: the ModelVersion a pod serves (hashed when the name is longer than a label value may be).
pub const LABEL_MODEL_VERSION: &str = "anshin.dev/model-version";
/// Label: the Tenant a key Secret belongs to.
pub const LABEL_TENANT: &str = "anshin.dev/tenant";
/// Label: the key name of a key Secret.
pub const LABEL_KEY_NAME: &str = "anshin.dev/key-name";
/// Label: the ModelVersion a verification Job checks.
pub const LABEL_VERIFIES: &str = "anshin.dev/verifies";
/// Standard label: which program manages the object.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Data key of the API key in a key Secret.
pub const SECRET_KEY_FIELD: &str = "api-key";

const MAX_NAME: usize = 63;

/// `name` if it fits `max` characters, else its head and 8 hex digits of its sha256 (stable, unique).
pub fn bounded(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let hash = hex::encode(Sha256::digest(name.as_bytes()));
    let head: String = name.chars().take(max - 9).collect();
    format!("{}-{}", head.trim_end_matches(['-', '.']), &hash[..8])
}

/// A label value naming an object (label values are at most 63 characters).
pub fn label_value(name: &str) -> String {
    bounded(name, MAX_NAME).replace('.', "-")
}

/// Deployment and Service name of one served version of an endpoint.
pub fn version_workload(endpoint: &str, model_version: &str) -> String {
    // Pod names add a ReplicaSet hash and a suffix (~17 chars) to the Deployment name; keep ≤ 46 so the
    // pod name and its hostname stay within 63.
    bounded(&format!("{endpoint}-{model_version}"), 46)
}

/// Name of the Job (and its manifest ConfigMap) that verifies a ModelVersion: `<name>-verify-<first 8
/// characters of its UID>`, so an object left from a deleted version of the same name is never reused.
pub fn verify_job(model_version: &str, uid: &str) -> String {
    let bound = bounded(&format!("{model_version}-verify"), MAX_NAME - 9);
    format!("{bound}-{}", uid.get(..8).unwrap_or(uid))
}

/// Name of the Secret holding a tenant's key.
pub fn key_secret(tenant: &str, key: &str) -> String {
    bounded(&format!("{tenant}-key-{key}"), 253)
}

/// Key fingerprint recorded in status and audit: the first 16 hex digits of the key's sha256.
pub fn key_fingerprint(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))[..16].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_kept() {
        assert_eq!(version_workload("chat", "med-ja-v2"), "chat-med-ja-v2");
    }

    #[test]
    fn long_names_are_bounded_and_stay_distinct() {
        let a = version_workload(
            "a-very-long-endpoint-name-for-a-hospital",
            "med-ja-2026-11-sft-version-one",
        );
        let b = version_workload(
            "a-very-long-endpoint-name-for-a-hospital",
            "med-ja-2026-11-sft-version-two",
        );
        assert!(a.len() <= 46 && b.len() <= 46, "{a} {b}");
        assert_ne!(a, b);
        assert!(!a.contains("--"));
    }

    #[test]
    fn label_values_have_no_dots_and_fit() {
        let v = label_value(&"x.".repeat(60));
        assert!(v.len() <= 63 && !v.contains('.'), "{v}");
    }

    #[test]
    fn fingerprint_is_16_hex_digits() {
        let f = key_fingerprint("ansk-secret");
        assert_eq!(f.len(), 16);
        assert!(f.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
