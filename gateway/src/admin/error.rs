//! Admin API errors: each a status and a clean message (plus the offending field);
//! internal causes are logged, never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Why an admin API request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the admin API is disabled: set HAWSER_ADMIN_TOKEN")]
    Disabled,
    #[error("missing or invalid admin token")]
    Unauthorized,
    #[error("connection {0} not found")]
    NotFound(String),
    /// A spec problem in `field`.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("the request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    #[error("the request body could not be read")]
    BadBody,
    /// The path does not name a connection.
    #[error("{0}")]
    BadPath(String),
    #[error(
        "connection {0} is managed by the McpConnection resource {0}; change the resource instead (kubectl edit mcpc -n {ns})",
        ns = .0.split('/').next().unwrap_or_default()
    )]
    ManagedByResource(String),
    #[error("connection {0} is defined in the gateway's config file; change it there")]
    ManagedByFile(String),
    #[error(
        "connection names with a namespace ({0}) belong to McpConnection resources; create one with kubectl instead"
    )]
    NamespacedName(String),
    #[error("{}", .0.public_message())]
    OAuth(#[from] crate::oauth::Error),
    /// A policy that does not compile (422: the body is well-formed JSON).
    #[error("{field}: {message}")]
    InvalidPolicy { field: String, message: String },
    #[error("policy {0} not found")]
    PolicyNotFound(String),
    #[error("policy {0} is managed by an McpPolicy resource; change the resource instead")]
    PolicyManagedByResource(String),
    #[error("policy {0} is defined in the gateway's config file; change it there")]
    PolicyManagedByFile(String),
    #[error("API keys are off: set clientAuth.apiKeys: true in the gateway's config")]
    ApiKeysOff,
    #[error("API key {0} not found or already revoked")]
    KeyNotFound(String),
    #[error("the store is unavailable; retry")]
    Store(#[from] crate::store::Error),
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Disabled | Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) | Self::KeyNotFound(_) | Self::PolicyNotFound(_) => {
                StatusCode::NOT_FOUND
            }
            Self::InvalidPolicy { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PolicyManagedByResource(_) | Self::PolicyManagedByFile(_) => StatusCode::CONFLICT,
            Self::ApiKeysOff => StatusCode::CONFLICT,
            Self::Invalid { .. } | Self::BadPath(_) | Self::BadBody => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::ManagedByResource(_) | Self::ManagedByFile(_) | Self::NamespacedName(_) => {
                StatusCode::CONFLICT
            }
            Self::OAuth(e) => e.status(),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match &self {
            Self::Store(error) | Self::OAuth(crate::oauth::Error::Store(error)) => {
                tracing::error!(%error, "admin API store operation failed");
            }
            _ => {}
        }
        let mut body = json!({ "error": self.to_string() });
        if let Self::Invalid { field, .. } | Self::InvalidPolicy { field, .. } = &self {
            body["field"] = json!(field);
        }
        let mut response = (self.status(), Json(body)).into_response();
        if let Self::Unauthorized = self {
            // RFC 9110 §11.6.1: a 401 says how to authenticate.
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"hawser-admin\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_details_never_reach_the_client() {
        let inner = crate::store::Error::Corrupt("row 42 of table secrets".into());
        let e = Error::Store(inner);
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(!e.to_string().contains("secrets"), "{e}");
        let e = Error::OAuth(crate::oauth::Error::Store(crate::store::Error::Corrupt(
            "x".into(),
        )));
        assert_eq!(e.to_string(), "the store is unavailable; retry");
        let e = Error::ManagedByResource("team-a/gh".into());
        assert!(
            e.to_string().ends_with("(kubectl edit mcpc -n team-a)"),
            "{e}"
        );
        assert_eq!(e.status(), StatusCode::CONFLICT);
    }
}
