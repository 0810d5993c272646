//! Where an upstream's authorization server is: given in the connection's spec, or
//! discovered as MCP prescribes — the upstream's 401 `WWW-Authenticate` names its
//! RFC 9728 protected-resource metadata, which names the authorization server, whose
//! RFC 8414 (or OpenID Connect) metadata gives the endpoints.

use serde::Deserialize;
use url::Url;

use crate::upstream::UpstreamError;

/// The endpoints and resource indicator of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub authorization: Option<Url>,
    pub token: Url,
    /// RFC 7009 token revocation, when the authorization server has one.
    pub revocation: Option<Url>,
    /// RFC 8707 resource indicator sent with every request.
    pub resource: String,
    /// The authorization server's issuer, when discovered: an authorization response
    /// naming another (RFC 9207 `iss`) came from another server (a mix-up).
    pub issuer: Option<String>,
    /// The server says its authorization responses carry `iss` (RFC 9207): one
    /// without it is refused.
    pub issuer_in_responses: bool,
}

impl Endpoints {
    /// Whether an authorization response naming `iss` (or none) may come from this
    /// authorization server (RFC 9207 §2.4); the reason when not.
    pub fn check_response_issuer(&self, iss: Option<&str>) -> Result<(), String> {
        match (iss, &self.issuer) {
            (Some(named), Some(issuer)) if !same_identifier(named, issuer) => Err(format!(
                "the authorization response names issuer {named}, not this connection's authorization server {issuer}"
            )),
            (None, Some(issuer)) if self.issuer_in_responses => Err(format!(
                "the authorization response lacks the iss parameter that {issuer} promises (RFC 9207)"
            )),
            _ => Ok(()),
        }
    }
}

fn fail(message: impl Into<String>) -> UpstreamError {
    UpstreamError::NotAuthorized(format!("OAuth discovery: {}", message.into()))
}

/// The `resource_metadata` parameter of a `WWW-Authenticate: Bearer …` challenge.
pub fn resource_metadata(www_authenticate: &str) -> Option<String> {
    let lower = www_authenticate.to_ascii_lowercase();
    let at = lower.find("resource_metadata=")?;
    let rest = &www_authenticate[at + "resource_metadata=".len()..];
    let value = if let Some(quoted) = rest.strip_prefix('"') {
        quoted.split('"').next()?
    } else {
        rest.split([',', ' ']).next()?
    };
    (!value.is_empty()).then(|| value.to_owned())
}

/// RFC 9728 §3.1: `https://host/.well-known/oauth-protected-resource{/path}`, then the
/// root location.
fn prm_candidates(resource: &Url) -> Vec<Url> {
    let mut out = Vec::new();
    let path = resource.path().trim_end_matches('/');
    for suffix in [path, ""] {
        let mut u = resource.clone();
        u.set_query(None);
        u.set_fragment(None);
        u.set_path(&format!("/.well-known/oauth-protected-resource{suffix}"));
        if !out.contains(&u) {
            out.push(u);
        }
    }
    out
}

/// RFC 8414 §3 and OpenID Connect Discovery locations for an issuer.
pub(crate) fn as_candidates(issuer: &Url) -> Vec<Url> {
    let path = issuer.path().trim_end_matches('/');
    let mut out = Vec::new();
    let mut push = |p: String| {
        let mut u = issuer.clone();
        u.set_query(None);
        u.set_fragment(None);
        u.set_path(&p);
        if !out.contains(&u) {
            out.push(u);
        }
    };
    push(format!("/.well-known/oauth-authorization-server{path}"));
    push(format!("/.well-known/openid-configuration{path}"));
    push(format!("{path}/.well-known/openid-configuration"));
    out
}

#[derive(Deserialize)]
struct ProtectedResource {
    resource: Option<String>,
    #[serde(default)]
    authorization_servers: Vec<String>,
}

#[derive(Deserialize)]
struct ServerMetadata {
    issuer: Option<String>,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
    #[serde(default)]
    code_challenge_methods_supported: Vec<String>,
    /// Read leniently: a server writing it oddly (`null`, `"true"`) is not refused
    /// for it, and promises nothing.
    #[serde(default)]
    authorization_response_iss_parameter_supported: Option<serde_json::Value>,
}

pub(crate) async fn get_json<T: for<'de> Deserialize<'de>>(
    http: &reqwest::Client,
    url: &Url,
) -> Option<T> {
    let r = http
        .get(url.clone())
        .header("accept", "application/json")
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

/// A discovered URL Hawser will send credentials to, or fetch metadata from: `https`,
/// or `http` on a loopback host only (local development). Metadata served over plain
/// HTTP could be rewritten in transit to point at an attacker's token endpoint.
fn secure(what: &str, url: &Url) -> Result<(), UpstreamError> {
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        scheme => Err(fail(format!(
            "{what} {url} must use https (got {scheme}); set auth.authorizationUrl and auth.tokenUrl to override"
        ))),
    }
}

/// RFC 9728 §3.3 / RFC 8414 §3.3: two identifiers name the same thing when they are
/// equal but for a trailing slash.
fn same_identifier(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Asks the upstream for its challenge: an unauthenticated `initialize`.
async fn challenge(http: &reqwest::Client, upstream: &Url) -> Option<String> {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": crate::upstream::PROTOCOL_VERSION, "capabilities": {},
                   "clientInfo": crate::upstream::hawser_info()}});
    let r = http
        .post(upstream.clone())
        .header("accept", "application/json, text/event-stream")
        .json(&body)
        .send()
        .await
        .ok()?;
    if r.status().as_u16() != 401 {
        return None;
    }
    let header = r
        .headers()
        .get(http::header::WWW_AUTHENTICATE)?
        .to_str()
        .ok()?;
    resource_metadata(header)
}

/// Discovers the endpoints of `upstream` (its MCP URL).
pub async fn discover(
    http: &reqwest::Client,
    upstream: &Url,
    resource_override: Option<&str>,
) -> Result<Endpoints, UpstreamError> {
    let mut prm_urls = Vec::new();
    if let Some(named) = challenge(http, upstream).await
        && let Ok(u) = Url::parse(&named)
        && secure("protected-resource metadata", &u).is_ok()
    {
        prm_urls.push(u);
    }
    prm_urls.extend(prm_candidates(upstream));
    let mut prm: Option<ProtectedResource> = None;
    for url in &prm_urls {
        if let Some(found) = get_json::<ProtectedResource>(http, url).await {
            prm = Some(found);
            break;
        }
    }
    let prm = prm.ok_or_else(|| {
        fail(format!(
            "{upstream} publishes no protected-resource metadata (RFC 9728); set auth.authorizationUrl and auth.tokenUrl"
        ))
    })?;
    let issuer = prm
        .authorization_servers
        .first()
        .ok_or_else(|| fail("protected-resource metadata names no authorization server"))?;
    let issuer =
        Url::parse(issuer).map_err(|e| fail(format!("authorization server {issuer:?}: {e}")))?;
    secure("authorization server", &issuer)?;
    // The metadata is about this upstream: its `resource` is the upstream's own origin
    // (a server may not claim tokens meant for another).
    if let Some(resource) = &prm.resource {
        let claimed = Url::parse(resource).map_err(|e| {
            fail(format!(
                "protected-resource metadata resource {resource:?}: {e}"
            ))
        })?;
        if claimed.origin() != upstream.origin() {
            return Err(fail(format!(
                "protected-resource metadata claims resource {resource}, which is not {upstream}'s origin"
            )));
        }
    }
    let mut meta: Option<ServerMetadata> = None;
    for url in as_candidates(&issuer) {
        if let Some(found) = get_json::<ServerMetadata>(http, &url).await {
            meta = Some(found);
            break;
        }
    }
    let meta =
        meta.ok_or_else(|| fail(format!("no authorization server metadata for {issuer}")))?;
    // RFC 8414 §3.3: the metadata must be the issuer's own (no mix-up).
    match meta.issuer.as_deref() {
        Some(named) if same_identifier(named, issuer.as_str()) => {}
        named => {
            return Err(fail(format!(
                "authorization server metadata for {issuer} names issuer {named:?}"
            )));
        }
    }
    if !meta.code_challenge_methods_supported.is_empty()
        && !meta
            .code_challenge_methods_supported
            .iter()
            .any(|m| m == "S256")
    {
        return Err(fail("the authorization server does not support PKCE S256"));
    }
    let token = meta
        .token_endpoint
        .as_deref()
        .ok_or_else(|| fail("authorization server metadata has no token_endpoint"))
        .and_then(|t| Url::parse(t).map_err(|e| fail(format!("token_endpoint: {e}"))))?;
    secure("token_endpoint", &token)?;
    let authorization = meta
        .authorization_endpoint
        .as_deref()
        .and_then(|a| Url::parse(a).ok());
    if let Some(a) = &authorization {
        secure("authorization_endpoint", a)?;
    }
    // Revocation is a courtesy on disconnect: an unusable URL only means none.
    let revocation = meta
        .revocation_endpoint
        .as_deref()
        .and_then(|r| Url::parse(r).ok())
        .filter(|r| secure("revocation_endpoint", r).is_ok());
    let resource = resource_override
        .map(str::to_owned)
        .or(prm.resource)
        .unwrap_or_else(|| upstream.to_string());
    Ok(Endpoints {
        authorization,
        token,
        revocation,
        resource,
        issuer: meta.issuer,
        issuer_in_responses: meta
            .authorization_response_iss_parameter_supported
            .as_ref()
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_responses_from_another_issuer_are_refused() {
        let endpoints = |issuer: Option<&str>, promised: bool| Endpoints {
            authorization: None,
            token: Url::parse("https://as.example/token").unwrap(),
            revocation: None,
            resource: "https://mcp.example".into(),
            issuer: issuer.map(str::to_owned),
            issuer_in_responses: promised,
        };
        let discovered = endpoints(Some("https://as.example"), true);
        assert!(
            discovered
                .check_response_issuer(Some("https://as.example/"))
                .is_ok()
        );
        let e = discovered
            .check_response_issuer(Some("https://evil.example"))
            .unwrap_err();
        assert!(e.contains("names issuer https://evil.example"), "{e}");
        let e = discovered.check_response_issuer(None).unwrap_err();
        assert!(e.contains("lacks the iss parameter"), "{e}");
        // A server that does not promise `iss` may leave it out, not name another.
        let quiet = endpoints(Some("https://as.example"), false);
        assert!(quiet.check_response_issuer(None).is_ok());
        assert!(
            quiet
                .check_response_issuer(Some("https://evil.example"))
                .is_err()
        );
        // Endpoints given by hand: nothing to compare with.
        let given = endpoints(None, false);
        assert!(
            given
                .check_response_issuer(Some("https://any.example"))
                .is_ok()
        );
        assert!(given.check_response_issuer(None).is_ok());
    }

    #[test]
    fn reads_resource_metadata_from_challenges() {
        assert_eq!(
            resource_metadata(r#"Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource", error="invalid_token""#)
                .as_deref(),
            Some("https://mcp.example.com/.well-known/oauth-protected-resource")
        );
        assert_eq!(resource_metadata("Bearer realm=x"), None);
        assert_eq!(
            resource_metadata("Bearer resource_metadata=https://a/b, x=y").as_deref(),
            Some("https://a/b")
        );
    }

    #[test]
    fn discovered_urls_must_be_https_except_on_loopback() {
        let ok = |u: &str| secure("x", &Url::parse(u).unwrap()).is_ok();
        assert!(ok("https://auth.example.com/token"));
        assert!(ok("http://127.0.0.1:9000/token"));
        assert!(ok("http://localhost/token"));
        assert!(ok("http://[::1]:80/token"));
        assert!(!ok("http://auth.example.com/token"));
        assert!(!ok("http://10.0.0.1/token"));
        assert!(!ok("ftp://auth.example.com/token"));
        assert!(same_identifier("https://a/x/", "https://a/x"));
        assert!(!same_identifier("https://a/x", "https://a/y"));
    }

    /// A metadata server on loopback answering `/.well-known/...` with `prm` and `asm`.
    async fn metadata_server(
        prm: impl Fn(&str) -> serde_json::Value + Send + Sync + 'static,
        asm: impl Fn(&str) -> serde_json::Value + Send + Sync + 'static,
    ) -> Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (b1, b2) = (base.clone(), base.clone());
        let prm = std::sync::Arc::new(prm);
        let asm = std::sync::Arc::new(asm);
        let app = axum::Router::new()
            .route(
                "/.well-known/oauth-protected-resource/mcp",
                axum::routing::get(move || {
                    let body = prm(&b1);
                    async move { axum::Json(body) }
                }),
            )
            .route(
                "/.well-known/oauth-authorization-server",
                axum::routing::get(move || {
                    let body = asm(&b2);
                    async move { axum::Json(body) }
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Url::parse(&format!("{base}/mcp")).unwrap()
    }

    async fn discover_from(
        prm: impl Fn(&str) -> serde_json::Value + Send + Sync + 'static,
        asm: impl Fn(&str) -> serde_json::Value + Send + Sync + 'static,
    ) -> Result<Endpoints, String> {
        crate::install_crypto_provider();
        let upstream = metadata_server(prm, asm).await;
        let http = reqwest::Client::builder().build().unwrap();
        discover(&http, &upstream, None)
            .await
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn discovery_refuses_metadata_that_is_not_the_servers_own() {
        let prm = |base: &str| serde_json::json!({"resource": format!("{base}/mcp"), "authorization_servers": [base]});
        let asm = |base: &str| serde_json::json!({"issuer": base, "token_endpoint": format!("{base}/token"), "authorization_endpoint": format!("{base}/authorize")});
        let found = discover_from(prm, asm).await.expect("honest metadata");
        assert!(found.token.as_str().ends_with("/token"));
        assert!(found.resource.ends_with("/mcp"));

        // Mix-up: the metadata names another issuer.
        let e = discover_from(prm, |base: &str| serde_json::json!({"issuer": "https://other.example", "token_endpoint": format!("{base}/token")}))
            .await
            .unwrap_err();
        assert!(e.contains("names issuer"), "{e}");
        // Credentials would go over plain HTTP to a remote host.
        let e = discover_from(prm, |base: &str| serde_json::json!({"issuer": base, "token_endpoint": "http://evil.example/token"}))
            .await
            .unwrap_err();
        assert!(e.contains("must use https"), "{e}");
        // The upstream claims to be another resource.
        let e = discover_from(
            |base: &str| serde_json::json!({"resource": "https://bank.example/mcp", "authorization_servers": [base]}),
            asm,
        )
        .await
        .unwrap_err();
        assert!(e.contains("which is not"), "{e}");
    }

    #[test]
    fn well_known_locations_follow_the_rfcs() {
        let prm = prm_candidates(&Url::parse("https://mcp.example.com/v1/mcp").unwrap());
        assert_eq!(
            prm[0].as_str(),
            "https://mcp.example.com/.well-known/oauth-protected-resource/v1/mcp"
        );
        assert_eq!(
            prm[1].as_str(),
            "https://mcp.example.com/.well-known/oauth-protected-resource"
        );
        let as_ = as_candidates(&Url::parse("https://auth.example.com/tenant1").unwrap());
        assert_eq!(
            as_[0].as_str(),
            "https://auth.example.com/.well-known/oauth-authorization-server/tenant1"
        );
        assert_eq!(
            as_[2].as_str(),
            "https://auth.example.com/tenant1/.well-known/openid-configuration"
        );
    }
}
