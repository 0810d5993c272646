//! Admission: what a request must pass before it is dispatched. The endpoint exists,
//! `Host` and `Origin` are allowed (DNS-rebinding protection), the caller is
//! authenticated, the body is a JSON-RPC message of an acceptable type and size, and
//! the session it names is live and the caller's.

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use bytes::Bytes;

use super::error::{Error, Result};
use super::session::{ClientSession, SessionError};
use super::state::Front;
use crate::config::{HttpLimits, Security};
use crate::endpoint::Endpoint;
use crate::headers::MCP_SESSION_ID;
use crate::identity::Identity;

/// The endpoint a path names: `/mcp`, `/mcp/{connection}` or `/mcp/{namespace}/{name}`.
pub fn endpoint_of(path: &str) -> Result<Endpoint> {
    let rest = path
        .strip_prefix("/mcp")
        .unwrap_or_default()
        .trim_matches('/');
    let valid = rest
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'/')
        && rest.matches('/').count() <= 1;
    if !valid {
        return Err(Error::UnknownPath);
    }
    Ok(Endpoint::from_stored(rest))
}

/// Headers a request may carry once: with two, which one a check read and which one
/// a later step (or a proxy) reads could differ.
const SINGLE: [(header::HeaderName, &str); 8] = [
    (header::HOST, "Host"),
    (header::ORIGIN, "Origin"),
    (header::AUTHORIZATION, "Authorization"),
    (header::CONTENT_TYPE, "Content-Type"),
    (MCP_SESSION_ID, "Mcp-Session-Id"),
    (crate::headers::MCP_PROTOCOL_VERSION, "MCP-Protocol-Version"),
    (crate::headers::MCP_METHOD, "Mcp-Method"),
    (crate::headers::MCP_NAME, "Mcp-Name"),
];

/// Rejects requests that repeat a header that must be single, or whose `Host` or
/// `Origin` is not allowed.
pub fn check_origin(security: &Security, headers: &HeaderMap) -> Result<()> {
    // No name repeats when there are as many values as names (the usual case).
    if headers.len() != headers.keys_len() {
        for (name, label) in &SINGLE {
            if headers.get_all(name).iter().nth(1).is_some() {
                return Err(Error::DuplicateHeader(label));
            }
        }
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !security.host_allowed(host) {
        // RFC 9112 §3.2: a request without Host is malformed, not forbidden.
        if host.is_empty() {
            return Err(Error::MissingHost);
        }
        return Err(Error::HostNotAllowed(host.to_owned()));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        if !security.origin_allowed(origin) {
            return Err(Error::OriginNotAllowed(origin.to_owned()));
        }
    }
    Ok(())
}

/// Checks Host/Origin, authenticates, and checks the endpoint exists; the caller.
pub async fn admit(
    front: &Front,
    endpoint: &Endpoint,
    headers: &HeaderMap,
    client_address: Option<&str>,
) -> Result<Arc<Identity>> {
    check_origin(&front.security, headers)?;
    let identity = match front.identity.authenticate(headers, endpoint).await {
        Ok(identity) => identity,
        Err(rejection) => {
            front.metrics.auth_failure(rejection.reason());
            // A provider outage (503) is not the client's failure.
            if rejection.status() != axum::http::StatusCode::SERVICE_UNAVAILABLE
                && let Some(address) = client_address
                && let Some(wait) = front.auth_failures.failed(address)
            {
                return Err(Error::TooManyFailures(wait));
            }
            return Err(Error::Unauthenticated(rejection));
        }
    };
    if let Endpoint::Connection(name) = endpoint
        && !front.registry.view().connections.contains_key(name)
    {
        return Err(Error::UnknownConnection(name.clone()));
    }
    Ok(identity)
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether `Accept` (absent: anything) admits `mime`.
pub fn accepts(headers: &HeaderMap, mime: &str) -> bool {
    match header_str(headers, header::ACCEPT) {
        None => true,
        Some(accept) => accept.split(',').any(|a| {
            let a = a.split(';').next().unwrap_or_default().trim();
            a == mime
                || a == "*/*"
                || (a.ends_with("/*") && mime.starts_with(a.trim_end_matches('*')))
        }),
    }
}

/// Reads a POST body, refusing what is too large, too slow, not JSON, or sent by a
/// client that cannot take both answer forms.
pub async fn read_body(
    headers: &HeaderMap,
    body: axum::body::Body,
    limits: &HttpLimits,
) -> Result<Bytes> {
    let body = axum::body::to_bytes(body, limits.max_request_bytes)
        .await
        .map_err(|e| {
            if crate::body::is_body_timeout(&e) {
                Error::BodyTimeout(limits.body_read_timeout)
            } else {
                Error::BodyTooLarge(limits.max_request_bytes)
            }
        })?;
    let is_json = header_str(headers, header::CONTENT_TYPE).is_some_and(|c| {
        c.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if !is_json {
        return Err(Error::UnsupportedMediaType);
    }
    if !accepts(headers, "application/json") || !accepts(headers, "text/event-stream") {
        return Err(Error::NotAcceptable);
    }
    Ok(body)
}

/// Refuses a GET whose `Accept` excludes SSE.
pub fn check_stream_accept(headers: &HeaderMap) -> Result<()> {
    if header_str(headers, header::ACCEPT).is_some() && !accepts(headers, "text/event-stream") {
        return Err(Error::NotAcceptableStream);
    }
    Ok(())
}

/// Whether the request names a session.
pub fn has_session(headers: &HeaderMap) -> bool {
    headers.contains_key(MCP_SESSION_ID)
}

/// The live session the request names, if it is the caller's on this endpoint.
pub async fn live_session(
    front: &Front,
    endpoint: &Endpoint,
    identity: &Identity,
    headers: &HeaderMap,
) -> Result<Arc<ClientSession>> {
    let id = header_str(headers, MCP_SESSION_ID).ok_or(Error::SessionRequired)?;
    front
        .sessions
        .get(id, identity, endpoint)
        .await
        .map_err(|e| match e {
            SessionError::NotFound => Error::SessionNotFound,
            SessionError::Store(error) => Error::Store(error),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::headers::test_map as headers;

    #[test]
    fn paths_name_an_endpoint_or_nothing() {
        assert_eq!(endpoint_of("/mcp").unwrap(), Endpoint::Aggregated);
        assert_eq!(endpoint_of("/mcp/").unwrap(), Endpoint::Aggregated);
        assert_eq!(
            endpoint_of("/mcp/gh").unwrap(),
            Endpoint::Connection("gh".into())
        );
        assert_eq!(
            endpoint_of("/mcp/team-a/gh").unwrap(),
            Endpoint::Connection("team-a/gh".into())
        );
        for bad in [
            "/mcp/GH",
            "/mcp/a/b/c",
            "/mcp/a%2e",
            "/mcp/../x",
            "/mcp/a b",
        ] {
            assert!(matches!(endpoint_of(bad), Err(Error::UnknownPath)), "{bad}");
        }
    }

    #[test]
    fn host_and_origin_must_be_allowed() {
        let security = Security {
            allowed_hosts: vec!["localhost".into()],
            allowed_origins: vec!["http://localhost".into()],
            allow_stdio_from_api: false,
            trusted_proxies: Vec::new(),
        };
        assert!(check_origin(&security, &headers(&[("host", "localhost:8080")])).is_ok());
        assert!(matches!(
            check_origin(&security, &headers(&[("host", "evil.example")])),
            Err(Error::HostNotAllowed(h)) if h == "evil.example"
        ));
        assert!(matches!(
            check_origin(
                &security,
                &headers(&[("host", "localhost"), ("origin", "http://evil.example")])
            ),
            Err(Error::OriginNotAllowed(_))
        ));
        assert!(
            check_origin(
                &security,
                &headers(&[("host", "localhost"), ("origin", "http://localhost:3000")])
            )
            .is_ok()
        );
        // A second Host (the first allowed, the second not) is refused outright.
        let mut two = headers(&[("host", "localhost")]);
        two.append("host", "evil.example".parse().unwrap());
        assert!(matches!(
            check_origin(&security, &two),
            Err(Error::DuplicateHeader("Host"))
        ));
    }

    #[test]
    fn content_negotiation() {
        assert!(accepts(&HeaderMap::new(), "text/event-stream"));
        let both = headers(&[("accept", "application/json, text/event-stream")]);
        assert!(accepts(&both, "application/json") && accepts(&both, "text/event-stream"));
        let json_only = headers(&[("accept", "application/json;q=1")]);
        assert!(!accepts(&json_only, "text/event-stream"));
        assert!(accepts(
            &headers(&[("accept", "text/*")]),
            "text/event-stream"
        ));
        assert!(accepts(&headers(&[("accept", "*/*")]), "application/json"));
        assert!(check_stream_accept(&json_only).is_err());
        assert!(check_stream_accept(&HeaderMap::new()).is_ok());
    }

    #[tokio::test]
    async fn bodies_must_be_json_for_a_client_taking_both_forms() {
        let ok = headers(&[
            ("content-type", "application/json; charset=utf-8"),
            ("accept", "application/json, text/event-stream"),
        ]);
        let limits = HttpLimits::default();
        assert!(
            read_body(&ok, axum::body::Body::from("{}"), &limits)
                .await
                .is_ok()
        );
        let text = headers(&[("content-type", "text/plain")]);
        assert!(matches!(
            read_body(&text, axum::body::Body::from("{}"), &limits).await,
            Err(Error::UnsupportedMediaType)
        ));
        let json_only = headers(&[
            ("content-type", "application/json"),
            ("accept", "application/json"),
        ]);
        assert!(matches!(
            read_body(&json_only, axum::body::Body::from("{}"), &limits).await,
            Err(Error::NotAcceptable)
        ));
    }
}
