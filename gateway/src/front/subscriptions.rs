//! `subscriptions/listen` (2026-07-28): one long-lived stream per request that carries
//! the list changes of every connection the endpoint shows. A change seen by any
//! replica reaches listeners on every replica: each replica's registry follows the
//! store's change notifications and rebuilds its own view.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use serde::Deserialize;

use super::error::{Error, Result};
use super::listeners::{Filter, tagged};
use super::reply::{self, Reply};
use super::state::Front;
use crate::endpoint::Endpoint;
use crate::identity::Identity;
use crate::jsonrpc::{self, Id, Message};
use crate::revision::meta;
use crate::sse;

/// Interval of keep-alive comments on idle streams.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// What `endpoint` can announce: list changes of the lists it has.
fn offered(front: &Front, endpoint: &Endpoint) -> Filter {
    match endpoint {
        Endpoint::Aggregated => Filter {
            tools_list_changed: true,
            prompts_list_changed: true,
            resources_list_changed: true,
        },
        Endpoint::Connection(name) => {
            let catalog = front.registry.upstream(name).and_then(|u| u.catalog());
            let caps = catalog.as_ref().map(|c| &c.capabilities);
            Filter {
                tools_list_changed: caps.is_some_and(|c| c.tools.is_some()),
                prompts_list_changed: caps.is_some_and(|c| c.prompts.is_some()),
                resources_list_changed: caps.is_some_and(|c| c.resources.is_some()),
            }
        }
    }
}

/// Opens a listen stream: the acknowledgement first (what Hawser agreed to send),
/// then the notifications, each tagged with the subscription id.
pub fn open(
    front: &Arc<Front>,
    endpoint: &Endpoint,
    identity: &Identity,
    msg: &Message<'_>,
    id: &Id,
) -> Result<Reply> {
    #[derive(Deserialize, Default)]
    struct Params {
        #[serde(default)]
        notifications: Option<Filter>,
    }
    let params: Params = msg
        .params
        .map(|p| serde_json::from_str(p.get()))
        .transpose()
        .map_err(|e| Error::InvalidParams(format!("invalid subscriptions/listen params: {e}")))?
        .unwrap_or_default();
    let requested = params.notifications.unwrap_or_default();
    let offered = offered(front, endpoint);
    let accepted = Filter {
        tools_list_changed: requested.tools_list_changed && offered.tools_list_changed,
        prompts_list_changed: requested.prompts_list_changed && offered.prompts_list_changed,
        resources_list_changed: requested.resources_list_changed && offered.resources_list_changed,
    };
    let ack_members = format!(
        r#""notifications":{}"#,
        serde_json::to_string(&accepted).unwrap_or_else(|_| "{}".into())
    );
    let ack = tagged(
        "notifications/subscriptions/acknowledged",
        id.json(),
        Some(&ack_members),
    );
    let rx = front.listeners.add(
        endpoint,
        accepted,
        id.json(),
        Arc::new(identity.clone()),
        &front.registry.view(),
        &front.policy,
    );
    let draining = front.draining.clone();
    let end = jsonrpc::result(
        id.json(),
        &format!(
            r#"{{"_meta":{{{}:{}}}}}"#,
            jsonrpc::raw_string(meta::SUBSCRIPTION_ID).get(),
            id.json()
        ),
    );
    let stream = futures::stream::unfold(
        (Some(ack), rx, Some(end)),
        move |(first, mut rx, end)| {
            let draining = draining.clone();
            async move {
                if let Some(ack) = first {
                    return Some((
                        Ok::<_, std::convert::Infallible>(sse::event(&ack)),
                        (None, rx, end),
                    ));
                }
                let end = end?;
                tokio::select! {
                    // Shutting down: the final result says the server ended it.
                    () = draining.cancelled() => Some((Ok(sse::event(&end)), (None, rx, None))),
                    frame = rx.recv() => frame.map(|f| (Ok(f), (None, rx, Some(end)))),
                    () = tokio::time::sleep(KEEPALIVE) => Some((Ok(Bytes::from_static(sse::KEEPALIVE)), (None, rx, Some(end)))),
                }
            }
        },
    );
    Ok(reply::sse(Body::from_stream(stream)))
}
