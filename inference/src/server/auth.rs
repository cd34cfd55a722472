//! The server's API key (`--api-key-file`): when one is set, the API and `/metrics` answer only requests
//! that send `Authorization: Bearer <key>`; everyone else gets 401. Health and readiness stay open.
//!
//! The key is read once at start-up from a file (so it never appears in the process's arguments) and
//! only its SHA-256 is kept. A presented key is hashed too and the two digests are compared without an
//! early exit, so the time a comparison takes says nothing about how much of a guess was right.
//! [`authenticate`] also tells the handlers who called ([`Caller`]): only an authenticated caller may
//! choose its cache scope.

use std::path::{Path, PathBuf};

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::ApiError;

/// Why the key file cannot be used; the server refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    /// The file cannot be read (missing, no permission, not UTF-8).
    #[error("cannot read the API key file {}: {source}; mount the key there or leave out --api-key-file", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file holds nothing but whitespace.
    #[error("the API key file {} is empty; write the key into it", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The key is not one token of visible ASCII characters, as an `Authorization` header carries it.
    #[error(
        "the API key in {} contains whitespace, control or non-ASCII characters; the file must hold one key as clients send it after `Bearer `", path.display()
    )]
    Malformed {
        /// The file.
        path: PathBuf,
    },
}

/// The server's API key, kept as its SHA-256 digest.
#[derive(Clone)]
pub struct ApiKey {
    digest: [u8; 32],
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(..)")
    }
}

impl ApiKey {
    /// Reads the key from `path`: the file's text without surrounding whitespace.
    pub fn from_file(path: &Path) -> Result<Self, ApiKeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| ApiKeyError::Unreadable {
            path: path.to_owned(),
            source,
        })?;
        let key = text.trim();
        if key.is_empty() {
            return Err(ApiKeyError::Empty {
                path: path.to_owned(),
            });
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiKeyError::Malformed {
                path: path.to_owned(),
            });
        }
        Ok(Self::new(key))
    }

    /// A key from its text.
    pub fn new(key: &str) -> Self {
        Self {
            digest: Sha256::digest(key.as_bytes()).into(),
        }
    }

    /// Whether `presented` is the key. Both sides are hashed and every byte of the digests is compared.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let theirs: [u8; 32] = Sha256::digest(presented).into();
        let diff = self
            .digest
            .iter()
            .zip(theirs)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

/// Who sent a request, as [`authenticate`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// The request presented the server's API key.
    Authenticated,
    /// The server has no API key, so nobody is authenticated.
    Anonymous,
}

/// Middleware: refuses a request without the key (when the server has one) with 401, and records the
/// [`Caller`] for the handlers.
pub async fn authenticate(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let caller = match &s.api_key {
        None => Caller::Anonymous,
        Some(key) => match bearer(&req) {
            Some(token) if key.matches(token) => Caller::Authenticated,
            presented => {
                s.metrics.request_done("unauthorized");
                return ApiError::Unauthorized {
                    presented: presented.is_some(),
                }
                .into_response();
            }
        },
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case).
fn bearer(req: &Request) -> Option<&[u8]> {
    let value = req.headers().get(AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    Some(token.trim_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("api-key");
        std::fs::write(&path, text).expect("write");
        (dir, path)
    }

    #[test]
    fn the_key_file_is_trimmed_and_only_the_exact_key_matches() {
        let (_dir, path) = key_file("  sk-anshin-0123456789abcdef\n");
        let key = ApiKey::from_file(&path).expect("key");
        assert!(key.matches(b"sk-anshin-0123456789abcdef"));
        for wrong in [
            &b""[..],
            b"sk-anshin-0123456789abcde",
            b"sk-anshin-0123456789abcdef0",
            b"SK-ANSHIN-0123456789ABCDEF",
        ] {
            assert!(!key.matches(wrong), "{wrong:?}");
        }
        assert_eq!(
            format!("{key:?}"),
            "ApiKey(..)",
            "Debug never shows the key"
        );
    }

    #[test]
    fn an_empty_missing_or_malformed_key_file_is_refused_with_its_path() {
        let (_dir, empty) = key_file(" \n\t\n");
        let err = ApiKey::from_file(&empty).expect_err("empty");
        assert!(matches!(err, ApiKeyError::Empty { .. }), "{err}");
        assert!(
            err.to_string().contains(&empty.display().to_string()),
            "{err}"
        );

        let missing = empty.with_file_name("absent");
        let err = ApiKey::from_file(&missing).expect_err("missing");
        assert!(matches!(err, ApiKeyError::Unreadable { .. }), "{err}");

        let (_dir, two) = key_file("first-key\nsecond-key\n");
        let err = ApiKey::from_file(&two).expect_err("two keys");
        assert!(matches!(err, ApiKeyError::Malformed { .. }), "{err}");
        assert!(
            !err.to_string().contains("first-key"),
            "the key stays out of messages"
        );
    }
}
