//! A multiplexed message channel to an upstream: one long-lived connection (a stdio
//! process, a legacy SSE stream) shared by every client session on this replica.
//!
//! Request ids and progress tokens are rewritten to gateway-unique values on the way
//! out and restored on the way back, so calls from different clients never collide.
//! Server→client requests carry no association with a call on these transports; they
//! go to the call that started most recently (documented limitation).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::value::RawValue;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::UpstreamError;
use crate::jsonrpc::{self, Kind, Message, RawParams};

/// What a call receives: raw messages for it, or the failure that ended it.
pub type CallItem = Result<Bytes, UpstreamError>;

struct Route {
    tx: mpsc::Sender<CallItem>,
    /// The client's progress token, restored on notifications/progress.
    client_token: Option<Box<RawValue>>,
    gateway_token: Option<String>,
    seq: u64,
}

#[derive(Default)]
struct Routes {
    calls: HashMap<String, Route>,
    /// gateway progress token (JSON text) → upstream request id (JSON text)
    tokens: HashMap<String, String>,
}

/// A shared channel to one upstream.
pub struct Channel {
    outgoing: mpsc::Sender<Bytes>,
    routes: Mutex<Routes>,
    next: AtomicU64,
    prefix: String,
    closed: CancellationToken,
    /// Messages that belong to no call (list_changed, resource updates, logs).
    unsolicited: broadcast::Sender<Bytes>,
    failure: Mutex<Option<String>>,
}

/// The receiving end of one call on a channel.
pub struct ChannelCall {
    pub upstream_id: String,
    pub rx: mpsc::Receiver<CallItem>,
}

impl Channel {
    /// Creates a channel whose outgoing messages go to `outgoing`. Feed incoming
    /// messages with [`Channel::dispatch`] and call [`Channel::close`] when the
    /// transport ends.
    pub fn new(outgoing: mpsc::Sender<Bytes>, prefix: String) -> Arc<Self> {
        Arc::new(Self {
            outgoing,
            routes: Mutex::new(Routes::default()),
            next: AtomicU64::new(1),
            prefix,
            closed: CancellationToken::new(),
            unsolicited: broadcast::channel(256).0,
            failure: Mutex::new(None),
        })
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    pub fn closed(&self) -> CancellationToken {
        self.closed.clone()
    }

    /// Messages not tied to a call.
    pub fn subscribe(&self) -> broadcast::Receiver<Bytes> {
        self.unsolicited.subscribe()
    }

    /// Why the channel closed.
    pub fn failure(&self) -> UpstreamError {
        self.closed_error()
    }

    fn closed_error(&self) -> UpstreamError {
        let why = self
            .failure
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_else(|| "connection closed".into());
        UpstreamError::Unavailable(why)
    }

    /// Sends a request; the reply and the messages for it arrive on the returned call.
    pub async fn request(
        &self,
        method: &str,
        params: Option<&RawValue>,
    ) -> Result<ChannelCall, UpstreamError> {
        if self.is_closed() {
            return Err(self.closed_error());
        }
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let upstream_id = format!("\"{}-{seq}\"", self.prefix);
        let (tx, rx) = mpsc::channel(64);
        let mut route = Route {
            tx,
            client_token: None,
            gateway_token: None,
            seq,
        };
        // Rewrite the progress token so notifications find this call.
        let mut params_text = params.map(|p| p.get().to_owned());
        if let Some(raw) = params {
            let mut members =
                RawParams::parse(Some(raw)).map_err(|e| UpstreamError::Protocol(e.message))?;
            if let Some(meta) = members.0.get("_meta") {
                let mut meta =
                    RawParams::parse(Some(meta)).map_err(|e| UpstreamError::Protocol(e.message))?;
                if let Some(token) = meta.0.get("progressToken") {
                    let gateway = format!("\"{}-p{seq}\"", self.prefix);
                    route.client_token = Some(token.to_owned());
                    route.gateway_token = Some(gateway.clone());
                    meta.0.set("progressToken", jsonrpc::raw_or_null(gateway));
                    members.0.set("_meta", meta.to_raw());
                    params_text = Some(members.to_json());
                }
            }
        }
        {
            let mut routes = self.routes();
            if let Some(t) = &route.gateway_token {
                routes.tokens.insert(t.clone(), upstream_id.clone());
            }
            routes.calls.insert(upstream_id.clone(), route);
        }
        let msg = jsonrpc::request(&upstream_id, method, params_text.as_deref());
        if self.outgoing.send(msg).await.is_err() {
            self.forget(&upstream_id);
            return Err(self.closed_error());
        }
        Ok(ChannelCall { upstream_id, rx })
    }

    /// Sends a notification or a response.
    pub async fn send(&self, message: Bytes) -> Result<(), UpstreamError> {
        self.outgoing
            .send(message)
            .await
            .map_err(|_| self.closed_error())
    }

    /// Stops routing messages for a call (it finished or was abandoned).
    pub fn forget(&self, upstream_id: &str) {
        let mut routes = self.routes();
        if let Some(route) = routes.calls.remove(upstream_id)
            && let Some(t) = route.gateway_token
        {
            routes.tokens.remove(&t);
        }
    }

    /// Routes one message that arrived from the upstream.
    pub fn dispatch(&self, bytes: Bytes) {
        let msg = match Message::parse(&bytes) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring invalid message from upstream");
                return;
            }
        };
        match msg.kind() {
            Kind::Response => {
                let Some(id) = msg.id else { return };
                let route = {
                    let mut routes = self.routes();
                    let route = routes.calls.remove(id.get().trim());
                    if let Some(t) = route.as_ref().and_then(|r| r.gateway_token.as_ref()) {
                        routes.tokens.remove(t);
                    }
                    route
                };
                if let Some(route) = route {
                    let _ = route.tx.try_send(Ok(bytes.clone()));
                }
            }
            Kind::Notification => {
                if let Some((tx, restored)) = self.progress_route(&msg) {
                    let _ = tx.try_send(Ok(restored));
                } else {
                    let _ = self.unsolicited.send(bytes.clone());
                }
            }
            Kind::Request => {
                // No association on these transports: the most recent call gets it.
                let tx = {
                    let routes = self.routes();
                    routes
                        .calls
                        .values()
                        .max_by_key(|r| r.seq)
                        .map(|r| r.tx.clone())
                };
                match tx {
                    Some(tx) => {
                        let _ = tx.try_send(Ok(bytes.clone()));
                    }
                    None => {
                        let _ = self.unsolicited.send(bytes.clone());
                    }
                }
            }
        }
    }

    /// For a notification carrying a gateway progress token: the call it belongs to
    /// and the message with the client's token restored.
    fn progress_route(&self, msg: &Message<'_>) -> Option<(mpsc::Sender<CallItem>, Bytes)> {
        let params = RawParams::parse(msg.params).ok()?;
        let token = params
            .0
            .get("progressToken")
            .map(|t| t.get().trim().to_owned())
            .or_else(|| {
                let meta = RawParams::parse(params.0.get("_meta")).ok()?;
                meta.0
                    .get("progressToken")
                    .map(|t| t.get().trim().to_owned())
            })?;
        let routes = self.routes();
        let upstream_id = routes.tokens.get(&token)?;
        let route = routes.calls.get(upstream_id)?;
        let client = route.client_token.as_ref()?;
        let mut params = params;
        if params.0.get("progressToken").is_some() {
            params.0.set("progressToken", client.clone());
        }
        Some((route.tx.clone(), msg.with_params(&params.to_json())))
    }

    /// Ends the channel: every call in flight fails with `why`.
    pub fn close(&self, why: String) {
        if let Ok(mut f) = self.failure.lock() {
            f.get_or_insert(why.clone());
        }
        self.closed.cancel();
        let routes = std::mem::take(&mut *self.routes());
        for (_, route) in routes.calls {
            let _ = route
                .tx
                .try_send(Err(UpstreamError::Unavailable(why.clone())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ids_and_progress_tokens_are_rewritten_and_restored() {
        let (tx, mut out) = mpsc::channel(8);
        let ch = Channel::new(tx, "g1".into());
        let params = RawValue::from_string(
            r#"{"name":"progress","_meta":{"progressToken":"client-tok"}}"#.into(),
        )
        .unwrap();
        let mut call = ch.request("tools/call", Some(&params)).await.unwrap();
        let sent = out.recv().await.unwrap();
        let sent = Message::parse(&sent).unwrap();
        assert_eq!(sent.id.unwrap().get(), call.upstream_id);
        let sent_params = sent.params.unwrap().get();
        assert!(!sent_params.contains("client-tok"), "{sent_params}");

        // A progress notification with the gateway token reaches the call, token restored.
        let note = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"g1-p1","progress":1}}"#;
        ch.dispatch(Bytes::from(note));
        let got = call.rx.recv().await.unwrap().unwrap();
        assert!(
            std::str::from_utf8(&got)
                .unwrap()
                .contains(r#""progressToken":"client-tok""#)
        );

        let reply = format!(
            r#"{{"jsonrpc":"2.0","id":{},"result":{{"ok":true}}}}"#,
            call.upstream_id
        );
        ch.dispatch(Bytes::from(reply.clone()));
        assert_eq!(call.rx.recv().await.unwrap().unwrap(), Bytes::from(reply));
        assert!(ch.routes().calls.is_empty() && ch.routes().tokens.is_empty());
    }

    #[tokio::test]
    async fn closing_fails_calls_in_flight() {
        let (tx, _out) = mpsc::channel(8);
        let ch = Channel::new(tx, "g2".into());
        let mut call = ch.request("ping", None).await.unwrap();
        ch.close("process exited with status 1".into());
        let err = call.rx.recv().await.unwrap().unwrap_err();
        assert!(err.to_string().contains("exited"), "{err}");
        assert!(ch.request("ping", None).await.is_err());
    }
}
