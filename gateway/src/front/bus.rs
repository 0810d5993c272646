//! The front's use of the replica bus: a client's answer or cancellation that reaches
//! a replica other than the one holding the request is forwarded there, and what other
//! replicas send here is acted on.

use std::sync::Arc;

use serde_json::value::RawValue;

use super::listen;
use super::relay::Relay;
use super::session::ClientSession;
use super::state::Front;
use crate::jsonrpc::{Id, Message};
use crate::store::BusMessage;

/// Cancels a request held by another replica (whichever has it in flight).
pub async fn cancel_elsewhere(front: &Front, session: &ClientSession, id: &Id) {
    let message = BusMessage::Cancel {
        session: session.id_hash,
        request_id: id.json().to_owned(),
    };
    if let Err(error) = front.store.publish(None, &message).await {
        tracing::warn!(session = %session.handle, %error, "cannot forward cancellation to other replicas");
    }
}

/// Delivers a client's answer to a server→client request: to the upstream waiting
/// here, or to the replica its gateway id names.
pub async fn deliver_answer(front: &Front, session: &ClientSession, msg: &Message<'_>) {
    match front
        .relay
        .deliver(session.id_hash, msg, front.task_tagger())
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            if !deliver_elsewhere(front, session, msg).await {
                tracing::debug!(session = %session.handle, "answer to an unknown or finished server request");
            }
        }
        Err(error) => {
            tracing::warn!(session = %session.handle, %error, "cannot deliver answer upstream")
        }
    }
}

/// Sends an answer whose server request waits on another replica (the one its
/// gateway id names); whether it went.
async fn deliver_elsewhere(front: &Front, session: &ClientSession, msg: &Message<'_>) -> bool {
    let Some(owner) = msg.id.map(Id::from_raw).and_then(|id| Relay::owner_of(&id)) else {
        return false;
    };
    if owner == front.relay.token() {
        return false;
    }
    let raw = msg.with_id(msg.id.map(RawValue::get).unwrap_or("null"));
    let message = BusMessage::Answer {
        session: session.id_hash,
        message: String::from_utf8_lossy(&raw).into_owned(),
    };
    match front.store.publish(Some(&owner), &message).await {
        Ok(()) => {
            tracing::info!(session = %session.handle, replica_token = %owner, "answer forwarded to its replica");
            true
        }
        Err(error) => {
            tracing::warn!(session = %session.handle, %error, "cannot forward an answer to its replica");
            false
        }
    }
}

/// Acts on a message from another replica.
pub async fn receive(front: &Arc<Front>, message: BusMessage) {
    match message {
        BusMessage::Answer { session, message } => {
            let Ok(msg) = Message::parse(message.as_bytes()) else {
                return;
            };
            match front
                .relay
                .deliver(session, &msg, front.task_tagger())
                .await
            {
                Ok(true) => {}
                Ok(false) => tracing::debug!("forwarded answer matches no pending request here"),
                Err(error) => {
                    tracing::warn!(%error, "cannot deliver a forwarded answer upstream")
                }
            }
        }
        BusMessage::Cancel {
            session,
            request_id,
        } => {
            if let Some(s) = front.sessions.local_session(&session)
                && let Ok(raw) = RawValue::from_string(request_id)
            {
                s.cancel(&Id::from_raw(&raw));
            }
        }
        // The registry handles token changes; identity's API keys follow key changes.
        BusMessage::TokenChanged { .. }
        | BusMessage::ApiKeysChanged
        | BusMessage::SigningKeysChanged
        | BusMessage::PoliciesChanged
        | BusMessage::ConsoleSessionsRevoked => {}
        BusMessage::ResourceSubscription {
            session,
            connection,
            uri,
            subscribed,
        } => super::subscribed::receive(front, session, connection, uri, subscribed),
        BusMessage::UpstreamSession {
            session,
            connection,
        } => {
            if let Some(s) = front.sessions.local_session(&session)
                && s.has_stream()
            {
                listen::follow_new(front, &s, &connection).await;
            }
        }
    }
}
