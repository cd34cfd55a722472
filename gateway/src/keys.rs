//! API keys: only their SHA-256 hashes are held; a presented key is hashed and compared with every
//! known hash in constant time, so neither the key nor timing reveals which hash matched.

use sha2::{Digest, Sha256};

/// One valid key, known only by its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    /// SHA-256 of the key string.
    pub hash: [u8; 32],
    /// Tenant the key belongs to.
    pub tenant: String,
    /// Key name inside the tenant.
    pub name: String,
}

/// Who a key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Tenant name.
    pub tenant: String,
    /// Key name.
    pub key_name: String,
    /// First 16 hex digits of the key's SHA-256 (safe for logs and audit).
    pub fingerprint: String,
}

/// The set of valid key hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRing {
    entries: Vec<KeyEntry>,
}

/// SHA-256 of a key string.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The fingerprint of a key hash: its first 16 hex digits.
pub fn fingerprint(hash: &[u8; 32]) -> String {
    hex::encode(&hash[..8])
}

/// Parses a 64-hex-digit SHA-256.
pub fn parse_hash(hex_str: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(hex_str.trim()).ok()?;
    bytes.try_into().ok()
}

fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl KeyRing {
    /// A ring of the given entries.
    pub fn new(entries: Vec<KeyEntry>) -> KeyRing {
        KeyRing { entries }
    }

    /// Number of valid keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is valid.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The identity of `key`, comparing its hash with every entry (no early exit).
    pub fn authenticate(&self, key: &str) -> Option<Identity> {
        let h = hash_key(key);
        let mut found = None;
        for e in &self.entries {
            if ct_eq(&e.hash, &h) && found.is_none() {
                found = Some(e);
            }
        }
        found.map(|e| Identity {
            tenant: e.tenant.clone(),
            key_name: e.name.clone(),
            fingerprint: fingerprint(&h),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authenticates_known_key_and_rejects_others() {
        let ring = KeyRing::new(vec![KeyEntry {
            hash: hash_key("sk-a"),
            tenant: "a".into(),
            name: "k".into(),
        }]);
        let id = ring.authenticate("sk-a").expect("known key");
        assert_eq!(id.tenant, "a");
        assert_eq!(id.fingerprint.len(), 16);
        assert!(ring.authenticate("sk-b").is_none());
        assert!(ring.authenticate("").is_none());
    }

    #[test]
    fn parses_hex_hashes_only_of_the_right_length() {
        let h = hash_key("x");
        assert_eq!(parse_hash(&hex::encode(h)), Some(h));
        assert_eq!(parse_hash("abcd"), None);
        assert_eq!(parse_hash("zz"), None);
    }
}
