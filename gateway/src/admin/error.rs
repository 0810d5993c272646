//! Admin API errors: a status and a message (plus the offending field), logged with
//! the internal cause while the client sees only the clean message.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An admin API error.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            field: None,
        }
    }

    /// 400 for a spec problem in `field`.
    pub fn invalid(field: String, message: String) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: format!("{field}: {message}"),
            field: Some(field),
        }
    }

    /// The message the client sees.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn not_found(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("connection {name} not found"),
        )
    }
}

impl From<crate::store::Error> for ApiError {
    fn from(error: crate::store::Error) -> Self {
        tracing::error!(%error, "admin API store operation failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the store is unavailable; retry",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let Some(field) = self.field {
            body["field"] = json!(field);
        }
        (self.status, Json(body)).into_response()
    }
}
