//! The era bridge, towards legacy upstreams (see `docs/architecture.md`): a
//! 2026-07-28 client cannot answer a request an upstream sends mid-call
//! (`elicitation/create`, `sampling/createMessage`, `roots/list`), so Hawser parks the
//! call, still open upstream, and answers the client `input_required` with the
//! upstream's request and a sealed `requestState`. The client's retry carries the
//! answer: Hawser sends it to the waiting upstream request and relays the rest of the
//! call as the retry's answer.
//!
//! The `requestState` names the replica holding the call and where other replicas
//! reach it (`advertiseUrl`): a retry that the load balancer sends elsewhere is passed
//! on to that replica once, as it came, and its answer streamed back.
//!
//! This file holds the parked calls and passes retries on; resuming one is
//! [`super::resume`]. A parked call is kept as `dyn Any` so that this table, which the
//! shared [`super::state::Front`] owns, does not depend on the relay that made it.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, header};
use bytes::Bytes;
use http_body_util::Full;
use serde_json::value::RawValue;
use url::Url;

use super::error::Error;
use super::reply::Reply;
use super::ticket::{self, Invalid, Ticket};
use crate::clock::Timestamp;
use crate::crypto::Keyring;
use crate::endpoint::Endpoint;
use crate::jsonrpc::{self, Id, Message, RawParams};
use crate::upstream::streamable::{self, HttpClients};

/// How long passing a retry on may wait for the holding replica's connection.
const PASS_ON_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Marks a retry already passed on by a replica (it is never passed on twice).
pub const PASSED_ON: &str = "x-hawser-passed-on";

/// Most calls one caller may have parked at once, and all callers together on one
/// replica: each holds an upstream request open.
const MAX_PARKED_PER_CALLER: usize = 64;
const MAX_PARKED: usize = 4096;

/// How long a parked call waits for the client's retry (a person may be answering).
pub const PARK_FOR: Duration = Duration::from_secs(600);

/// A call waiting for its client's retry.
pub struct Parked {
    /// The relay of the call ([`super::stream::Relaying`]).
    pub call: Box<dyn Any + Send>,
    /// The upstream's request the answer goes to.
    pub upstream_id: Id,
    /// The key of that request in `inputRequests`.
    pub key: String,
    subject: String,
    expires: Timestamp,
}

/// What a parked call is: the ids and names its `requestState` binds.
pub struct Parking<'a> {
    pub client_id: &'a Id,
    pub subject: &'a str,
    pub method: &'a str,
    pub connection: &'a str,
    pub target: Option<&'a str>,
}

/// Calls parked on this replica.
pub struct Bridge {
    keyring: Keyring,
    /// This replica's token (as in relay ids and bus addresses).
    replica: String,
    /// Where other replicas reach this one.
    address: Option<String>,
    /// For passing retries on to the replica holding their call.
    client: HttpClients,
    next: AtomicU64,
    parked: Mutex<HashMap<String, Parked>>,
}

impl Bridge {
    pub fn new(keyring: Keyring, replica: &str, address: Option<&Url>) -> Arc<Self> {
        Arc::new(Self {
            keyring,
            replica: replica.to_owned(),
            address: address.map(|u| u.as_str().trim_end_matches('/').to_owned()),
            client: streamable::client(PASS_ON_CONNECT_TIMEOUT),
            next: AtomicU64::new(1),
            parked: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Parked>> {
        self.parked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Parks `call`, whose upstream sent `request` (id `upstream_id`), and returns the
    /// `input_required` answer for the client.
    pub fn park(
        &self,
        call: Box<dyn Any + Send>,
        about: Parking<'_>,
        upstream_id: Id,
        request: &[u8],
    ) -> Bytes {
        let (method, params) = match Message::parse(request) {
            Ok(m) => (
                m.method().to_owned(),
                m.params.map_or("{}", RawValue::get).to_owned(),
            ),
            Err(_) => ("elicitation/create".to_owned(), "{}".to_owned()),
        };
        let key = format!("hawser-{}", self.next.fetch_add(1, Ordering::Relaxed));
        let id = format!("{}-{key}", rand::random::<u64>());
        let expires = Timestamp::now().plus(PARK_FOR);
        let state = Ticket {
            replica: self.replica.clone(),
            address: self.address.clone(),
            call: id.clone(),
            method: about.method.to_owned(),
            name: binding(about.connection, about.target),
            expires,
        }
        .seal(&self.keyring, about.subject);
        let result = format!(
            r#"{{"resultType":"input_required","inputRequests":{{{}:{{"method":{},"params":{params}}}}},"requestState":{}}}"#,
            jsonrpc::raw_string(&key).get(),
            jsonrpc::raw_string(&method).get(),
            jsonrpc::raw_string(&state).get(),
        );
        let mut parked = self.lock();
        let now = Timestamp::now();
        parked.retain(|_, p| p.expires >= now);
        let mine = parked
            .values()
            .filter(|p| p.subject == about.subject)
            .count();
        if mine >= MAX_PARKED_PER_CALLER || parked.len() >= MAX_PARKED {
            drop(parked);
            // Dropping the call cancels it upstream.
            drop(call);
            return jsonrpc::error(
                Some(about.client_id.json()),
                jsonrpc::code::INTERNAL_ERROR,
                "too many calls are waiting for this client's input: answer or abandon them first",
                None,
            );
        }
        parked.insert(
            id,
            Parked {
                call,
                upstream_id,
                key,
                subject: about.subject.to_owned(),
                expires,
            },
        );
        jsonrpc::result(about.client_id.json(), &result)
    }

    /// The parked call a retry's `state` names, taken out of the table; the refusal
    /// (as a JSON-RPC error text) when there is none for this caller and request.
    pub fn take(
        &self,
        state: &str,
        subject: &str,
        method: &str,
        connection: &str,
        target: Option<&str>,
    ) -> Result<Parked, String> {
        let ticket = match Ticket::open(&self.keyring, subject, state, Timestamp::now()) {
            Some(Ok(t)) => t,
            Some(Err(Invalid::Forged)) => {
                return Err("requestState was not issued to this caller by this gateway".into());
            }
            Some(Err(Invalid::Expired)) | None => {
                return Err("requestState has expired: send the request again without it".into());
            }
        };
        if ticket.method != method || ticket.name != binding(connection, target) {
            return Err(format!(
                "requestState belongs to another request ({} of {})",
                ticket.method, ticket.name
            ));
        }
        if ticket.replica != self.replica {
            return Err(
                "requestState names a call held by another replica of this gateway, which this one cannot reach: send the request again without it"
                    .into(),
            );
        }
        // One guard for the check and the put-back (a second lock would deadlock).
        let mut parked = self.lock();
        match parked.remove(&ticket.call) {
            Some(p) if p.subject == subject => Ok(p),
            Some(p) => {
                parked.insert(ticket.call, p);
                Err("requestState was not issued to this caller by this gateway".into())
            }
            None => Err(
                "the call this requestState names is no longer waiting (answered, expired or its upstream ended it): send the request again without it"
                    .into(),
            ),
        }
    }

    /// Puts a call back that a retry could not resume yet (an answer was missing).
    pub fn put_back(&self, state: &str, subject: &str, parked: Parked) {
        if let Some(Ok(ticket)) = Ticket::open(&self.keyring, subject, state, Timestamp::now()) {
            self.lock().insert(ticket.call, parked);
        }
    }

    /// Ends calls whose client never came back; how many.
    pub fn sweep(&self) -> usize {
        let now = Timestamp::now();
        let mut parked = self.lock();
        let before = parked.len();
        parked.retain(|_, p| p.expires >= now);
        before - parked.len()
    }

    /// Calls parked here (metrics, tests).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a `requestState` binds a call to: its connection and upstream name.
fn binding(connection: &str, target: Option<&str>) -> String {
    format!("{connection}/{}", target.unwrap_or_default())
}

/// The `requestState` of a retry when it is one Hawser issued.
pub fn hawser_state(params: Option<&RawValue>) -> Option<String> {
    // Every 2026-07-28 call asks: most carry no state, and need no parse to say so.
    let params = params?;
    find_bytes!(params.get().as_bytes(), ticket::PREFIX.as_bytes())?;
    let state = RawParams::parse(Some(params))
        .ok()?
        .0
        .get_str("requestState")?;
    state.starts_with(ticket::PREFIX).then_some(state)
}

/// A 2026-07-28 request as it arrived, for passing it on.
pub struct Arrived<'a> {
    pub endpoint: &'a Endpoint,
    pub headers: &'a HeaderMap,
    pub body: &'a Bytes,
    pub subject: &'a str,
    pub id: &'a Id,
}

/// Passes a retry on to the replica holding its call, when `state` names another
/// replica; `None` when the call is held here (or the state is not one to pass on:
/// resuming refuses it with the reason).
pub async fn pass_on(bridge: &Bridge, state: &str, arrived: Arrived<'_>) -> Option<Reply> {
    let Some(Ok(ticket)) = Ticket::open(&bridge.keyring, arrived.subject, state, Timestamp::now())
    else {
        return None;
    };
    if ticket.replica == bridge.replica {
        return None;
    }
    let refuse =
        |why: &str| Some(Error::InvalidParams(why.to_owned()).reply_in(Some(arrived.id), true));
    if arrived.headers.contains_key(PASSED_ON) {
        return refuse(
            "the replica holding this call no longer has it: send the request again without requestState",
        );
    }
    let Some(address) = ticket.address else {
        return refuse(
            "requestState names a call held by another replica of this gateway, which this one cannot reach (set advertiseUrl): send the request again without it",
        );
    };
    let path = match arrived.endpoint {
        Endpoint::Aggregated => "/mcp".to_owned(),
        Endpoint::Connection(name) => format!("/mcp/{name}"),
    };
    let mut request = Request::post(format!("{address}{path}"));
    // Hop-by-hop and framing headers (RFC 9110 §7.6.1), with those the client's
    // `Connection` names, are the new connection's own.
    let named: Vec<String> = arrived
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    for (name, value) in arrived.headers {
        let hop = matches!(
            name.as_str(),
            "connection"
                | "content-length"
                | "transfer-encoding"
                | "keep-alive"
                | "te"
                | "upgrade"
                | "trailer"
        ) || name.as_str().starts_with("proxy-")
            || named.iter().any(|n| n == name.as_str());
        if !hop {
            request = request.header(name, value);
        }
    }
    let request = request
        .header(PASSED_ON, "1")
        .body(Full::new(arrived.body.clone()));
    let request = match request {
        Ok(r) => r,
        Err(_) => return refuse("cannot pass the request on to the replica holding its call"),
    };
    match bridge.client.request(request).await {
        Ok(response) => {
            tracing::info!(replica_token = %ticket.replica, "retry passed on to the replica holding its call");
            let (parts, body) = response.into_parts();
            let mut reply = Reply::new(Body::new(body));
            *reply.status_mut() = parts.status;
            for name in [header::CONTENT_TYPE, header::CACHE_CONTROL] {
                if let Some(value) = parts.headers.get(&name) {
                    reply.headers_mut().insert(name, value.clone());
                }
            }
            Some(reply)
        }
        Err(error) => {
            tracing::warn!(replica_token = %ticket.replica, %error, "cannot reach the replica holding a bridged call");
            refuse(
                "the replica holding this call cannot be reached: send the request again without requestState",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ELICIT: &[u8] =
        br#"{"jsonrpc":"2.0","id":5,"method":"elicitation/create","params":{"message":"Who?"}}"#;

    fn about<'a>(id: &'a Id, subject: &'a str) -> Parking<'a> {
        Parking {
            client_id: id,
            subject,
            method: "tools/call",
            connection: "fx",
            target: Some("elicit"),
        }
    }

    fn park(bridge: &Bridge, subject: &str) -> serde_json::Value {
        let id = Id::string("c1");
        let answer = bridge.park(Box::new(()), about(&id, subject), Id::string("u5"), ELICIT);
        serde_json::from_slice(&answer).unwrap()
    }

    #[test]
    fn a_parked_call_is_taken_once_by_its_caller_for_its_request() {
        let bridge = Bridge::new(Keyring::ephemeral(), "r1", None);
        let answer = park(&bridge, "alice");
        let result = &answer["result"];
        assert_eq!(result["resultType"], "input_required");
        assert_eq!(
            result["inputRequests"]["hawser-1"]["method"],
            "elicitation/create"
        );
        assert_eq!(
            result["inputRequests"]["hawser-1"]["params"]["message"],
            "Who?"
        );
        let state = result["requestState"].as_str().unwrap();
        assert!(state.starts_with(ticket::PREFIX));

        let other = bridge.take(state, "bob", "tools/call", "fx", Some("elicit"));
        assert!(other.is_err_and(|e| e.contains("not issued to this caller")));
        let wrong = bridge.take(state, "alice", "tools/call", "fx", Some("echo"));
        assert!(wrong.is_err_and(|e| e.contains("another request")));
        let parked = bridge
            .take(state, "alice", "tools/call", "fx", Some("elicit"))
            .unwrap();
        assert_eq!(parked.key, "hawser-1");
        assert_eq!(parked.upstream_id, Id::string("u5"));
        let again = bridge.take(state, "alice", "tools/call", "fx", Some("elicit"));
        assert!(again.is_err_and(|e| e.contains("no longer waiting")));

        // Another replica's state is not taken here.
        let elsewhere = Bridge::new(Keyring::ephemeral(), "r2", None);
        assert!(
            elsewhere
                .take(state, "alice", "tools/call", "fx", Some("elicit"))
                .is_err()
        );
    }

    #[test]
    fn one_caller_cannot_park_without_bound() {
        let bridge = Bridge::new(Keyring::ephemeral(), "r1", None);
        for _ in 0..MAX_PARKED_PER_CALLER {
            assert_eq!(
                park(&bridge, "mallory")["result"]["resultType"],
                "input_required"
            );
        }
        let refused = park(&bridge, "mallory");
        assert!(
            refused["error"]["message"]
                .as_str()
                .unwrap()
                .contains("too many calls"),
            "{refused}"
        );
        assert_eq!(bridge.len(), MAX_PARKED_PER_CALLER);
        assert_eq!(
            park(&bridge, "alice")["result"]["resultType"],
            "input_required"
        );
    }
}
