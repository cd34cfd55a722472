//! The one place where failures become HTTP responses, with OpenAI-style bodies
//! (`{"error": {"message", "type", "param", "code"}}`).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::scheduler::SubmitError;

/// An API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or its values are out of range.
    #[error("{0}")]
    Invalid(String),
    /// The prompt does not fit the context or the KV budget.
    #[error("{0}")]
    TooLong(String),
    /// The waiting queue is full.
    #[error("{0}")]
    QueueFull(String),
    /// The server is draining before shutdown.
    #[error("the server is shutting down; retry on another replica")]
    Draining,
    /// The model is still loading or warming up.
    #[error("the model is not ready yet")]
    NotReady,
    /// The engine failed.
    #[error("inference failed: {0}")]
    Engine(String),
    /// Test-only fault injection failed this request on purpose (`--fault-error-rate`).
    #[error("injected fault: this request failed on purpose (--fault-error-rate); retry")]
    InjectedFault,
    /// The engine's thread has stopped; the server is about to exit.
    #[error("the inference engine has stopped; retry on another replica")]
    EngineStopped,
    /// The server has an API key and the request did not present it.
    #[error("{}", if *presented { "invalid API key; send the server's key as `Authorization: Bearer <key>`" } else { "missing API key; send `Authorization: Bearer <key>`" })]
    Unauthorized {
        /// Whether the request sent a bearer token at all.
        presented: bool,
    },
}

impl ApiError {
    /// The `status` metric label for this failure.
    pub fn status_label(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid",
            Self::TooLong(_) => "too_long",
            Self::QueueFull(_) => "queue_full",
            Self::Draining => "draining",
            Self::NotReady => "not_ready",
            Self::Engine(_) | Self::InjectedFault => "error",
            Self::EngineStopped => "engine_stopped",
            Self::Unauthorized { .. } => "unauthorized",
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::Invalid(_) => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_request",
            ),
            Self::TooLong(_) => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "context_length_exceeded",
            ),
            Self::QueueFull(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "queue_full",
            ),
            Self::Draining => (StatusCode::SERVICE_UNAVAILABLE, "server_error", "draining"),
            Self::NotReady => (StatusCode::SERVICE_UNAVAILABLE, "server_error", "not_ready"),
            Self::Engine(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "engine_error",
            ),
            Self::InjectedFault => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "injected_fault",
            ),
            Self::EngineStopped => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "engine_stopped",
            ),
            Self::Unauthorized { .. } => (
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "invalid_api_key",
            ),
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::QueueFull(_) => Self::QueueFull(e.to_string()),
            SubmitError::PromptTooLong { .. } | SubmitError::ExceedsKvBudget { .. } => {
                Self::TooLong(e.to_string())
            }
            SubmitError::EmptyPrompt => Self::Invalid(e.to_string()),
            SubmitError::Stopped => Self::EngineStopped,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, code) = self.parts();
        let body = json!({"error": {"message": self.to_string(), "type": kind, "param": null, "code": code}});
        let mut resp = (status, Json(body)).into_response();
        if matches!(
            self,
            Self::QueueFull(_) | Self::Draining | Self::NotReady | Self::EngineStopped
        ) {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if matches!(self, Self::Unauthorized { .. }) {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
