//! Upstream HTTP/1.1 connections, kept per thread.
//!
//! Every thread slot ([`crate::runtime::slots`]) keeps its own idle connections, so a
//! call on a connection thread goes out on an upstream connection driven by that same
//! thread. A connection is dialled when none is idle, handed back by its response's
//! body once read to the end (a body dropped half-read closes its connection: HTTP/1.1
//! cannot reuse it), and closed once unused for [`IDLE_FOR`] (noticed when its pool is
//! next used, or when the connection's transport is dropped). A request that a reused
//! connection turned out closed before it was sent goes out again on another.
//!
//! The pool of one transport holds one upstream (a couple for the bridge, which reaches
//! other replicas), so connections are found by comparing, not hashing; and a response
//! hands its connection back itself, with no task spawned per call to watch for it.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;

type Sender = SendRequest<Full<Bytes>>;
/// What [`HttpClients::request`] returns.
pub type ResponseFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Response<PooledBody>, ClientError>> + Send + 'a>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Idle connections kept per thread and upstream at most.
const MAX_IDLE: usize = 256;
/// Upstreams a thread keeps connections to at most (a transport has one; the bridge
/// one per replica it reached). Past it, connections to a new one are not kept.
const MAX_UPSTREAMS: usize = 64;
/// An idle connection unused this long is closed.
const IDLE_FOR: Duration = Duration::from_secs(90);

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection to the upstream could be made.
    #[error("cannot connect")]
    Connect(#[source] BoxError),
    /// The connection failed while the request was sent or the response read.
    #[error("request failed")]
    Http(#[source] hyper::Error),
    #[error("the URL has no {0}")]
    Url(&'static str),
}

impl ClientError {
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect(_))
    }
}

/// Where a connection goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    scheme: Scheme,
    authority: Authority,
}

/// One thread's idle connections to each upstream it reached (one for a transport's
/// pool; the bridge's reaches each replica), oldest first. Upstreams keep their place
/// in the list, which a response's body names to hand its connection back.
#[derive(Default)]
struct Slot {
    upstreams: Mutex<Vec<(Key, Vec<Idle>)>>,
}

/// A connection and since when it is idle.
type Idle = (Sender, Instant);

impl Slot {
    fn lock(&self) -> MutexGuard<'_, Vec<(Key, Vec<Idle>)>> {
        self.upstreams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The place of `key`'s list (made when new; `None` when there is no room) and,
    /// under the same lock, an idle connection of it.
    fn checkout(&self, key: &Key) -> (Option<usize>, Option<Sender>) {
        let mut upstreams = self.lock();
        if let Some(at) = upstreams.iter().position(|(k, _)| k == key) {
            return (Some(at), freshest(&mut upstreams[at].1));
        }
        if upstreams.len() >= MAX_UPSTREAMS {
            return (None, None);
        }
        upstreams.push((key.clone(), Vec::new()));
        (Some(upstreams.len() - 1), None)
    }

    /// An idle connection of the upstream at `at`.
    fn take(&self, at: usize) -> Option<Sender> {
        freshest(&mut self.lock().get_mut(at)?.1)
    }

    fn put(&self, at: usize, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut upstreams = self.lock();
        let Some((_, idle)) = upstreams.get_mut(at) else {
            return;
        };
        if idle.len() >= MAX_IDLE {
            idle.remove(0);
        }
        idle.push((sender, Instant::now()));
    }
}

/// The most recently used of `idle`; the expired are closed.
fn freshest(idle: &mut Vec<Idle>) -> Option<Sender> {
    let now = Instant::now();
    let expired = idle
        .iter()
        .take_while(|(_, since)| now.duration_since(*since) >= IDLE_FOR)
        .count();
    idle.drain(..expired);
    idle.pop().map(|(sender, _)| sender)
}

/// The HTTP/1.1 client of the hot path, one pool of connections per thread slot.
pub struct HttpClients {
    connector: HttpsConnector<HttpConnector>,
    h1: http1::Builder,
    slots: Box<[Arc<Slot>]>,
}

impl HttpClients {
    /// A client dialling through `connector` (plain TCP or TLS, by the URL's scheme).
    pub fn new(connector: HttpsConnector<HttpConnector>) -> Self {
        Self {
            connector,
            h1: http1::Builder::new(),
            slots: (0..crate::runtime::slots())
                .map(|_| Arc::default())
                .collect(),
        }
    }

    /// Sends `req`, whose URI is absolute, on an idle connection of the calling
    /// thread or a new one. A `Host` header is added when it has none. The future is
    /// boxed: it holds the request while it is sent, and the futures of the calls
    /// that await it would otherwise carry (and copy) all of it.
    pub fn request(&self, req: Request<Full<Bytes>>) -> ResponseFuture<'_> {
        Box::pin(self.send(req))
    }

    async fn send(
        &self,
        mut req: Request<Full<Bytes>>,
    ) -> Result<Response<PooledBody>, ClientError> {
        let uri = req.uri().clone();
        let key = Key {
            scheme: uri.scheme().cloned().ok_or(ClientError::Url("scheme"))?,
            authority: uri.authority().cloned().ok_or(ClientError::Url("host"))?,
        };
        if !req.headers().contains_key(HOST) {
            req.headers_mut().insert(HOST, host_header(&key)?);
        }
        *req.uri_mut() = origin_form(&uri);
        let slot = &self.slots[crate::runtime::slot() % self.slots.len()];
        let (at, mut taken) = slot.checkout(&key);
        loop {
            // The rare paths (waiting for a connection to be ready, dialling) are boxed:
            // their futures are large, and inline they would be copied with this one.
            let idle = match (at, taken.take()) {
                (_, Some(sender)) if sender.is_ready() => Some(sender),
                (Some(at), Some(sender)) => Box::pin(self.idle(slot, at, sender)).await,
                _ => None,
            };
            let (mut sender, reused) = match idle {
                Some(sender) => (sender, true),
                None => (Box::pin(self.dial(&uri)).await?, false),
            };
            match sender.try_send_request(req).await {
                Ok(response) => {
                    let back = at.map(|at| {
                        Box::new(Back {
                            sender,
                            slot: slot.clone(),
                            at,
                        })
                    });
                    return Ok(response.map(|body| PooledBody { body, back }));
                }
                Err(mut e) => match e.take_message() {
                    // Not sent: a reused connection had closed meanwhile. Try another.
                    Some(again) if reused => {
                        req = again;
                        taken = at.and_then(|at| slot.take(at));
                    }
                    _ => return Err(ClientError::Http(e.into_error())),
                },
            }
        }
    }

    /// `sender` once it is ready, or else another idle connection of the upstream at
    /// `at` that is.
    async fn idle(&self, slot: &Slot, at: usize, mut sender: Sender) -> Option<Sender> {
        loop {
            if !sender.is_closed() && sender.ready().await.is_ok() {
                return Some(sender);
            }
            sender = slot.take(at)?;
        }
    }

    async fn dial(&self, uri: &Uri) -> Result<Sender, ClientError> {
        let io = tower::ServiceExt::oneshot(self.connector.clone(), uri.clone())
            .await
            .map_err(ClientError::Connect)?;
        let (sender, connection) = self.h1.handshake(io).await.map_err(ClientError::Http)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream connection ended");
            }
        });
        Ok(sender)
    }
}

/// `Host`: the authority, without the scheme's default port.
fn host_header(key: &Key) -> Result<HeaderValue, ClientError> {
    let default = match key.scheme.as_str() {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    };
    let text = match key.authority.port_u16() {
        Some(port) if Some(port) != default => key.authority.as_str(),
        _ => key.authority.host(),
    };
    HeaderValue::from_str(text).map_err(|_| ClientError::Url("valid host"))
}

/// The request target as sent to an origin server: path and query only.
fn origin_form(uri: &Uri) -> Uri {
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::from(path)
}

/// How a response's body hands its connection back.
struct Back {
    sender: Sender,
    slot: Arc<Slot>,
    /// The upstream's place in the slot.
    at: usize,
}

/// A response's body: once read to its end, its connection goes back to the pool.
pub struct PooledBody {
    body: Incoming,
    /// Boxed: the body is held in large futures, which every pointer's worth more
    /// makes dearer to move.
    back: Option<Box<Back>>,
}

impl PooledBody {
    fn give_back(&mut self) {
        if let Some(back) = self.back.take() {
            back.slot.put(back.at, back.sender);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.give_back(),
            Poll::Ready(Some(Err(_))) => this.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // A body with nothing left to read (none at all, as in a 202) frees its
        // connection too; one dropped half-read takes its connection with it.
        if self.body.is_end_stream() {
            self.give_back();
        }
    }
}

#[cfg(test)]
mod tests;
