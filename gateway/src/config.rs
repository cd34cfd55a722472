//! The routing file: tenants (with key hashes), endpoints (with versions, weights and backends) and
//! peer regions, in YAML. [`parse`] validates it into a [`Snapshot`] (reading the backend key files it
//! names); see `docs/gateway.md`.
//!
//! ```yaml
//! tenants:
//!   - name: hospital-a
//!     endpoints: [med-chat]          # or ["*"]
//!     residency: jp                  # optional: forwarded only to peers of zone jp
//!     limits: {requests_per_minute: 600, tokens_per_minute: 200000, max_concurrent: 16}
//!     keys:
//!       - {name: ehr, sha256: "<64 hex digits: sha256 of the key>"}
//! endpoints:
//!   - name: med-chat
//!     guardrails: {input: Redact, output: Redact}
//!     backend_key_file: /etc/anshin/med-chat.key   # optional: the model servers' --api-key-file key
//!     versions:
//!       - {name: v1, digest: "sha256:...", weight: 90, backends: ["10.0.0.5:8000"]}
//! peers:                             # tried in order when nothing local can serve
//!   - {url: "https://gateway.osaka.example", residency: jp}
//!   - "https://gateway.singapore.example"  # plain string: a peer without a residency
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::keys::{KeyEntry, KeyRing, parse_hash};
use anshin_crds::global_endpoint::residency_valid;

use crate::table::{Endpoint, Limits, Peer, Policy, Snapshot, Tenant, Version};

/// Why a routing file was rejected (the previous snapshot stays in force).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is not valid YAML of the expected shape.
    #[error("routing file is not valid: {0}")]
    Yaml(#[source] Box<serde_saphyr::Error>),
    /// A value is inconsistent.
    #[error("routing file is not valid: {0}")]
    Invalid(String),
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Tenants and their keys.
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
    /// Endpoints and their routing tables.
    #[serde(default)]
    pub endpoints: Vec<EndpointConfig>,
    /// Gateways of other regions, tried in order when no local backend can serve.
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
}

/// One peer region: a URL, or a URL with the region's residency zone.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PeerConfig {
    /// `https://host:port` (a peer without a residency).
    Url(String),
    /// `{url, residency}`.
    WithResidency {
        /// Base URL of the peer gateway.
        url: String,
        /// Its data-residency zone, e.g. `jp`.
        #[serde(default)]
        residency: Option<String>,
    },
}

/// One tenant.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Tenant name.
    pub name: String,
    /// Endpoints it may use (`*` for all).
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Its limits (0 or absent = unlimited).
    #[serde(default)]
    pub limits: Limits,
    /// Its keys.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// Data-residency zone (e.g. `jp`): its requests are forwarded only to peers of that zone.
    #[serde(default)]
    pub residency: Option<String>,
}

/// One key, by hash only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Key name.
    pub name: String,
    /// Hex SHA-256 of the key string (`anshin-gateway hash-key` prints it).
    pub sha256: String,
}

/// One endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Name callers send as `model`.
    pub name: String,
    /// Guardrail policy (default Redact/Redact).
    #[serde(default)]
    pub guardrails: Policy,
    /// File holding the key the endpoint's model servers require (`anshin-inference serve
    /// --api-key-file`), sent to them as `Authorization: Bearer`; absent: no key is sent.
    #[serde(default)]
    pub backend_key_file: Option<std::path::PathBuf>,
    /// Versions.
    #[serde(default)]
    pub versions: Vec<VersionConfig>,
}

/// One version of an endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionConfig {
    /// Version name.
    pub name: String,
    /// Artifact digest.
    #[serde(default)]
    pub digest: Option<String>,
    /// Share of traffic.
    #[serde(default)]
    pub weight: u32,
    /// Backend addresses `host:port`.
    #[serde(default)]
    pub backends: Vec<String>,
}

/// Parses and validates a routing file.
pub fn parse(yaml: &str) -> Result<Snapshot, ConfigError> {
    let cfg: FileConfig =
        serde_saphyr::from_str(yaml).map_err(|e| ConfigError::Yaml(Box::new(e)))?;
    build(cfg)
}

/// Validates a parsed file into a snapshot.
pub fn build(cfg: FileConfig) -> Result<Snapshot, ConfigError> {
    let mut snap = Snapshot::default();
    let mut keys = Vec::new();
    for t in cfg.tenants {
        if snap.tenants.contains_key(&t.name) {
            return Err(ConfigError::Invalid(format!(
                "tenant `{}` appears twice",
                t.name
            )));
        }
        for k in &t.keys {
            let hash = parse_hash(&k.sha256).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "key `{}` of tenant `{}`: sha256 must be 64 hex digits",
                    k.name, t.name
                ))
            })?;
            keys.push(KeyEntry {
                hash,
                tenant: t.name.clone(),
                name: k.name.clone(),
            });
        }
        if let Some(r) = t.residency.as_deref().filter(|r| !residency_valid(r)) {
            return Err(ConfigError::Invalid(format!(
                "tenant `{}`: residency `{r}` must be a zone such as `jp` or `jp-east`",
                t.name
            )));
        }
        let tenant = Tenant::new(None, &t.name, t.endpoints, t.limits).with_residency(t.residency);
        snap.tenants.insert(tenant.id.clone(), Arc::new(tenant));
    }
    snap.keys = KeyRing::new(keys);
    snap.endpoints = endpoints(cfg.endpoints)?;
    snap.peers = cfg
        .peers
        .into_iter()
        .map(|p| match p {
            PeerConfig::Url(url) => Peer::new(&url, None),
            PeerConfig::WithResidency { url, residency } => Peer::new(&url, residency),
        })
        .collect::<Result<_, _>>()
        .map_err(ConfigError::Invalid)?;
    Ok(snap)
}

fn endpoints(list: Vec<EndpointConfig>) -> Result<BTreeMap<String, Arc<Endpoint>>, ConfigError> {
    let mut out = BTreeMap::new();
    for e in list {
        if out.contains_key(&e.name) {
            return Err(ConfigError::Invalid(format!(
                "endpoint `{}` appears twice",
                e.name
            )));
        }
        let versions = e
            .versions
            .into_iter()
            .map(|v| Version {
                name: v.name,
                digest: v.digest,
                weight: v.weight,
                backends: v.backends,
            })
            .collect();
        out.insert(
            e.name.clone(),
            Arc::new(Endpoint {
                id: e.name.clone(),
                namespace: None,
                backend_auth: backend_auth_from(&e.name, e.backend_key_file.as_deref())?,
                name: e.name,
                policy: e.guardrails,
                versions,
            }),
        );
    }
    Ok(out)
}

fn backend_auth_from(
    endpoint: &str,
    file: Option<&std::path::Path>,
) -> Result<Option<http::HeaderValue>, ConfigError> {
    let Some(file) = file else { return Ok(None) };
    let key = std::fs::read_to_string(file).map_err(|e| {
        ConfigError::Invalid(format!(
            "endpoint `{endpoint}`: cannot read backend_key_file {}: {e}",
            file.display()
        ))
    })?;
    crate::table::backend_auth(&key).map(Some).ok_or_else(|| {
        ConfigError::Invalid(format!(
            "endpoint `{endpoint}`: backend_key_file {} must hold one printable key",
            file.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::hash_key;
    use crate::table::Action;

    #[test]
    fn parses_a_full_file() {
        let h = hex::encode(hash_key("sk-1"));
        let yaml = format!(
            "tenants:\n  - name: a\n    endpoints: ['*']\n    limits: {{requests_per_minute: 5}}\n    keys: [{{name: k, sha256: '{h}'}}]\n\
             endpoints:\n  - name: m\n    guardrails: {{input: Block, output: Off}}\n    versions:\n      - {{name: v1, weight: 3, backends: ['127.0.0.1:1']}}\n\
             peers: ['https://peer:8080/']\n"
        );
        let s = parse(&yaml).expect("valid file");
        assert_eq!(
            s.keys.authenticate("sk-1").map(|i| i.tenant),
            Some("a".into())
        );
        assert_eq!(s.tenants["a"].limits.requests_per_minute, 5);
        assert_eq!(s.endpoints["m"].policy.input, Action::Block);
        assert_eq!(s.endpoints["m"].policy.output, Action::Off);
        assert_eq!(
            s.peers,
            vec![Peer {
                url: "https://peer:8080".into(),
                residency: None
            }]
        );
    }

    #[test]
    fn rejects_bad_hashes_unknown_fields_and_duplicates() {
        assert!(parse("tenants: [{name: a, keys: [{name: k, sha256: nothex}]}]").is_err());
        assert!(parse("endpoints: [{name: m, colour: red}]").is_err());
        assert!(parse("endpoints: [{name: m}, {name: m}]").is_err());
    }

    #[test]
    fn peers_need_https_unless_loopback_and_carry_their_residency() {
        let s = parse(
            "tenants: [{name: a, residency: jp}]\n\
             peers: [{url: 'https://osaka.example', residency: jp}, 'http://127.0.0.1:9/', {url: 'https://sg.example'}]",
        )
        .expect("valid");
        assert_eq!(s.tenants["a"].residency.as_deref(), Some("jp"));
        let got: Vec<(&str, Option<&str>)> = s
            .peers
            .iter()
            .map(|p| (p.url.as_str(), p.residency.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("https://osaka.example", Some("jp")),
                ("http://127.0.0.1:9", None),
                ("https://sg.example", None)
            ]
        );
        for bad in [
            "peers: ['http://osaka.example:8080']",
            "peers: [{url: 'https://x', residency: JP}]",
            "tenants: [{name: a, residency: 'jp east'}]",
        ] {
            let msg = parse(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(msg.contains("must be"), "{bad}: {msg}");
        }
    }

    #[test]
    fn a_backend_key_file_is_read_and_an_unusable_one_rejected() {
        let dir = tempfile::tempdir().expect("dir");
        let key = dir.path().join("k");
        std::fs::write(&key, "ansk-backend\n").expect("write");
        let s = parse(&format!(
            "endpoints: [{{name: m, backend_key_file: '{}'}}]",
            key.display()
        ))
        .expect("valid");
        let auth = s.endpoints["m"].backend_auth.clone().expect("a key");
        assert_eq!(auth.to_str().ok(), Some("Bearer ansk-backend"));
        let missing = parse("endpoints: [{name: m, backend_key_file: /nonexistent/k}]");
        let msg = missing.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("cannot read backend_key_file"), "{msg}");
        std::fs::write(&key, "  \n").expect("write");
        let empty = parse(&format!(
            "endpoints: [{{name: m, backend_key_file: '{}'}}]",
            key.display()
        ));
        assert!(empty.is_err());
    }
}
