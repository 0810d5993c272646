//! Serving HTTP: the accept loop with the limits a hostile client meets. Each client
//! address may hold a bounded number of connections; a connection must send each
//! request's headers within a deadline (which also closes idle keep-alive
//! connections) and its body within another; shutdown lets requests in flight finish.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::config::HttpLimits;
use crate::metrics::Metrics;
use crate::runtime::Workers;

use crate::body::BodyTimeout;

/// A request body that fails once its deadline passes. The timer starts only when
/// the body is not all there at the first read (most bodies arrive with their
/// headers), so the common request pays for no timer.
pub struct TimedBody {
    inner: Incoming,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// When the request arrived: the deadline counts from here.
    arrived: tokio::time::Instant,
    timeout: Duration,
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let (arrived, timeout) = (self.arrived, self.timeout);
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(arrived + timeout)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Open connections per client address.
#[derive(Default)]
struct Slots {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection's place; freed on drop.
struct Slot {
    slots: Arc<Slots>,
    ip: IpAddr,
}

impl Slots {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_default();
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot {
            slots: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown`, then waits for requests in flight.
/// Connections are served on `workers`' threads.
pub async fn serve(
    listener: TcpListener,
    workers: &Workers,
    app: Router,
    limits: HttpLimits,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Slots::default());
    loop {
        let (tcp, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = slots.take(peer.ip(), limits.max_connections_per_client) else {
            metrics.connections_refused.inc();
            tracing::debug!(client = %peer.ip(), "connection refused: too many open from this address");
            continue;
        };
        let app = app.clone();
        let body_timeout = limits.body_read_timeout;
        let header_read_timeout = limits.header_read_timeout;
        let watcher = graceful.watcher();
        workers.place(tcp, move |tcp, placed| async move {
            // Small writes (an SSE event, a short JSON answer) must leave at once, not
            // wait for the peer's delayed ACK (Nagle): that would add ~40 ms to a call.
            let _ = tcp.set_nodelay(true);
            let service =
                hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                    request
                        .extensions_mut()
                        .insert(ConnectInfo::<SocketAddr>(peer));
                    let request = request.map(|inner| {
                        axum::body::Body::new(TimedBody {
                            inner,
                            deadline: None,
                            arrived: tokio::time::Instant::now(),
                            timeout: body_timeout,
                        })
                    });
                    let app = app.clone();
                    async move {
                        let Ok(response) = app.oneshot(request).await;
                        Ok::<_, Infallible>(response)
                    }
                });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .keep_alive(true)
                .serve_connection(TokioIo::new(tcp), service);
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop((slot, placed));
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_address_and_freed() {
        let slots = Arc::new(Slots::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let one = slots.take(a, 2).unwrap();
        let two = slots.take(a, 2).unwrap();
        assert!(slots.take(a, 2).is_none(), "a third from the same address");
        assert!(
            slots.take(b, 2).is_some(),
            "another address is not affected"
        );
        drop(one);
        assert!(
            slots.take(a, 2).is_some(),
            "a closed connection frees its place"
        );
        drop(two);
        assert!(slots.take(a, 0).is_some(), "0 means no cap");
    }
}
