//! Legacy HTTP+SSE upstreams (MCP 2024-11-05): a GET stream whose first event names
//! the URL to POST messages to; every answer arrives on the stream.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::header::{ACCEPT, CONTENT_TYPE};
use sse_stream::SseStream;
use tokio::sync::mpsc;
use url::Url;

use super::UpstreamError;
use super::auth::Credentials;
use super::channel::Channel;

/// The HTTP client of one legacy SSE connection (built per dial: these are rare, and
/// no other transport needs reqwest).
fn client(connect_timeout: Duration) -> Result<reqwest::Client, UpstreamError> {
    crate::install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("hawser/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| UpstreamError::Unavailable(format!("HTTP client: {e}")))
}

/// Opens the stream, waits for the endpoint event, and wires a channel to it.
pub async fn connect(
    url: Url,
    credentials: Credentials,
    connect_timeout: Duration,
    prefix: String,
) -> Result<Arc<Channel>, UpstreamError> {
    let client = client(connect_timeout)?;
    let host = url.host_str().unwrap_or_default().to_owned();
    let headers = credentials.headers(None).await?;
    let response = client
        .get(url.clone())
        .headers(headers)
        .header(ACCEPT, "text/event-stream")
        .send()
        .await
        .map_err(|e| UpstreamError::from_reqwest(&e, &host, connect_timeout))?;
    if !response.status().is_success() {
        return Err(match response.status().as_u16() {
            401 | 403 => UpstreamError::Unauthorized {
                status: response.status().as_u16(),
                www_authenticate: None,
            },
            status => UpstreamError::Http {
                status,
                detail: None,
            },
        });
    }
    let mut events = SseStream::from_bytes_stream(response.bytes_stream());

    // The first event must be `endpoint`, naming where to POST.
    let endpoint = tokio::time::timeout(connect_timeout, async {
        while let Some(event) = events.next().await {
            let event = event.map_err(|e| UpstreamError::Protocol(format!("SSE: {e}")))?;
            if event.event.as_deref() == Some("endpoint") {
                let data = event.data.unwrap_or_default();
                let target = url.join(data.trim()).map_err(|e| {
                    UpstreamError::Protocol(format!("invalid endpoint {data:?}: {e}"))
                })?;
                // Posting credentials to another origin would leak them.
                if target.origin() != url.origin() {
                    return Err(UpstreamError::Protocol(
                        "endpoint event names another origin".into(),
                    ));
                }
                return Ok(target);
            }
        }
        Err(UpstreamError::Closed)
    })
    .await
    .map_err(|_| UpstreamError::Timeout(connect_timeout))??;

    let (tx, mut rx) = mpsc::channel::<Bytes>(256);
    let channel = Channel::new(tx, prefix);

    // Writer: POST each message to the endpoint.
    let closed = channel.closed();
    let ch = channel.clone();
    let post_host = host.clone();
    tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                () = closed.cancelled() => break,
                m = rx.recv() => m,
            };
            let Some(msg) = msg else { break };
            let headers = match credentials.headers(None).await {
                Ok(h) => h,
                Err(e) => {
                    ch.close(e.to_string());
                    break;
                }
            };
            let sent = client
                .post(endpoint.clone())
                .headers(headers)
                .header(CONTENT_TYPE, "application/json")
                .body(msg)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => {
                    tracing::warn!(host = %post_host, status = r.status().as_u16(), "legacy SSE upstream refused a message")
                }
                Err(e) => {
                    ch.close(
                        UpstreamError::from_reqwest(&e, &post_host, connect_timeout).to_string(),
                    );
                    break;
                }
            }
        }
    });

    // Reader: every message event goes through the channel.
    let ch = channel.clone();
    tokio::spawn(async move {
        let closed = ch.closed();
        let why = loop {
            let next = tokio::select! {
                () = closed.cancelled() => break "connection closed".to_owned(),
                e = events.next() => e,
            };
            match next {
                None => break "upstream closed the SSE stream".to_owned(),
                Some(Err(e)) => break format!("SSE stream broke: {e}"),
                Some(Ok(event)) => {
                    if matches!(event.event.as_deref(), None | Some("message"))
                        && let Some(data) = event.data
                        && !data.trim().is_empty()
                    {
                        ch.dispatch(Bytes::from(data));
                    }
                }
            }
        };
        tracing::warn!(host = %host, reason = %why, "legacy SSE upstream ended");
        ch.close(why);
    });
    Ok(channel)
}
