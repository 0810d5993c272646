//! Streamable HTTP towards an upstream: one POST per message, answered with JSON, an
//! SSE stream, or 202. Streams are parsed incrementally as bytes arrive.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyDataStream, BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use sse_stream::SseStream;
use url::Url;

use super::auth::Credentials;
pub use super::http_pool::HttpClients;
use super::http_pool::PooledBody;
use super::{UpstreamError, error};

use crate::headers::{MCP_PROTOCOL_VERSION as VERSION_HEADER, MCP_SESSION_ID as SESSION_HEADER};
/// Upper bound for one buffered JSON response body.
const MAX_JSON_BODY: usize = 256 * 1024 * 1024;
/// How long the rest of a stream whose answer arrived is read, for its connection.
const SETTLE_FOR: Duration = Duration::from_secs(2);
/// Events read from such a stream at most.
const SETTLE_EVENTS: usize = 16;

/// The session a message belongs to.
#[derive(Debug, Clone, Copy)]
pub struct SessionRef<'a> {
    pub id: Option<&'a str>,
    pub protocol_version: &'a str,
    /// Whose upstream token to present (connections with per-user tokens).
    pub subject: Option<&'a str>,
}

/// How the upstream answered a POST.
pub enum Reply {
    /// 202: accepted, nothing to read (notifications, responses).
    Accepted,
    /// A complete JSON-RPC message.
    Message(Bytes),
    /// An SSE stream of messages.
    Events(EventStream),
}

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Builds the HTTP clients of the hot path with the given connect timeout. hyper's
/// own client, not reqwest: reqwest's per-request layers (proxy matching, redirects,
/// URL parsing) cost more than the HTTP/1.1 exchange itself. Connections are pooled
/// per thread ([`super::http_pool`]).
pub fn client(connect_timeout: Duration) -> HttpClients {
    crate::install_crypto_provider();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_platform_verifier()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    HttpClients::new(https)
}

fn body_stream(body: PooledBody) -> ByteStream {
    Box::pin(BodyDataStream::new(body).map_err(std::io::Error::other))
}

/// Messages of one upstream SSE stream.
pub struct EventStream {
    inner: Pin<Box<SseStream<sse_stream::ByteStreamBody<ByteStream, Bytes>>>>,
    /// Id of the last event seen, for resuming with `Last-Event-ID`.
    pub last_event_id: Option<String>,
    /// Reconnection delay the upstream asked for.
    pub retry: Option<Duration>,
}

impl EventStream {
    fn new(body: ByteStream) -> Self {
        Self {
            inner: Box::pin(SseStream::from_bytes_stream(body)),
            last_event_id: None,
            retry: None,
        }
    }

    /// Reads what is left of a stream whose answer arrived, so that its connection
    /// goes back to the pool: an upstream ends the stream after the answer, but the
    /// end may arrive a moment later, and a stream dropped before its end closes the
    /// connection (one TCP connection opened per call instead of reused). The end is
    /// usually there already; otherwise a task waits for it, briefly.
    pub fn settle(mut self) {
        use futures::FutureExt;
        for _ in 0..SETTLE_EVENTS {
            match self.inner.next().now_or_never() {
                Some(Some(Ok(_))) => continue,
                // Ended (the connection is free again), or broken (it is gone).
                Some(None | Some(Err(_))) => return,
                None => break,
            }
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let rest = async {
                for _ in 0..SETTLE_EVENTS {
                    if !matches!(self.inner.next().await, Some(Ok(_))) {
                        return;
                    }
                }
            };
            let _ = tokio::time::timeout(SETTLE_FOR, rest).await;
        });
    }

    /// The next message's bytes; `None` when the stream ends.
    pub async fn next_message(&mut self) -> Option<Result<Bytes, UpstreamError>> {
        loop {
            let event = match self.inner.next().await? {
                Ok(e) => e,
                Err(e) => {
                    return Some(Err(UpstreamError::Unavailable(format!(
                        "upstream stream broke: {e}"
                    ))));
                }
            };
            if let Some(id) = event.id {
                self.last_event_id = Some(id);
            }
            if let Some(ms) = event.retry {
                self.retry = Some(Duration::from_millis(ms));
            }
            // Priming events (empty data) and non-message events carry nothing to relay.
            match (event.event.as_deref(), event.data) {
                (None | Some("message"), Some(data)) if !data.trim().is_empty() => {
                    return Some(Ok(Bytes::from(data)));
                }
                _ => continue,
            }
        }
    }
}

/// The HTTP side of one connection: where to POST, with which credentials.
pub struct HttpTransport {
    client: HttpClients,
    uri: Uri,
    host: String,
    credentials: Credentials,
}

impl HttpTransport {
    pub fn new(
        url: &Url,
        credentials: Credentials,
        connect_timeout: Duration,
    ) -> Result<Self, UpstreamError> {
        let host = url.host_str().unwrap_or_default().to_owned();
        let host = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        let uri: Uri = url
            .as_str()
            .parse()
            .map_err(|e| UpstreamError::Unavailable(format!("invalid upstream URL: {e}")))?;
        Ok(Self {
            client: client(connect_timeout),
            uri,
            host,
            credentials,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    fn request(&self, method: Method, headers: HeaderMap, body: Bytes) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = headers;
        req
    }

    async fn send(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<http::Response<PooledBody>, UpstreamError> {
        self.client.request(req).await.map_err(|e| {
            if e.is_connect() {
                UpstreamError::Connect {
                    host: self.host.clone(),
                    reason: error::root_cause(&e),
                }
            } else {
                UpstreamError::Unavailable(format!(
                    "request to {} failed: {}",
                    self.host,
                    error::root_cause(&e)
                ))
            }
        })
    }

    async fn headers(
        &self,
        session: SessionRef<'_>,
        extra: &HeaderMap,
    ) -> Result<HeaderMap, UpstreamError> {
        let mut headers = self.credentials.headers(session.subject).await?;
        headers.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(id) = session.id
            && let Ok(v) = HeaderValue::from_str(id)
        {
            headers.insert(SESSION_HEADER, v);
        }
        if let Ok(v) = HeaderValue::from_str(session.protocol_version) {
            headers.insert(VERSION_HEADER, v);
        }
        Ok(headers)
    }

    /// POSTs one JSON-RPC message. Returns the reply and the session id header, if any.
    /// A 401/403 with OAuth credentials refreshes the token and retries once.
    pub async fn post(
        &self,
        session: SessionRef<'_>,
        body: Bytes,
        extra: &HeaderMap,
    ) -> Result<(Reply, Option<String>), UpstreamError> {
        let headers = self.headers(session, extra).await?;
        match self.post_once(session, headers.clone(), body.clone()).await {
            Err(rejected @ UpstreamError::Unauthorized { .. }) => {
                if self.credentials.rejected(&headers, session.subject).await? {
                    let headers = self.headers(session, extra).await?;
                    self.post_once(session, headers, body).await
                } else {
                    Err(rejected)
                }
            }
            other => other,
        }
    }

    async fn post_once(
        &self,
        session: SessionRef<'_>,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Result<(Reply, Option<String>), UpstreamError> {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        let response = self.send(self.request(Method::POST, headers, body)).await?;
        let session_id = response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match response.status() {
            StatusCode::ACCEPTED => Ok((Reply::Accepted, session_id)),
            s if s.is_success() => {
                if content_type(response.headers()).starts_with("text/event-stream") {
                    Ok((
                        Reply::Events(EventStream::new(body_stream(response.into_body()))),
                        session_id,
                    ))
                } else if content_length(response.headers()) == Some(0) {
                    Ok((Reply::Accepted, session_id))
                } else {
                    let bytes = read_limited(response, MAX_JSON_BODY).await?;
                    if bytes.iter().all(u8::is_ascii_whitespace) {
                        return Ok((Reply::Accepted, session_id));
                    }
                    Ok((Reply::Message(bytes), session_id))
                }
            }
            s if s.is_client_error()
                && !matches!(s, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
                && !(s == StatusCode::NOT_FOUND && session.id.is_some())
                && content_type(response.headers()).starts_with("application/json") =>
            {
                // 2026-07-28 servers answer a refused request with its HTTP status (400,
                // 404) and the JSON-RPC error in the body: that error is the answer.
                let bytes = read_limited(response, MAX_JSON_BODY).await?;
                match crate::jsonrpc::Message::parse(&bytes) {
                    Ok(m) if m.error.is_some() => Ok((Reply::Message(bytes), session_id)),
                    _ => Err(UpstreamError::Http {
                        status: s.as_u16(),
                        detail: Some(summarize_body(&bytes)).filter(|d| !d.is_empty()),
                    }),
                }
            }
            _ => Err(self.status_error(session, response).await),
        }
    }

    /// Opens the GET stream of a session (server-initiated messages), optionally
    /// resuming after `last_event_id`. `Ok(None)` when the upstream offers none (405).
    pub async fn get_stream(
        &self,
        session: SessionRef<'_>,
        last_event_id: Option<&str>,
    ) -> Result<Option<EventStream>, UpstreamError> {
        let mut extra = HeaderMap::new();
        if let Some(id) = last_event_id
            && let Ok(v) = HeaderValue::from_str(id)
        {
            extra.insert("last-event-id", v);
        }
        let mut headers = self.headers(session, &extra).await?;
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        let response = self
            .send(self.request(Method::GET, headers, Bytes::new()))
            .await?;
        match response.status() {
            StatusCode::METHOD_NOT_ALLOWED => Ok(None),
            s if s.is_success()
                && content_type(response.headers()).starts_with("text/event-stream") =>
            {
                Ok(Some(EventStream::new(body_stream(response.into_body()))))
            }
            s if s.is_success() => Ok(None),
            _ => Err(self.status_error(session, response).await),
        }
    }

    /// Ends an upstream session (DELETE). Failures are not errors: the upstream expires it.
    pub async fn delete_session(&self, session: SessionRef<'_>) {
        let Ok(headers) = self.headers(session, &HeaderMap::new()).await else {
            return;
        };
        if let Err(error) = self
            .send(self.request(Method::DELETE, headers, Bytes::new()))
            .await
        {
            tracing::debug!(host = %self.host, %error, "upstream session DELETE failed");
        }
    }

    async fn status_error(
        &self,
        session: SessionRef<'_>,
        response: http::Response<PooledBody>,
    ) -> UpstreamError {
        let status = response.status();
        if status == StatusCode::NOT_FOUND && session.id.is_some() {
            return UpstreamError::SessionExpired;
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let www_authenticate = response
                .headers()
                .get(http::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            return UpstreamError::Unauthorized {
                status: status.as_u16(),
                www_authenticate,
            };
        }
        let detail = read_limited(response, 4096)
            .await
            .ok()
            .map(|b| summarize_body(&b))
            .filter(|s| !s.is_empty());
        UpstreamError::Http {
            status: status.as_u16(),
            detail,
        }
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Reads a whole body, refusing more than `limit` bytes.
async fn read_limited(
    response: http::Response<PooledBody>,
    limit: usize,
) -> Result<Bytes, UpstreamError> {
    if content_length(response.headers()).is_some_and(|n| n > limit as u64) {
        return Err(UpstreamError::Protocol(format!(
            "response larger than {limit} bytes"
        )));
    }
    let collected = Limited::new(response.into_body(), limit)
        .collect()
        .await
        .map_err(|e| UpstreamError::Protocol(format!("reading the response failed: {e}")))?;
    Ok(collected.to_bytes())
}

/// A short, single-line excerpt of an error body for messages.
fn summarize_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    // A JSON-RPC error body: show its message.
    if let Ok(msg) = crate::jsonrpc::Message::parse(body)
        && let Some(err) = msg.error
    {
        return crate::jsonrpc::error_summary(err).1;
    }
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    line.chars().take(200).collect()
}
