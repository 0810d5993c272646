//! Why an OAuth operation on a connection could not be done. `Display` is what an
//! operator may see, except for [`Error::Store`], whose details stay in the log.

use axum::http::StatusCode;

use crate::upstream::UpstreamError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connection {0} not found")]
    NotFound(String),
    #[error("connection {0} does not use OAuth")]
    NotOAuth(String),
    /// The stored connection cannot be used (unreadable or invalid spec).
    #[error("connection {connection}: {message}")]
    Unusable { connection: String, message: String },
    #[error(
        "HAWSER_PUBLIC_URL is not set: the authorization server needs a redirect URI that reaches Hawser"
    )]
    NoPublicUrl,
    #[error("connection {0} uses the client_credentials grant: there is nothing to authorize")]
    NothingToAuthorize(String),
    /// Discovering the authorization server failed.
    #[error("{0}")]
    Discovery(UpstreamError),
    #[error("no authorization endpoint")]
    NoAuthorizationEndpoint,
    #[error("redirect URI: {0}")]
    RedirectUri(url::ParseError),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
}

impl Error {
    /// The HTTP status of an admin API answer carrying this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::NotOAuth(_) | Self::Unusable { .. } | Self::NoPublicUrl => StatusCode::CONFLICT,
            Self::NothingToAuthorize(_) => StatusCode::CONFLICT,
            Self::Discovery(_) | Self::NoAuthorizationEndpoint => StatusCode::BAD_GATEWAY,
            Self::RedirectUri(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// What a person may be shown: the store's details are not for them.
    pub fn public_message(&self) -> String {
        match self {
            Self::Store(_) => "the store is unavailable; retry".to_owned(),
            other => other.to_string(),
        }
    }
}
