//! Names of the objects the operator creates, and the model server's port. Labels and the names the gateway also looks up (key
//! Secrets) come from the shared contract in [`anshin_crds::labels`], re-exported here.

use sha2::{Digest, Sha256};

pub use anshin_crds::labels::{
    LABEL_ENDPOINT, LABEL_KEY_NAME, LABEL_MANAGED_BY, LABEL_MODEL_VERSION, LABEL_TENANT,
    LABEL_VERIFIES, SECRET_KEY_FIELD, bounded, key_secret, label_value,
};

/// The one field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "anshin-operator";

/// Port the model server listens on in every pod.
pub const SERVER_PORT: i32 = 8000;

const MAX_NAME: usize = anshin_crds::labels::MAX_LABEL;

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

/// Name of the NetworkPolicy admitting callers to an endpoint's model servers.
pub fn network_policy(endpoint: &str) -> String {
    bounded(
        &format!("{endpoint}-model-servers"),
        anshin_crds::labels::MAX_NAME,
    )
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
    fn fingerprint_is_16_hex_digits() {
        let f = key_fingerprint("ansk-secret");
        assert_eq!(f.len(), 16);
        assert!(f.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
