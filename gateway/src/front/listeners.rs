//! The `subscriptions/listen` streams open on this replica, and what each asked to
//! hear about. The registry's change events and policy changes are announced to them
//! (see [`super::subscriptions`] for how a stream is opened), each only when the list
//! as its caller sees it changed: a change to a tool the caller may not see is not
//! announced, and a policy that shows or hides one is.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::endpoint::Endpoint;
use crate::identity::Identity;
use crate::jsonrpc;
use crate::policy::Policies;
use crate::revision::meta;
use crate::sse;
use crate::view::{ListKind, View};

/// What a client asks to hear about (`params.notifications`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    #[serde(default, skip_serializing_if = "is_false")]
    pub tools_list_changed: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub prompts_list_changed: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub resources_list_changed: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Filter {
    fn wants(&self, kind: ListKind) -> bool {
        match kind {
            ListKind::Tools => self.tools_list_changed,
            ListKind::Prompts => self.prompts_list_changed,
            ListKind::Resources | ListKind::Templates => self.resources_list_changed,
        }
    }
}

struct Listener {
    endpoint: Endpoint,
    filter: Filter,
    caller: Arc<Identity>,
    /// The fingerprint of each list as this caller last heard of it.
    seen: [u64; 4],
    /// The request id (JSON text): the subscription's id.
    id: String,
    tx: mpsc::Sender<Bytes>,
}

/// The listen streams open on this replica.
#[derive(Default)]
pub struct Listeners {
    open: Mutex<Vec<Listener>>,
    /// The resources they asked to hear about, as watched upstream.
    pub watches: super::watch::Watches,
}

impl Listeners {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Listener>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells every listener whose lists changed as its caller sees them, once per
    /// notification. `changes` names the lists that changed (`None`: the policies
    /// changed, any list may look different to anyone).
    pub fn announce(&self, view: &View, policy: &Policies, changes: Option<&crate::view::Changes>) {
        let mut open = self.lock();
        open.retain(|l| !l.tx.is_closed());
        for l in open.iter_mut() {
            let kinds = match changes {
                Some(c) => c.for_endpoint(&l.endpoint),
                None => &ListKind::ALL[..],
            };
            let mut sent: Vec<&'static str> = Vec::new();
            for kind in kinds {
                if !l.filter.wants(*kind) {
                    continue;
                }
                // A connection that is gone changed everything it listed.
                let now = view
                    .endpoint(&l.endpoint)
                    .map_or(0, |e| policy.fingerprint(&l.caller, e, *kind));
                if now == l.seen[kind.index()] {
                    continue;
                }
                l.seen[kind.index()] = now;
                let method = kind.changed_notification();
                if !sent.contains(&method) {
                    sent.push(method);
                    let _ = l.tx.try_send(sse::event(&tagged(method, &l.id, None)));
                }
            }
        }
    }

    /// Registers a stream of `caller` on `endpoint` that hears what `filter` accepts,
    /// tagged with subscription `id` (JSON text); frames arrive on the receiver (the
    /// sender adds others, e.g. resource updates).
    pub(super) fn add(
        &self,
        endpoint: &Endpoint,
        filter: Filter,
        id: &str,
        caller: Arc<Identity>,
        view: &View,
        policy: &Policies,
    ) -> (mpsc::Sender<Bytes>, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        let mut seen = [0; 4];
        if let Some(e) = view.endpoint(endpoint) {
            for kind in ListKind::ALL {
                seen[kind.index()] = policy.fingerprint(&caller, e, kind);
            }
        }
        let mut open = self.lock();
        // Streams that closed since the last announcement go now: a client that opens
        // and drops streams while nothing changes must not pile them up.
        open.retain(|l| !l.tx.is_closed());
        open.push(Listener {
            endpoint: endpoint.clone(),
            filter,
            caller,
            seen,
            id: id.to_owned(),
            tx: tx.clone(),
        });
        (tx, rx)
    }

    /// Streams open here (metrics, tests).
    pub fn len(&self) -> usize {
        self.lock().iter().filter(|l| !l.tx.is_closed()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A notification of subscription `id` (JSON text), with extra `params` members.
pub(super) fn tagged(method: &str, id: &str, extra: Option<&str>) -> Bytes {
    let mut params = format!(
        r#"{{"_meta":{{{}:{id}}}"#,
        jsonrpc::raw_string(meta::SUBSCRIPTION_ID).get()
    );
    if let Some(extra) = extra {
        params.push(',');
        params.push_str(extra);
    }
    params.push('}');
    jsonrpc::notification(method, Some(&params))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::AuthMethod;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn streams_that_closed_do_not_pile_up_while_nothing_changes() {
        let listeners = Listeners::default();
        let policy = Policies::new(
            Arc::new(MemoryStore::new()),
            false,
            crate::metrics::Metrics::new(),
        );
        let view = View::default();
        let caller = Arc::new(Identity {
            subject: "u".into(),
            method: AuthMethod::StaticToken,
            groups: Vec::new(),
            scopes: Vec::new(),
            token: None,
            claims: None,
        });
        let mut kept = None;
        for i in 0..1_000 {
            let (tx, rx) = listeners.add(
                &Endpoint::Aggregated,
                Filter::default(),
                &format!("\"{i}\""),
                caller.clone(),
                &view,
                &policy,
            );
            // The client goes away: the stream's receiver and sender are dropped.
            if i == 0 {
                kept = Some((tx, rx));
            }
        }
        assert_eq!(listeners.lock().len(), 2, "the open one and the newest");
        assert_eq!(listeners.len(), 1);
        drop(kept);
    }
}
