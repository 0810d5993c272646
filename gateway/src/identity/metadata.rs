//! Hawser as an OAuth protected resource (RFC 9728): the resource URL of each MCP
//! endpoint, its metadata document, the audiences a token must name, and the
//! `WWW-Authenticate` challenge that points a client at the metadata.

use http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use super::Reason;
use crate::config::OidcSettings;
use crate::endpoint::Endpoint;

/// Where the metadata is served, below the base URL.
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// The resource identity of the MCP endpoints.
#[derive(Debug, Clone)]
pub struct Resource {
    /// `publicUrl` without a trailing slash; `None`: taken from each request's Host.
    base: Option<String>,
    /// `clientAuth.oidc.audiences`: when set, these and nothing else.
    audiences: Vec<String>,
    scopes: Vec<String>,
    authorization_servers: Vec<String>,
    prefix: String,
}

impl Resource {
    pub fn new(public_url: Option<url::Url>, oidc: Option<&OidcSettings>) -> Self {
        let prefix = public_url
            .as_ref()
            .map(|u| u.path().trim_end_matches('/').to_owned())
            .unwrap_or_default();
        Self {
            prefix,
            base: public_url.map(|u| u.as_str().trim_end_matches('/').to_owned()),
            audiences: oidc.map(|o| o.audiences.clone()).unwrap_or_default(),
            scopes: oidc.map(|o| o.scopes_supported.clone()).unwrap_or_default(),
            authorization_servers: oidc
                .map(|o| o.authorization_servers.clone())
                .unwrap_or_default(),
        }
    }

    /// The path prefix of `publicUrl` (`""` when it has none), which a proxy in front
    /// may or may not strip.
    pub fn path_prefix(&self) -> &str {
        &self.prefix
    }

    /// The external base URL: `publicUrl`, else the request's own origin.
    fn base(&self, headers: &HeaderMap) -> String {
        if let Some(base) = &self.base {
            return base.clone();
        }
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let host = text("host").unwrap_or("localhost");
        let scheme = match text("x-forwarded-proto") {
            Some(p) if p.eq_ignore_ascii_case("https") => "https",
            _ => "http",
        };
        format!("{scheme}://{host}")
    }

    /// The resource URL of `endpoint` (what a client's token must be minted for).
    pub fn resource_url(&self, headers: &HeaderMap, endpoint: &Endpoint) -> String {
        format!("{}{endpoint}", self.base(headers))
    }

    /// Where the metadata of `endpoint` is: below `publicUrl`, so a proxy routing a
    /// path prefix to Hawser also routes the metadata.
    pub fn metadata_url(&self, headers: &HeaderMap, endpoint: &Endpoint) -> String {
        format!("{}{METADATA_PATH}{endpoint}", self.base(headers))
    }

    /// Whether a token naming `aud` may be used on `endpoint`: one of the configured
    /// audiences, else the endpoint's own resource URL or the aggregated endpoint's
    /// (its parent).
    pub fn accepts(&self, headers: &HeaderMap, endpoint: &Endpoint, aud: &str) -> bool {
        if !self.audiences.is_empty() {
            return self.audiences.iter().any(|a| a == aud);
        }
        let base = match &self.base {
            Some(b) => std::borrow::Cow::Borrowed(b.as_str()),
            None => std::borrow::Cow::Owned(self.base(headers)),
        };
        let Some(rest) = aud
            .trim_end_matches('/')
            .strip_prefix(base.as_ref())
            .and_then(|r| r.strip_prefix("/mcp"))
        else {
            return false;
        };
        match endpoint {
            Endpoint::Aggregated => rest.is_empty(),
            Endpoint::Connection(name) => {
                rest.is_empty() || rest.strip_prefix('/') == Some(name.as_str())
            }
        }
    }

    /// The RFC 9728 document for `endpoint`.
    pub fn document(&self, headers: &HeaderMap, endpoint: &Endpoint) -> Value {
        let mut doc = json!({
            "resource": self.resource_url(headers, endpoint),
            "bearer_methods_supported": ["header"],
            "resource_name": "Hawser",
        });
        if !self.authorization_servers.is_empty() {
            doc["authorization_servers"] = json!(self.authorization_servers);
        }
        if !self.scopes.is_empty() {
            doc["scopes_supported"] = json!(self.scopes);
        }
        doc
    }

    /// `WWW-Authenticate` for a request to `endpoint` refused for `reason`.
    pub fn challenge(
        &self,
        headers: &HeaderMap,
        endpoint: &Endpoint,
        reason: &Reason,
    ) -> HeaderValue {
        let mut v = String::from("Bearer ");
        match reason {
            Reason::Missing | Reason::Unavailable => {}
            Reason::InsufficientScope => v.push_str("error=\"insufficient_scope\", "),
            other => {
                v.push_str("error=\"invalid_token\", error_description=\"");
                v.push_str(&other.to_string());
                v.push_str("\", ");
            }
        }
        if !self.scopes.is_empty() && !matches!(reason, Reason::Unavailable) {
            v.push_str("scope=\"");
            v.push_str(&self.scopes.join(" "));
            v.push_str("\", ");
        }
        v.push_str("resource_metadata=\"");
        v.push_str(&self.metadata_url(headers, endpoint));
        v.push('"');
        HeaderValue::from_str(&v)
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer realm=\"hawser\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::test_map;

    fn resource(base: &str) -> Resource {
        Resource::new(Some(url::Url::parse(base).unwrap()), None)
    }

    #[test]
    fn audiences_default_to_the_endpoint_and_its_parent() {
        let r = resource("https://gw.example.com/prefix/");
        let h = HeaderMap::new();
        let gh = Endpoint::Connection("gh".into());
        assert!(r.accepts(
            &h,
            &Endpoint::Aggregated,
            "https://gw.example.com/prefix/mcp"
        ));
        assert!(r.accepts(&h, &gh, "https://gw.example.com/prefix/mcp/gh"));
        assert!(r.accepts(&h, &gh, "https://gw.example.com/prefix/mcp"));
        assert!(!r.accepts(
            &h,
            &Endpoint::Aggregated,
            "https://gw.example.com/prefix/mcp/gh"
        ));
        assert!(!r.accepts(&h, &gh, "https://gw.example.com/prefix/mcp/ghx"));
        assert!(!r.accepts(&h, &gh, "https://gw.example.com/mcp/gh"));
        assert!(!r.accepts(&h, &gh, "https://evil.example/prefix/mcp/gh"));
        assert!(!r.accepts(
            &h,
            &Endpoint::Aggregated,
            "https://gw.example.com/prefix/mcpx"
        ));
    }

    #[test]
    fn challenges_point_at_the_metadata_below_the_public_url() {
        let r = resource("https://gw.example.com/prefix");
        let h = test_map(&[("host", "internal:8080")]);
        let gh = Endpoint::Connection("gh".into());
        assert_eq!(
            r.challenge(&h, &gh, &Reason::Missing),
            "Bearer resource_metadata=\"https://gw.example.com/prefix/.well-known/oauth-protected-resource/mcp/gh\""
        );
        let expired = r.challenge(&h, &Endpoint::Aggregated, &Reason::Expired);
        assert!(
            expired
                .to_str()
                .unwrap()
                .starts_with("Bearer error=\"invalid_token\"")
        );
        let doc = r.document(&h, &gh);
        assert_eq!(doc["resource"], "https://gw.example.com/prefix/mcp/gh");
        // Without publicUrl, the request's own origin.
        let open = Resource::new(None, None);
        let fwd = test_map(&[("host", "gw:8080"), ("x-forwarded-proto", "https")]);
        assert_eq!(
            open.resource_url(&fwd, &Endpoint::Aggregated),
            "https://gw:8080/mcp"
        );
    }
}
