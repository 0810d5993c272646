//! Client ID metadata documents (draft-ietf-oauth-client-id-metadata-document,
//! used by MCP 2025-11-25 clients): a `client_id` that is an `https://` URL
//! (`http://` on 127.0.0.1, ::1 or localhost) names a JSON document that
//! describes a public client. The document is fetched before the request
//! is handled (never under a lock) and cached for at most 60 s.

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use axum::http::{HeaderMap, StatusCode, header};
use serde_json::Value;
use url::{Host, Url};

use super::{
    AuthMethod, ClientConfig,
    provider::{Fetched, OAuthError, Provider, check_redirect_uri, lock},
    register::DEFAULT_GRANT_TYPES,
};

/// Timeout of one document fetch.
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest accepted document.
const MAX_DOCUMENT: usize = 64 * 1024;
/// Longest a document is cached.
const MAX_CACHE: Duration = Duration::from_secs(60);

/// Fetched documents by URL, with their expiry.
#[derive(Default)]
pub(crate) struct DocumentCache {
    entries: HashMap<String, (Instant, ClientConfig)>,
}

impl DocumentCache {
    fn get(&mut self, url: &str) -> Option<ClientConfig> {
        let now = Instant::now();
        self.entries.retain(|_, (expires, _)| *expires > now);
        self.entries.get(url).map(|(_, client)| client.clone())
    }
}

/// Whether `client_id` has the form of a metadata document URL.
fn is_document_id(client_id: &str) -> bool {
    Url::parse(client_id).is_ok_and(|url| matches!(url.scheme(), "http" | "https"))
}

/// The document URL, if `client_id` is an acceptable one.
fn check_document_url(client_id: &str) -> Result<Url, &'static str> {
    let url = Url::parse(client_id).map_err(|_| "is not a URL")?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => return Err("must be an https URL (http only on a loopback host)"),
        _ => return Err("must be an https URL"),
    }
    if url.fragment().is_some() {
        return Err("must not contain a fragment");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials");
    }
    if url.path().trim_start_matches('/').is_empty() {
        return Err("must contain a path");
    }
    if client_id
        .split(['/', '?'])
        .any(|segment| segment == "." || segment == "..")
    {
        return Err("must not contain dot segments");
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip == Ipv4Addr::LOCALHOST,
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// How long the answer may be cached: `Cache-Control` `max-age`, at most
/// 60 s; `no-store`/`no-cache` → not at all.
fn cache_ttl(headers: &HeaderMap) -> Duration {
    let mut ttl = MAX_CACHE;
    for value in headers.get_all(header::CACHE_CONTROL) {
        for directive in value.to_str().unwrap_or_default().split(',') {
            let directive = directive.trim().to_ascii_lowercase();
            if directive == "no-store" || directive == "no-cache" {
                return Duration::ZERO;
            }
            if let Some(seconds) = directive.strip_prefix("max-age=") {
                let seconds = seconds.trim_matches('"').parse().unwrap_or(0);
                ttl = ttl.min(Duration::from_secs(seconds));
            }
        }
    }
    ttl
}

/// The public client a document describes, or why it is unacceptable.
fn parse_document(client_id: &str, body: &[u8]) -> Result<ClientConfig, String> {
    let document: Value =
        serde_json::from_slice(body).map_err(|_| "the document is not JSON".to_owned())?;
    let document = document
        .as_object()
        .ok_or("the document is not a JSON object")?;
    if document.get("client_id").and_then(Value::as_str) != Some(client_id) {
        return Err("the document's client_id differs from its URL".to_owned());
    }
    match document.get("token_endpoint_auth_method") {
        None => {}
        Some(Value::String(method)) if method == "none" => {}
        Some(_) => return Err("only token_endpoint_auth_method none is supported".to_owned()),
    }
    if document.contains_key("client_secret") || document.contains_key("client_secret_expires_at") {
        return Err("a metadata document must not contain a client secret".to_owned());
    }
    let strings = |field: &str| -> Result<Option<Vec<String>>, String> {
        let Some(value) = document.get(field) else {
            return Ok(None);
        };
        value
            .as_array()
            .and_then(|items| {
                items
                    .iter()
                    .map(|item| item.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
            })
            .map(Some)
            .ok_or_else(|| format!("{field} must be an array of strings"))
    };
    let redirect_uris = strings("redirect_uris")?
        .filter(|uris| !uris.is_empty())
        .ok_or("redirect_uris is required and must not be empty")?;
    for uri in &redirect_uris {
        check_redirect_uri(uri).map_err(|reason| format!("redirect URI {uri} {reason}"))?;
    }
    let grant_types =
        strings("grant_types")?.unwrap_or_else(|| DEFAULT_GRANT_TYPES.map(str::to_owned).to_vec());
    Ok(ClientConfig {
        id: client_id.to_owned(),
        secret: None,
        auth_methods: vec![AuthMethod::None],
        redirect_uris,
        grant_types,
    })
}

fn invalid_client(description: impl Into<String>) -> OAuthError {
    OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
}

impl Provider {
    /// Fetches the metadata document `client_id` names, unless it is a
    /// configured or registered client or no URL.
    pub(crate) async fn prefetch(&self, client_id: Option<&str>) -> Fetched {
        let id = client_id?;
        if !is_document_id(id) || self.client(id).is_some() {
            return None;
        }
        if let Some(client) = lock(&self.documents).get(id) {
            return Some(Ok(client));
        }
        let result = self.fetch_document(id).await;
        match &result {
            Ok((client, ttl)) => {
                tracing::info!(client = %id, "client metadata document fetched");
                if !ttl.is_zero() {
                    lock(&self.documents)
                        .entries
                        .insert(id.to_owned(), (Instant::now() + *ttl, client.clone()));
                }
            }
            Err(error) => {
                tracing::info!(client = %id, reason = %error.description, "client metadata document rejected");
            }
        }
        Some(result.map(|(client, _)| client))
    }

    async fn fetch_document(&self, id: &str) -> Result<(ClientConfig, Duration), OAuthError> {
        let url = check_document_url(id)
            .map_err(|reason| invalid_client(format!("client_id {reason}")))?;
        let failed = |error: reqwest::Error| {
            invalid_client(format!(
                "fetching the client metadata document failed: {error}"
            ))
        };
        let mut response = self
            .http
            .get(url)
            .header(header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(failed)?;
        if response.status() != StatusCode::OK {
            return Err(invalid_client(format!(
                "the client metadata document answered {}",
                response.status()
            )));
        }
        let too_large = || invalid_client("the client metadata document exceeds 64 KiB");
        if response
            .content_length()
            .is_some_and(|length| length > MAX_DOCUMENT as u64)
        {
            return Err(too_large());
        }
        let ttl = cache_ttl(response.headers());
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_DOCUMENT {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let client = parse_document(id, &body).map_err(invalid_client)?;
        Ok((client, ttl))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn document_urls() {
        assert!(check_document_url("https://app.example/client.json").is_ok());
        assert!(check_document_url("http://127.0.0.1:8080/client").is_ok());
        assert!(check_document_url("http://[::1]:8080/client").is_ok());
        assert!(check_document_url("http://localhost/client").is_ok());
        assert!(check_document_url("http://app.example/client").is_err());
        assert!(check_document_url("http://127.0.0.2/client").is_err());
        assert!(check_document_url("https://app.example/").is_err());
        assert!(check_document_url("https://app.example/a/../client").is_err());
        assert!(check_document_url("https://u:p@app.example/client").is_err());
        assert!(check_document_url("https://app.example/client#x").is_err());
        assert!(!is_document_id("plain-client"));
        assert!(is_document_id("https://app.example/client"));
    }

    #[test]
    fn cache_lifetimes() {
        let mut headers = HeaderMap::new();
        assert_eq!(cache_ttl(&headers), MAX_CACHE);
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=5"));
        assert_eq!(cache_ttl(&headers), Duration::from_secs(5));
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=3600"),
        );
        assert_eq!(cache_ttl(&headers), MAX_CACHE);
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        assert_eq!(cache_ttl(&headers), Duration::ZERO);
    }

    #[test]
    fn documents() {
        let id = "https://app.example/client";
        let good = br#"{"client_id":"https://app.example/client","redirect_uris":["http://127.0.0.1:1/cb"]}"#;
        let client = parse_document(id, good).expect("valid");
        assert!(!client.is_confidential());
        assert_eq!(client.redirect_uris, vec!["http://127.0.0.1:1/cb"]);
        assert!(client.allows_grant("refresh_token"));
        assert!(parse_document("https://app.example/other", good).is_err());
        assert!(parse_document(id, br#"{"client_id":"https://app.example/client"}"#).is_err());
        assert!(parse_document(id, b"not json").is_err());
        let secret = br#"{"client_id":"https://app.example/client","redirect_uris":["http://127.0.0.1:1/cb"],"token_endpoint_auth_method":"client_secret_basic"}"#;
        assert!(parse_document(id, secret).is_err());
    }
}
