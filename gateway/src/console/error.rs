//! Why a console request failed, shown as a page (or a redirect to sign in); store
//! and provider details are logged, never shown.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

/// A console request that could not be served.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Nobody is signed in (or the cookie expired): go to the sign-in page.
    #[error("sign in first")]
    SignIn,
    #[error("this page is for administrators")]
    Forbidden,
    #[error("the form is stale or was sent from another site; reload the page and try again")]
    Csrf,
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the gateway's store is unavailable; try again")]
    Store(#[from] crate::store::Error),
    #[error("{}", .0.public_message())]
    OAuth(#[from] crate::oauth::Error),
    #[error("{0}")]
    Admin(String),
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::SignIn => StatusCode::SEE_OTHER,
            Self::Forbidden | Self::Csrf => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Invalid(_) | Self::Admin(_) => StatusCode::BAD_REQUEST,
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::OAuth(e) => e.status(),
        }
    }
}

impl From<crate::admin::Error> for Error {
    fn from(e: crate::admin::Error) -> Self {
        match e {
            crate::admin::Error::Store(s) => Self::Store(s),
            crate::admin::Error::OAuth(o) => Self::OAuth(o),
            other => Self::Admin(other.to_string()),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match &self {
            Self::SignIn => return Redirect::to("/ui/signin").into_response(),
            Self::Store(error) => tracing::error!(%error, "console: store operation failed"),
            Self::OAuth(error) => tracing::warn!(%error, "console: OAuth operation failed"),
            _ => {}
        }
        let status = self.status();
        let title = match status {
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::SERVICE_UNAVAILABLE => "Unavailable",
            _ => "Something went wrong",
        };
        (status, super::layout::bare(title, &self.to_string())).into_response()
    }
}
