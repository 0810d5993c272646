//! Forwarding a request to one upstream in the session's upstream session (opened on
//! first use, re-opened once if the upstream forgot it), then relaying what comes back.

use std::sync::Arc;

use serde_json::value::RawValue;
use tracing::Instrument as _;

use super::error::Error;
use super::record::CallRecord;
use super::reply::{self, Reply};
use super::request::RequestInfo;
use super::resume::{self, Retry};
use super::session::ClientSession;
use super::state::Front;
use super::stream::{self, CallContext, RetryContext};
use super::{bridge, consent};
use crate::audit::Outcome;
use crate::jsonrpc::{Id, ParamsView};
use crate::revision::Era;
use crate::telemetry::span::UpstreamCall;
use crate::upstream::{Upstream, UpstreamError};

/// What to forward: a request of the client's, possibly rewritten for the upstream.
pub struct Forward<'a> {
    pub method: &'a str,
    pub params: Option<&'a RawValue>,
    /// `params` read in place, when they are the client's own (not rewritten).
    pub members: Option<&'a ParamsView<'a>>,
    pub id: Id,
    /// Tool, prompt or resource as the upstream names it (audit).
    pub target: Option<String>,
}

/// Sends `request` to `upstream` and relays its answer.
pub async fn forward(
    front: &Front,
    session: &Arc<ClientSession>,
    upstream: &Arc<Upstream>,
    request: Forward<'_>,
    info: &RequestInfo,
) -> Reply {
    let Forward {
        method,
        params,
        members,
        id,
        target,
    } = request;
    if session.is_modern()
        && let Some(state) = bridge::hawser_state(params)
    {
        let retry = Retry {
            session,
            upstream,
            method,
            target: target.as_deref(),
            params,
            id,
            caller: info.caller.clone(),
        };
        front.sessions.pool.touch(upstream.name(), &session.subject);
        // Boxed, like the other large awaits below: a future holds every future it
        // awaits, and each enclosing one up to the HTTP handler is copied when it is
        // made, so keeping the big ones on the heap keeps every level small.
        return Box::pin(resume::resume(&front.bridge, retry, &state)).await;
    }
    // A 2026-07-28 retry after consent carries the answer to Hawser's request: the
    // upstream never sees it.
    let answered = upstream
        .per_user_tokens()
        .then(|| consent::take_answer(params))
        .flatten();
    let params = match &answered {
        Some((_, rest)) => Some(&**rest),
        None => params,
    };
    let inflight = session.track(id.clone());
    let timeout = upstream.config().call_timeout;
    let mut record = CallRecord::start(
        front,
        info,
        session,
        upstream.name(),
        method,
        target.clone(),
        params,
    );
    if upstream.per_user_tokens() {
        record.token_of(&session.subject);
    }
    // The upstream call's client span: the parent the upstream is told of.
    let span = info.trace.upstream(UpstreamCall {
        connection: upstream.name(),
        server: upstream.http().map(|h| h.host()),
        method,
        target: target.as_deref(),
    });
    record.traced(&span);
    let fail = |e: UpstreamError, record: CallRecord| {
        let category = e.category();
        let error = Error::upstream(upstream.name(), e);
        let body = error.to_message(Some(&id));
        record.finish(Outcome {
            error: Some((category, error.to_string())),
            response_bytes: body.len(),
            ..Outcome::default()
        });
        reply::json(body)
    };
    let ask_consent = |why: String, record: CallRecord| {
        let (body, text) = consent::answer(front, session, upstream.name(), method, &id, &why);
        record.finish(Outcome {
            error: Some(("consent", text)),
            response_bytes: body.len(),
            ..Outcome::default()
        });
        reply::json(body)
    };
    if let Some((false, _)) = answered {
        let declined = format!(
            "you declined to connect your account to {}",
            upstream.name()
        );
        return fail(UpstreamError::NotAuthorized(declined), record);
    }
    // A 2026-07-28 upstream is told about the client in every request; a legacy one
    // knows from the session, and refuses a request that says otherwise.
    let upstream_era = upstream.era_for(session.era());
    let envelope = (upstream_era == Era::Modern).then(|| session.envelope());
    // Whether `_meta` holds more than the envelope (a progress token, say).
    let others = session.modern.as_ref().is_none_or(|e| e.meta_others);
    let stripped = match (session.is_modern(), upstream_era, params) {
        (true, Era::Legacy, Some(p)) => crate::upstream::era::without_envelope(p, members, others),
        _ => None,
    };
    // A 2026-07-28 client's calls to a legacy upstream share the caller's pooled
    // upstream session, where progress tokens must be unique; two calls may well
    // carry the same one (two processes of one service account). The upstream gets
    // one of Hawser's, and progress goes back under the client's.
    let (stripped, progress_token) = match stripped
        .as_deref()
        .filter(|_| others)
        .and_then(crate::upstream::era::own_progress_token)
    {
        Some((ours, theirs)) => (Some(ours), Some(theirs)),
        None => (stripped, None),
    };
    let params = stripped.as_deref().or(params);
    let mut upstream_headers = info.upstream_headers(&span);
    if let Err(error) = front
        .identity
        .towards()
        .apply(
            upstream.config(),
            info.caller.as_deref(),
            info.client_headers.as_deref(),
            &mut upstream_headers,
        )
        .await
    {
        tracing::warn!(connection = %upstream.name(), %error, "cannot tell the upstream who is calling");
        return fail(UpstreamError::NotAuthorized(error.to_string()), record);
    }
    // A legacy client cannot take a 2026-07-28 upstream's `input_required`: Hawser asks
    // the client and retries the call, for which it keeps the request.
    let mut retry = match (&envelope, session.is_modern()) {
        (Some(envelope), false) => Some(RetryContext {
            params: params.map(ToOwned::to_owned),
            headers: upstream_headers.clone(),
            envelope: envelope.clone(),
        }),
        _ => None,
    };
    let mut retried = false;
    loop {
        let cancelled = inflight.token.clone();
        let opened = tokio::select! {
            () = cancelled.cancelled() => return reply::sse(axum::body::Body::empty()),
            r = tokio::time::timeout(timeout, Box::pin(async {
                let upstream_session = front.sessions.upstream_session(session, upstream).await?;
                let call = upstream
                    .call(&upstream_session, method, params, Some(id.json()), &upstream_headers, envelope.as_ref())
                    .await;
                Ok::<_, UpstreamError>((upstream_session, call))
            }.instrument(span.clone()))) => r,
        };
        let (upstream_session, call) = match opened {
            Err(_) => return fail(UpstreamError::Timeout(timeout), record),
            Ok(Err(UpstreamError::ConsentRequired(why))) => return ask_consent(why, record),
            Ok(Err(e)) => return fail(e, record),
            Ok(Ok(pair)) => pair,
        };
        match call {
            Ok(call) => {
                let ctx = CallContext {
                    relay: front.relay.clone(),
                    bridge: front.bridge.clone(),
                    method: method.to_owned(),
                    target: target.clone(),
                    retry: retry.take(),
                    session: session.clone(),
                    upstream: upstream.clone(),
                    upstream_session,
                    client_id: id,
                    inflight,
                    timeout,
                    record: Some(record),
                    span,
                    progress_token: progress_token.clone(),
                    tasks: front.task_tagger().cloned(),
                    hears: super::session::Hears {
                        policy: front.policy.clone(),
                        caller: info.caller.clone(),
                    },
                };
                return Box::pin(stream::respond(
                    ctx,
                    call,
                    !session.endpoint.is_aggregated(),
                ))
                .await;
            }
            Err(UpstreamError::SessionExpired) if !retried => {
                retried = true;
                front
                    .sessions
                    .drop_upstream_session(session, upstream, &upstream_session)
                    .await;
            }
            Err(UpstreamError::ConsentRequired(why)) => return ask_consent(why, record),
            Err(e) => return fail(e, record),
        }
    }
}
