//! Reconcile errors: one enum, a fixed metric label per variant, and whether a retry can help.

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or could not be reached.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// An object could not be serialized (a bug, not user input).
    #[error("cannot serialize object: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The object cannot work as written; the message says what to change.
    #[error("{0}")]
    Invalid(String),
    /// A child's name is taken by an object the operator does not own; retried with backoff, since
    /// the fix (deleting or renaming that object) does not change the parent.
    #[error("{0}")]
    NameTaken(String),
}

/// Result of operator steps.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Fixed, low-cardinality label for the `anshin_operator_reconcile_errors_total` metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(s)) if s.code == 403 => "forbidden",
            Error::Kube(kube::Error::Api(_)) => "api_error",
            Error::Kube(_) => "api_unreachable",
            Error::Serialize(_) => "serialize",
            Error::Invalid(_) => "invalid_object",
            Error::NameTaken(_) => "name_taken",
        }
    }

    /// Whether retrying later can help (an invalid object waits for a change instead).
    pub fn is_transient(&self) -> bool {
        !matches!(self, Error::Invalid(_))
    }
}
