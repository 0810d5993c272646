//! Resuming a call the era bridge parked (see [`super::bridge`]): the retry of a
//! 2026-07-28 client carries the answer to the upstream's request; it goes to the
//! waiting upstream request, and the rest of the call is the retry's answer.

use std::sync::Arc;

use serde_json::value::RawValue;

use super::bridge::Bridge;
use super::error::Error;
use super::reply::Reply;
use super::session::ClientSession;
use super::stream::{self, Relaying};
use crate::jsonrpc::{self, Id, RawParams};
use crate::upstream::Upstream;

/// What a retry asks to resume, as routing found it.
pub struct Retry<'a> {
    pub session: &'a Arc<ClientSession>,
    pub upstream: &'a Arc<Upstream>,
    pub method: &'a str,
    pub target: Option<&'a str>,
    pub params: Option<&'a RawValue>,
    pub id: Id,
    /// The retry's caller: what the rest of the call relays is judged for it.
    pub caller: Option<Arc<crate::identity::Identity>>,
}

/// Resumes the parked call a retry's `state` names.
pub async fn resume(bridge: &Bridge, retry: Retry<'_>, state: &str) -> Reply {
    let Retry {
        session,
        upstream,
        method,
        target,
        params,
        id,
        caller,
    } = retry;
    let refuse = |why: String| Error::InvalidParams(why).reply_in(Some(&id), true);
    let parked = match bridge.take(state, &session.subject, method, upstream.name(), target) {
        Ok(p) => p,
        Err(why) => return refuse(why),
    };
    let answer = RawParams::parse(params)
        .ok()
        .and_then(|p| p.0.get("inputResponses").map(ToOwned::to_owned))
        .and_then(|r| RawParams::parse(Some(&r)).ok())
        .and_then(|r| r.0.get(&parked.key).map(ToOwned::to_owned));
    let Some(answer) = answer else {
        let key = parked.key.clone();
        // Keep it waiting: the client may still send the answer.
        bridge.put_back(state, &session.subject, parked);
        return refuse(format!("params.inputResponses[{key:?}] is required"));
    };
    let Ok(mut relaying) = parked.call.downcast::<Relaying>() else {
        return refuse("the call this requestState names cannot be resumed".into());
    };
    // The answer goes where the call runs: the revision of the connection it started
    // on, which a hot reload may have replaced meanwhile.
    let held = relaying.ctx.upstream.clone();
    if held.revision() != upstream.revision() {
        return refuse(
            "the connection changed while the call waited: send the request again without requestState"
                .into(),
        );
    }
    let reply = jsonrpc::result(parked.upstream_id.json(), answer.get());
    if let Err(e) = held.send(&relaying.ctx.upstream_session, reply).await {
        return Error::upstream(held.name(), e).reply_in(Some(&id), true);
    }
    let progress_token = RawParams::parse(params)
        .ok()
        .and_then(|p| p.0.get("_meta").map(ToOwned::to_owned))
        .and_then(|m| RawParams::parse(Some(&m)).ok())
        .and_then(|m| m.0.get("progressToken").map(ToOwned::to_owned));
    let inflight = session.track(id.clone());
    relaying.adopt(session.clone(), id, inflight, progress_token, caller);
    stream::resume(*relaying).await
}
