//! The one place where request failures become HTTP responses, with OpenAI-style error bodies
//! (`{"error": {"message", "type", "param", "code"}}`).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The fixed, safe answer when nothing can serve: the service is unavailable, try again later, and
/// for anything about health consult a doctor or other clinician.
pub const UNAVAILABLE_MESSAGE: &str = "現在、医療AIアシスタントは応答できません。しばらくしてから再度お試しください。\
体調や治療に関する判断が必要な場合は、医師などの医療従事者にご相談ください。緊急の場合は119番に連絡してください。";

/// The answer sent instead of model output that a `Block` output policy stopped.
pub const OUTPUT_BLOCKED_MESSAGE: &str = "この回答には個人情報が含まれる可能性があるため表示できません。\
ご不明な点は医師などの医療従事者にご相談ください。";

/// A request failure, mapped to its status code in one [`IntoResponse`].
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not valid JSON or misses a required field.
    #[error("{0}")]
    BadRequest(String),
    /// No `Authorization: Bearer` header.
    #[error("missing API key: send `Authorization: Bearer <key>`")]
    MissingKey,
    /// The key is unknown or was revoked.
    #[error("invalid or revoked API key")]
    InvalidKey,
    /// The tenant may not use this endpoint.
    #[error("this API key may not use model `{0}`")]
    Forbidden(String),
    /// No endpoint of that name exists.
    #[error("model `{0}` does not exist")]
    NotFound(String),
    /// The path is not served.
    #[error("no such route: {0}")]
    NoRoute(String),
    /// The body exceeds the configured limit.
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    /// A per-tenant limit is exhausted.
    #[error("{limit} limit of this tenant exceeded; retry after {retry_after_s} s")]
    RateLimited {
        /// Which limit: `requests_per_minute`, `tokens_per_minute` or `max_concurrent`.
        limit: &'static str,
        /// Seconds until a retry can succeed.
        retry_after_s: u64,
    },
    /// The input contains personal information and the endpoint's input policy is `Block`.
    #[error(
        "the request contains personal information ({0}) and this endpoint does not accept it; remove it and retry"
    )]
    InputBlocked(String),
    /// No backend in this region or a peer region could serve.
    #[error("{UNAVAILABLE_MESSAGE}")]
    Unavailable,
    /// The client did not send the whole body in time.
    #[error("the request body did not arrive within {0} s: send it at once, or retry")]
    BodyTimeout(u64),
    /// A request with a peer token that this gateway does not accept, or for a tenant it does not know.
    #[error("{0}")]
    PeerRefused(&'static str),
}

impl ApiError {
    /// Status code, OpenAI error type and code.
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::BadRequest(_) => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_request",
            ),
            Self::MissingKey => (
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "missing_api_key",
            ),
            Self::InvalidKey => (
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "invalid_api_key",
            ),
            Self::PeerRefused(_) => (
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "peer_refused",
            ),
            Self::Forbidden(_) => (
                StatusCode::FORBIDDEN,
                "permission_error",
                "model_not_permitted",
            ),
            Self::NotFound(_) => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "model_not_found",
            ),
            Self::NoRoute(_) => (StatusCode::NOT_FOUND, "invalid_request_error", "not_found"),
            Self::TooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "request_too_large",
            ),
            Self::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "rate_limit_exceeded",
            ),
            Self::InputBlocked(_) => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "pii_blocked",
            ),
            Self::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "service_unavailable",
            ),
            Self::BodyTimeout(_) => (
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request_error",
                "request_timeout",
            ),
        }
    }

    /// The OpenAI error code (also the audit `outcome`).
    pub fn code(&self) -> &'static str {
        self.parts().2
    }

    /// The HTTP status of this failure.
    pub fn status(&self) -> StatusCode {
        self.parts().0
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, code) = self.parts();
        let body = json!({"error": {"message": self.to_string(), "type": kind, "param": null, "code": code}});
        let mut resp = (status, Json(body)).into_response();
        let retry = match &self {
            Self::RateLimited { retry_after_s, .. } => Some((*retry_after_s).max(1)),
            Self::Unavailable => Some(5),
            _ => None,
        };
        if let Some(s) = retry {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
