//! HTTP header names of the MCP transport, the one parser of bearer credentials, and
//! the cookies of Hawser's browser pages (the OAuth flows and the console).

use http::{HeaderMap, HeaderName};

// Names as `HeaderName`s, not text: a header map looked up by text parses the name
// first, every time.

/// `Mcp-Session-Id`: the session of a 2025 revision.
pub const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
/// `MCP-Protocol-Version`: the revision a request speaks.
pub const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
/// `Mcp-Method` (2026-07-28): the body's `method`.
pub const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
/// `Mcp-Name` (2026-07-28): the tool, prompt or resource a request names.
pub const MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");
/// W3C trace context: the caller's span.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// W3C trace context: vendors' state.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// A request id the caller chose.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The client addresses proxies saw.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// Tells nginx-style proxies not to buffer a response (an SSE stream).
pub const X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");
/// `Mcp-Param-{Name}` (2026-07-28): a tool argument annotated `x-mcp-header`.
pub const MCP_PARAM_PREFIX: &str = "mcp-param-";

/// The credential of an `Authorization: Bearer <token>` header. The scheme is
/// case-insensitive (RFC 9110 §11.1); surrounding spaces are not part of the token;
/// an empty token is none.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A `Set-Cookie` value: HttpOnly, `SameSite=Lax` (a redirect back from an
/// authorization server is a top-level navigation, which Lax lets through), scoped to
/// `path`, `Secure` when the browser reaches Hawser over https. An empty `value` with
/// a zero `max_age` deletes the cookie.
pub fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age: std::time::Duration,
    secure: bool,
) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{name}={value}; Max-Age={}; Path={path}; HttpOnly; SameSite=Lax{secure}",
        max_age.as_secs()
    )
}

/// The value of cookie `name` in a request (`None` when absent or empty).
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
        .filter(|v| !v.is_empty())
}

/// A header map of `pairs`, for tests.
#[cfg(test)]
pub(crate) fn test_map(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, v.parse().unwrap());
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            value.parse().expect("valid header value"),
        );
        h
    }

    #[test]
    fn the_scheme_is_case_insensitive_and_the_token_trimmed() {
        for v in ["Bearer abc", "bearer abc", "BEARER abc", "Bearer   abc  "] {
            assert_eq!(bearer(&with(v)), Some("abc"), "{v:?}");
        }
        for v in ["Basic abc", "Bearer", "Bearer ", "Bearerabc", "abc"] {
            assert_eq!(bearer(&with(v)), None, "{v:?}");
        }
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn a_cookie_is_read_among_others_and_names_match_exactly() {
        let h = test_map(&[("cookie", "a=1; hawser_consent=abc; b=2")]);
        assert_eq!(super::cookie_value(&h, "hawser_consent"), Some("abc"));
        let h = test_map(&[("cookie", "hawser_consentx=abc")]);
        assert_eq!(super::cookie_value(&h, "hawser_consent"), None);
        let h = test_map(&[("cookie", "hawser_consent=")]);
        assert_eq!(super::cookie_value(&h, "hawser_consent"), None);
    }
}
