//! The HTTP client the `oauth2` crate uses for token requests: the gateway's reqwest
//! client (one HTTP stack, one TLS stack), adapted to `oauth2`'s request/response types.

use std::future::Future;
use std::pin::Pin;

/// A failed token-endpoint request (transport level; the provider's own errors are
/// token responses).
#[derive(Debug, thiserror::Error)]
#[error("token endpoint unreachable: {0}")]
pub struct HttpError(String);

type Pending = Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, HttpError>> + Send>>;

/// An `oauth2` async HTTP client backed by `client`. Redirects are not followed: a
/// token endpoint that redirects is misconfigured, and following could leak
/// credentials to another origin.
pub fn adapter(client: reqwest::Client) -> impl Fn(oauth2::HttpRequest) -> Pending + Send + Sync {
    move |request: oauth2::HttpRequest| {
        let client = client.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let response = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(|e| HttpError(crate::upstream::error::root_cause(&e)))?;
            let mut builder = http::Response::builder().status(response.status());
            for (k, v) in response.headers() {
                builder = builder.header(k, v);
            }
            let bytes = response
                .bytes()
                .await
                .map_err(|e| HttpError(crate::upstream::error::root_cause(&e)))?;
            builder
                .body(bytes.to_vec())
                .map_err(|e| HttpError(e.to_string()))
        })
    }
}

/// A reqwest client for OAuth traffic (metadata, token requests).
pub fn client() -> reqwest::Client {
    crate::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(30))
        .user_agent(concat!("hawser/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}
