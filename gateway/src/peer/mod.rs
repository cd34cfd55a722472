//! Region forwarding between gateways. When nothing local can serve, a gateway sends the request to a
//! peer region's gateway: the body its own backends would get (input guardrails applied, PII as this
//! request's placeholders), never the caller's original body nor the hospital's `Authorization`
//! header. It authenticates as a gateway with a peer token ([`PEER_TOKEN_HEADER`]) and names the
//! tenant ([`PEER_TENANT_HEADER`]); only peers whose residency matches the tenant's are tried. The
//! peer's answer then goes through this gateway's own output guardrails ([`crate::respond`]).
//!
//! A receiving gateway honours the tenant header only with a token it accepts (`--accept-peer-token-file`),
//! serves the request as that tenant of its own table (endpoints, limits) and never forwards it again.

mod forward;
pub mod tls;

pub use forward::PeerClient;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::HeaderMap;
use http::HeaderValue;

use crate::error::ApiError;
use crate::keys::{Identity, KeyEntry, KeyRing, parse_hash};
use crate::table::{Snapshot, Tenant};

/// Header carrying the forwarding gateway's peer token.
pub const PEER_TOKEN_HEADER: &str = "x-anshin-peer-token";

/// Header carrying the tenant (`namespace/name`) a forwarded request is for; ignored without a valid
/// [`PEER_TOKEN_HEADER`].
pub const PEER_TENANT_HEADER: &str = "x-anshin-peer-tenant";

/// Shortest peer token accepted in `--peer-token-file`.
pub const MIN_TOKEN_CHARS: usize = 32;

/// Why peer settings could not be loaded (the gateway does not start).
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file's content is not usable.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
}

fn read(path: &Path) -> Result<String, PeerError> {
    std::fs::read_to_string(path).map_err(|source| PeerError::Read {
        path: path.to_owned(),
        source,
    })
}

fn invalid(path: &Path, message: impl Into<String>) -> PeerError {
    PeerError::Invalid {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Everything about peers that comes from flags, fixed for the life of the process.
#[derive(Debug, Clone, Default)]
pub struct Peering {
    /// TLS client settings for `https://` peers (trusting `--peer-ca-file`); `None`: no CA is
    /// trusted, so every `https://` peer fails its handshake (fail closed).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The token this gateway presents to peers (`--peer-token-file`); `None`: it never forwards.
    pub token: Option<HeaderValue>,
    /// Hashes of the tokens accepted from peers (`--accept-peer-token-file`), by peer name.
    pub accepted: KeyRing,
}

/// Reads `--peer-token-file`: one printable token of at least [`MIN_TOKEN_CHARS`] characters.
pub fn load_token(path: &Path) -> Result<HeaderValue, PeerError> {
    let text = read(path)?;
    let token = text.trim();
    if token.chars().count() < MIN_TOKEN_CHARS || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            path,
            format!(
                "must hold one token of at least {MIN_TOKEN_CHARS} printable ASCII characters without spaces"
            ),
        ));
    }
    let mut v =
        HeaderValue::from_str(token).map_err(|_| invalid(path, "token is not header-safe"))?;
    v.set_sensitive(true);
    Ok(v)
}

/// Reads `--accept-peer-token-file`: one accepted token a line as `<sha256 hex> <peer name>`
/// (`anshin-gateway hash-key` prints the hash); blank lines and `#` comments are skipped.
pub fn load_accepted(path: &Path) -> Result<KeyRing, PeerError> {
    let text = read(path)?;
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let hash = parts.next().and_then(parse_hash);
        let name = parts.next().filter(|n| valid_name(n));
        let (Some(hash), Some(name), None) = (hash, name, parts.next()) else {
            return Err(invalid(
                path,
                format!(
                    "line {}: expected `<sha256 of the token, 64 hex digits> <peer name: a-z, 0-9, ->`",
                    i + 1
                ),
            ));
        };
        entries.push(KeyEntry {
            hash,
            tenant: name.to_owned(),
            name: "peer".into(),
        });
    }
    Ok(KeyRing::new(entries))
}

fn valid_name(n: &str) -> bool {
    (1..=63).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A request authenticated as forwarded by a peer gateway.
pub(crate) struct PeerCaller {
    /// The tenant it is for, with the peer token's fingerprint as key fingerprint.
    pub(crate) identity: Identity,
    /// That tenant in this gateway's table.
    pub(crate) tenant: Arc<Tenant>,
    /// `peer:<name>` of the accepted token, for the audit record.
    pub(crate) origin: String,
}

/// `None` for an ordinary request (no [`PEER_TOKEN_HEADER`]); the peer caller when the token is
/// accepted and names a tenant of this table; an error otherwise (never falls back to the key).
pub(crate) fn authenticate(
    snap: &Snapshot,
    accepted: &KeyRing,
    headers: &HeaderMap,
) -> Result<Option<PeerCaller>, ApiError> {
    let Some(token) = headers.get(PEER_TOKEN_HEADER) else {
        return Ok(None);
    };
    let peer = token
        .to_str()
        .ok()
        .and_then(|t| accepted.authenticate(t.trim()))
        .ok_or(ApiError::PeerRefused(
            "the peer token is not accepted by this gateway",
        ))?;
    let tenant = headers
        .get(PEER_TENANT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|id| snap.tenants.get(id))
        .cloned()
        .ok_or(ApiError::PeerRefused(
            "the forwarded tenant is missing or unknown in this region",
        ))?;
    Ok(Some(PeerCaller {
        identity: Identity {
            tenant: tenant.id.clone(),
            key_name: "peer".into(),
            fingerprint: peer.fingerprint,
        },
        tenant,
        origin: format!("peer:{}", peer.tenant),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::hash_key;
    use crate::table::Limits;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn token_files_need_a_long_printable_token() {
        let dir = tempfile::tempdir().expect("dir");
        let ok = write(dir.path(), "ok", &format!("{}\n", "t".repeat(40)));
        assert_eq!(
            load_token(&ok)
                .ok()
                .and_then(|v| v.to_str().ok().map(str::to_owned)),
            Some("t".repeat(40))
        );
        for bad in [
            "short",
            "",
            &format!("{} {}", "a".repeat(20), "b".repeat(20)),
        ] {
            let p = write(dir.path(), "bad", bad);
            assert!(load_token(&p).is_err(), "{bad}");
        }
        assert!(load_token(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn accepted_tokens_are_hashes_with_peer_names_and_only_they_authenticate() {
        let dir = tempfile::tempdir().expect("dir");
        let h = hex::encode(hash_key("osaka-token"));
        let p = write(dir.path(), "acc", &format!("# peers\n\n{h} osaka\n"));
        let ring = load_accepted(&p).expect("valid");
        let mut snap = Snapshot::default();
        let t = Tenant::new(
            Some("ns".into()),
            "hosp",
            vec!["*".into()],
            Limits::default(),
        );
        snap.tenants.insert(t.id.clone(), Arc::new(t));
        let headers = |token: &str, tenant: &str| {
            let mut h = HeaderMap::new();
            h.insert(PEER_TOKEN_HEADER, HeaderValue::from_str(token).expect("hv"));
            h.insert(
                PEER_TENANT_HEADER,
                HeaderValue::from_str(tenant).expect("hv"),
            );
            h
        };
        let ok = authenticate(&snap, &ring, &headers("osaka-token", "ns/hosp"))
            .ok()
            .flatten()
            .expect("accepted");
        assert_eq!(
            (ok.tenant.id.as_str(), ok.origin.as_str()),
            ("ns/hosp", "peer:osaka")
        );
        assert!(authenticate(&snap, &ring, &headers("other", "ns/hosp")).is_err());
        assert!(authenticate(&snap, &ring, &headers("osaka-token", "ns/nobody")).is_err());
        assert!(
            authenticate(
                &snap,
                &KeyRing::default(),
                &headers("osaka-token", "ns/hosp")
            )
            .is_err()
        );
        assert!(matches!(
            authenticate(&snap, &ring, &HeaderMap::new()),
            Ok(None)
        ));
        for bad in [
            "abcd osaka",
            &h.clone(),
            &format!("{h} Osaka"),
            &format!("{h} a b"),
        ] {
            let p = write(dir.path(), "bad", bad);
            assert!(load_accepted(&p).is_err(), "{bad}");
        }
    }
}
