//! `subscriptions/listen` (2026-07-28): one long-lived stream per request that carries
//! the list changes of every connection the endpoint shows, and updates of the
//! resources the client asked for. A change seen by any replica reaches listeners on
//! every replica: each replica's registry follows the store's change notifications and
//! rebuilds its own view; each replica watches the resources its own listeners asked
//! for at their upstreams ([`super::watch`]), which tell every watcher. Tasks it
//! names are followed by [`super::task_status`].

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

use super::error::{Error, Result};
use super::listeners::{Filter, tagged};
use super::reply::{self, Reply};
use super::request::RequestInfo;
use super::session::{ClientSession, Hears};
use super::state::Front;
use super::task_status;
use super::watch::{Held, WatchError};
use super::wire::Modern;
use crate::endpoint::Endpoint;
use crate::identity::{AuthMethod, Identity};
use crate::jsonrpc::{self, Id, Message};
use crate::policy;
use crate::revision::meta;
use crate::sse;
use crate::upstream::Upstream;

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

/// Resources one listen request may ask to hear about.
const MAX_RESOURCES: usize = 64;

/// What a client asks for (`params.notifications`).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Requested {
    #[serde(flatten)]
    lists: Filter,
    #[serde(default)]
    resource_subscriptions: Vec<String>,
    /// The tasks extension: tasks to hear `notifications/tasks` of.
    #[serde(default)]
    task_ids: Vec<String>,
}

/// What Hawser agreed to send, in the acknowledgement.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Accepted<'a> {
    #[serde(flatten)]
    lists: &'a Filter,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    resource_subscriptions: &'a [String],
    #[serde(skip_serializing_if = "<[&str]>::is_empty")]
    task_ids: &'a [&'a str],
}

/// Opens a listen stream: the acknowledgement first (what Hawser agreed to send),
/// then the notifications, each tagged with the subscription id.
pub async fn open(
    front: &Arc<Front>,
    endpoint: &Endpoint,
    identity: &Identity,
    msg: &Message<'_>,
    id: &Id,
    modern: &Modern,
    info: &RequestInfo,
) -> Result<Reply> {
    let client_address = info.remote_addr.as_deref();
    #[derive(Deserialize, Default)]
    struct Params {
        #[serde(default)]
        notifications: Option<Requested>,
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
        tools_list_changed: requested.lists.tools_list_changed && offered.tools_list_changed,
        prompts_list_changed: requested.lists.prompts_list_changed && offered.prompts_list_changed,
        resources_list_changed: requested.lists.resources_list_changed
            && offered.resources_list_changed,
    };
    let mut uris = requested.resource_subscriptions;
    uris.sort();
    uris.dedup();
    if uris.len() > MAX_RESOURCES {
        return Err(Error::InvalidParams(format!(
            "at most {MAX_RESOURCES} resource subscriptions per listen request"
        )));
    }
    // Every resource is checked and watched upstream before the stream opens, so a
    // refusal is this request's answer.
    let mut watches = Vec::with_capacity(uris.len());
    for uri in &uris {
        let upstream = resource_upstream(front, endpoint, identity, uri, client_address)?;
        let watch = front
            .listeners
            .watches
            .watch(
                &front.registry,
                &upstream,
                &identity.subject,
                uri,
                identity.method != AuthMethod::None,
            )
            .await
            .map_err(|e| match e {
                WatchError::Upstream(e) => Error::upstream(upstream.name(), e),
                e => Error::InvalidParams(format!("cannot subscribe to {uri:?}: {e}")),
            })?;
        watches.push((uri.clone(), upstream.name().to_owned(), watch));
    }
    let followed = task_status::accept(front, endpoint, identity, modern, requested.task_ids)?;
    // The tasks are asked about as this request's client would ask.
    let session = (!followed.is_empty())
        .then(|| ClientSession::ephemeral(identity, endpoint, modern.clone()));
    let followed = match &session {
        Some(session) => task_status::known(front, session, info, followed).await,
        None => Vec::new(),
    };
    let task_ids: Vec<&str> = followed.iter().map(|(t, _)| t.exposed.as_str()).collect();
    let ack_members = format!(
        r#""notifications":{}"#,
        serde_json::to_string(&Accepted {
            lists: &accepted,
            resource_subscriptions: &uris,
            task_ids: &task_ids,
        })
        .unwrap_or_else(|_| "{}".into())
    );
    let ack = tagged(
        "notifications/subscriptions/acknowledged",
        id.json(),
        Some(&ack_members),
    );
    let caller = Arc::new(identity.clone());
    let (tx, rx) = front.listeners.add(
        endpoint,
        accepted,
        id.json(),
        caller.clone(),
        &front.registry.view(),
        &front.policy,
    );
    for (uri, connection, watch) in watches {
        let hears = Hears {
            policy: front.policy.clone(),
            caller: Some(caller.clone()),
        };
        tokio::spawn(relay_updates(
            watch,
            tx.clone(),
            id.json().to_owned(),
            (connection, uri),
            hears,
        ));
    }
    if let Some(session) = session {
        for task in followed {
            tokio::spawn(task_status::follow(
                front.clone(),
                session.clone(),
                info.clone(),
                task,
                tx.clone(),
                id.json().to_owned(),
            ));
        }
    }
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

/// The upstream serving `uri` on `endpoint`, if the caller may read it there.
fn resource_upstream(
    front: &Front,
    endpoint: &Endpoint,
    identity: &Identity,
    uri: &str,
    client_address: Option<&str>,
) -> Result<Arc<Upstream>> {
    let view = front.registry.view();
    let upstream = view
        .endpoint(endpoint)
        .and_then(|e| e.resource_owner(uri).or(e.upstream.as_ref()).cloned())
        .ok_or_else(|| Error::ResourceNotFound(uri.to_owned()))?;
    let facts = policy::Facts {
        args: None,
        client_address,
        tool: None,
    };
    match front.policy.check_call(
        identity,
        upstream.name(),
        policy::Kind::Resource,
        uri,
        &facts,
    ) {
        policy::Decision::Allow(_) => Ok(upstream),
        // Hidden: exactly what an unknown resource gets.
        policy::Decision::Hidden(_) => Err(Error::ResourceNotFound(uri.to_owned())),
        policy::Decision::Denied(d) => Err(Error::Denied {
            policy: d.policy,
            rule: d.rule,
        }),
    }
}

/// Sends `notifications/resources/updated` for `uri` on a listen stream each time the
/// watch fires while its caller may see the resource, until the stream ends (the
/// watch is let go then).
async fn relay_updates(
    watch: Held,
    tx: mpsc::Sender<Bytes>,
    id: String,
    (connection, uri): (String, String),
    hears: Hears,
) {
    let uri_member = format!(r#""uri":{}"#, jsonrpc::raw_string(&uri).get());
    let frame = sse::event(&tagged(
        "notifications/resources/updated",
        &id,
        Some(&uri_member),
    ));
    let mut updates = watch.updates();
    loop {
        tokio::select! {
            () = tx.closed() => return,
            update = updates.recv() => match update {
                Ok(()) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    if !hears.resource(&connection, &uri) {
                        continue;
                    }
                    if tx.send(frame.clone()).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}
