//! [`Error`]: every way the MCP endpoints refuse or fail a request, and how each is
//! answered: the HTTP status, the JSON-RPC code, the metric label. What a client reads
//! is written here; internal causes (store errors) go to the log only.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use bytes::Bytes;

use super::reply::{self, Reply};
use crate::identity::Rejection;
use crate::jsonrpc::{self, Id, ParseError, code};
use crate::revision;
use crate::upstream::UpstreamError;

/// Why a request to `/mcp` or `/mcp/{connection}` was not served.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- refused before JSON-RPC: an HTTP error status
    #[error("unknown connection")]
    UnknownPath,
    #[error("unknown connection {0:?}")]
    UnknownConnection(String),
    #[error("more than one {0} header")]
    DuplicateHeader(&'static str),
    #[error("a Host header is required")]
    MissingHost,
    #[error("Host {0:?} is not allowed (security.allowedHosts)")]
    HostNotAllowed(String),
    #[error("Origin {0:?} is not allowed (security.allowedOrigins)")]
    OriginNotAllowed(String),
    #[error("{0}")]
    Unauthenticated(Rejection),
    /// Too many failed authentications from this client address.
    #[error("too many failed authentications from this address: retry in {} s", .0.as_secs())]
    TooManyFailures(std::time::Duration),
    #[error("request body larger than {0} bytes, or unreadable")]
    BodyTooLarge(usize),
    #[error("request body not received within {0:?}")]
    BodyTimeout(std::time::Duration),
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("Accept must include application/json and text/event-stream")]
    NotAcceptable,
    #[error("Accept must include text/event-stream")]
    NotAcceptableStream,
    #[error("{0}")]
    Parse(ParseError),
    #[error("unsupported protocol version {version:?}; supported: {}", revision::ALL.join(", "))]
    UnsupportedVersion { version: String },
    /// 2026-07-28: a header disagrees with the body, or a required one is missing.
    #[error("header mismatch: {0}")]
    HeaderMismatch(String),
    /// 2026-07-28: the `_meta` envelope lacks what the revision requires.
    #[error("{0}")]
    MetaInvalid(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("Bad Request: Mcp-Session-Id header is required")]
    SessionRequired,
    /// GET or DELETE without a session: only 2025 sessions have streams to open or end.
    #[error("{0} needs an Mcp-Session-Id (a 2025 session); 2026-07-28 clients only POST")]
    MethodNotAllowed(&'static str),
    #[error("session not found: initialize a new session")]
    SessionNotFound,
    #[error("session store unavailable; retry")]
    Store(#[source] crate::store::Error),

    // --- answered in JSON-RPC (HTTP 200)
    #[error("{0}")]
    InvalidParams(String),
    /// The server needs an answer the client did not declare it can give.
    #[error("{what} needs the client capability {capability:?}, which this client did not declare")]
    MissingCapability {
        capability: &'static str,
        what: String,
    },
    /// The request needs an extension the client did not declare.
    #[error(
        "{what} needs the extension {extension:?}, which this client did not declare in its capabilities"
    )]
    MissingExtension {
        extension: &'static str,
        what: String,
    },
    /// A `requestState` Hawser did not issue to this caller, or one that expired.
    #[error("invalid or expired requestState: retry the request without it")]
    InvalidRequestState,
    #[error("session is already initialized")]
    AlreadyInitialized,
    #[error("method not found: {method}{}", hint.map(|h| format!(" ({h})")).unwrap_or_default())]
    MethodNotFound {
        method: String,
        hint: Option<&'static str>,
    },
    /// A tool or prompt the endpoint does not offer (to this caller).
    #[error("unknown {kind} {name:?}")]
    UnknownName { kind: &'static str, name: String },
    #[error("resource not found: {0}")]
    ResourceNotFound(String),
    /// A rate limit of a policy refused the call.
    #[error("rate limited by policy {policy}: retry in {} ms", retry_after.as_millis())]
    RateLimited {
        policy: String,
        retry_after: std::time::Duration,
    },
    /// A policy refused the call (its contents are not shown).
    #[error("denied by policy {policy}")]
    Denied { policy: String, rule: Option<usize> },
    #[error("connection {0:?} no longer exists")]
    ConnectionGone(String),
    #[error("connection is not available")]
    ConnectionUnavailable,
    /// A name of a connection whose lists Hawser has not read yet (it is starting, or
    /// has not been reached since): not known to be unknown, so worth a retry.
    #[error(
        "connection {0:?} has not listed what it serves yet (starting, or not reachable): retry shortly"
    )]
    NotDiscovered(String),
    #[error("connection {connection:?}: {error}")]
    Upstream {
        connection: String,
        error: UpstreamError,
    },
}

impl Error {
    /// The upstream failure of a call to `connection`.
    pub fn upstream(connection: &str, error: UpstreamError) -> Self {
        Self::Upstream {
            connection: connection.to_owned(),
            error,
        }
    }

    /// The HTTP status; 200 for errors answered in JSON-RPC.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnknownPath | Self::UnknownConnection(_) | Self::SessionNotFound => {
                StatusCode::NOT_FOUND
            }
            Self::HostNotAllowed(_) | Self::OriginNotAllowed(_) => StatusCode::FORBIDDEN,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthenticated(r) => r.status(),
            Self::TooManyFailures(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotAcceptable | Self::NotAcceptableStream => StatusCode::NOT_ACCEPTABLE,
            Self::Parse(_)
            | Self::DuplicateHeader(_)
            | Self::MissingHost
            | Self::UnsupportedVersion { .. }
            | Self::HeaderMismatch(_)
            | Self::MetaInvalid(_)
            | Self::InvalidRequest(_)
            | Self::SessionRequired => StatusCode::BAD_REQUEST,
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::OK,
        }
    }

    /// The JSON-RPC error code of the body.
    pub fn jsonrpc_code(&self) -> i64 {
        match self {
            Self::Parse(e) => e.code(),
            Self::InvalidParams(_)
            | Self::UnknownName { .. }
            | Self::MetaInvalid(_)
            | Self::InvalidRequestState => code::INVALID_PARAMS,
            Self::UnsupportedVersion { .. } => revision::code::UNSUPPORTED_VERSION,
            Self::HeaderMismatch(_) => revision::code::HEADER_MISMATCH,
            Self::MissingCapability { .. } | Self::MissingExtension { .. } => {
                revision::code::MISSING_CLIENT_CAPABILITY
            }
            Self::MethodNotFound { .. } => code::METHOD_NOT_FOUND,
            Self::Denied { .. } => code::POLICY_DENIED,
            Self::RateLimited { .. } => code::RATE_LIMITED,
            Self::ResourceNotFound(_) => code::RESOURCE_NOT_FOUND,
            Self::ConnectionGone(_) | Self::ConnectionUnavailable | Self::NotDiscovered(_) => {
                code::UPSTREAM_UNAVAILABLE
            }
            Self::Upstream { error, .. } => error.jsonrpc_code(),
            // HTTP-level refusals carry "invalid request", as the MCP SDKs expect.
            _ => code::INVALID_REQUEST,
        }
    }

    /// The outcome label of `hawser_requests_total` and the audit error category.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::MissingHost
            | Self::HostNotAllowed(_)
            | Self::OriginNotAllowed(_)
            | Self::Unauthenticated(_) => "auth",
            Self::TooManyFailures(_) => "rate_limited",
            Self::UnknownName { .. } => "policy",
            Self::Denied { .. } => "denied",
            Self::RateLimited { .. } => "rate_limited",
            Self::ConnectionGone(_) | Self::ConnectionUnavailable | Self::NotDiscovered(_) => {
                "upstream"
            }
            Self::Upstream { error, .. } => error.category(),
            Self::Store(_) => "error",
            _ => "protocol",
        }
    }

    /// The error as a JSON-RPC response message to request `id`.
    pub fn to_message(&self, id: Option<&Id>) -> Bytes {
        let data = match self {
            Self::Upstream { connection, error } => Some(serde_json::json!({
                "connection": connection,
                "category": error.category(),
            })),
            Self::UnsupportedVersion { version } => Some(serde_json::json!({
                "supported": revision::ALL,
                "requested": version,
            })),
            Self::MissingCapability { capability, .. } => Some(serde_json::json!({
                "requiredCapabilities": { *capability: {} },
            })),
            Self::MissingExtension { extension, .. } => Some(serde_json::json!({
                "requiredCapabilities": { "extensions": { *extension: {} } },
            })),
            Self::Denied { policy, .. } => Some(serde_json::json!({ "policy": policy })),
            Self::NotDiscovered(connection) => Some(serde_json::json!({
                "connection": connection,
                "category": "upstream",
            })),
            Self::RateLimited {
                policy,
                retry_after,
            } => Some(serde_json::json!({
                "policy": policy,
                "retryAfterMs": u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX),
            })),
            _ => None,
        };
        jsonrpc::error(
            id.map(Id::json),
            self.jsonrpc_code(),
            &self.to_string(),
            data.as_ref(),
        )
    }

    /// The whole HTTP answer to request `id` (`None` where it could not be read).
    pub fn reply(self, id: Option<&Id>) -> Reply {
        if let Self::Store(error) = &self {
            tracing::error!(%error, "session store operation failed");
        }
        let mut r = reply::json(self.to_message(id));
        *r.status_mut() = self.status();
        match self {
            Self::Unauthenticated(rejection) => {
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, rejection.challenge.clone());
                if rejection.status() == StatusCode::SERVICE_UNAVAILABLE {
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                }
            }
            Self::MethodNotAllowed(_) => {
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("POST"));
            }
            Self::TooManyFailures(wait) => {
                r.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(wait.as_secs().max(1)),
                );
            }
            // The store answers again within seconds, or the probe says it is away.
            Self::Store(_) => {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        r
    }
}

impl Error {
    /// The answer in the era of the request: see [`Self::reply_modern`].
    pub fn reply_in(self, id: Option<&Id>, modern: bool) -> Reply {
        if modern {
            self.reply_modern(id)
        } else {
            self.reply(id)
        }
    }

    /// The answer to a 2026-07-28 request: the JSON-RPC error with the HTTP status the
    /// revision gives its code (400 for malformed requests, 404 for unknown methods).
    pub fn reply_modern(self, id: Option<&Id>) -> Reply {
        let status = match self.jsonrpc_code() {
            code::PARSE_ERROR
            | code::INVALID_REQUEST
            | code::INVALID_PARAMS
            | revision::code::HEADER_MISMATCH
            | revision::code::MISSING_CLIENT_CAPABILITY
            | revision::code::UNSUPPORTED_VERSION => StatusCode::BAD_REQUEST,
            code::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
            _ => self.status(),
        };
        let status = if self.status() == StatusCode::OK {
            status
        } else {
            self.status()
        };
        let mut r = self.reply(id);
        *r.status_mut() = status;
        r
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Reply {
        self.reply(None)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Reason;

    fn body(r: Reply) -> serde_json::Value {
        let (_, body) = r.into_parts();
        let bytes = futures::executor::block_on(axum::body::to_bytes(body, 1 << 20)).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn refusals_before_json_rpc_have_a_status_and_a_null_id() {
        for (error, status) in [
            (Error::UnknownConnection("gh".into()), 404),
            (Error::HostNotAllowed("evil".into()), 403),
            (Error::MissingHost, 400),
            (Error::Unauthenticated(rejection(Reason::Missing)), 401),
            (
                Error::Unauthenticated(rejection(Reason::InsufficientScope)),
                403,
            ),
            (Error::BodyTooLarge(10), 413),
            (Error::UnsupportedMediaType, 415),
            (Error::NotAcceptable, 406),
            (Error::SessionRequired, 400),
            (Error::SessionNotFound, 404),
        ] {
            let message = error.to_string();
            let r = error.reply(None);
            assert_eq!(r.status().as_u16(), status, "{message}");
            let b = body(r);
            assert_eq!(b["id"], serde_json::Value::Null);
            assert_eq!(b["error"]["code"], code::INVALID_REQUEST);
            assert_eq!(b["error"]["message"], message.as_str());
        }
    }

    fn rejection(reason: Reason) -> Rejection {
        Rejection {
            reason,
            challenge: HeaderValue::from_static("Bearer resource_metadata=\"https://gw/m\""),
        }
    }

    #[test]
    fn a_401_says_how_to_authenticate() {
        let r = Error::Unauthenticated(rejection(Reason::Invalid)).reply(None);
        assert_eq!(
            r.headers().get(header::WWW_AUTHENTICATE).unwrap(),
            "Bearer resource_metadata=\"https://gw/m\""
        );
    }

    #[test]
    fn json_rpc_errors_answer_the_request_with_their_code() {
        let id = Id::string("r1");
        for (error, code, label) in [
            (
                Error::UnknownName {
                    kind: "tool",
                    name: "x".into(),
                },
                code::INVALID_PARAMS,
                "policy",
            ),
            (
                Error::ResourceNotFound("file:///x".into()),
                code::RESOURCE_NOT_FOUND,
                "protocol",
            ),
            (
                Error::upstream("gh", UpstreamError::Closed),
                UpstreamError::Closed.jsonrpc_code(),
                UpstreamError::Closed.category(),
            ),
        ] {
            assert_eq!(error.metric_label(), label);
            let r = error.reply(Some(&id));
            assert_eq!(r.status(), StatusCode::OK);
            let b = body(r);
            assert_eq!(b["id"], "r1");
            assert_eq!(b["error"]["code"], code);
        }
        let b = body(Error::upstream("gh", UpstreamError::Closed).reply(Some(&id)));
        assert_eq!(b["error"]["data"]["connection"], "gh");
        assert!(
            b["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("connection \"gh\": "),
            "{b}"
        );
    }

    #[test]
    fn store_details_stay_in_the_log() {
        let e = Error::Store(crate::store::Error::Corrupt("table sessions, row 7".into()));
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        let r = e.reply(None);
        assert_eq!(r.headers().get(header::RETRY_AFTER).unwrap(), "1");
        let b = body(r);
        assert_eq!(b["error"]["message"], "session store unavailable; retry");
    }
}
