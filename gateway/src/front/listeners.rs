//! The `subscriptions/listen` streams open on this replica, and what each asked to
//! hear about. The registry's change events are announced to them (see
//! [`super::subscriptions`] for how a stream is opened).

use std::sync::Mutex;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::endpoint::Endpoint;
use crate::jsonrpc;
use crate::revision::meta;
use crate::sse;
use crate::view::ListKind;

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
    /// The request id (JSON text): the subscription's id.
    id: String,
    tx: mpsc::Sender<Bytes>,
}

/// The listen streams open on this replica.
#[derive(Default)]
pub struct Listeners {
    open: Mutex<Vec<Listener>>,
}

impl Listeners {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Listener>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells every listener of an endpoint whose lists changed, once per notification.
    pub fn announce(&self, changes: &crate::view::Changes) {
        let mut open = self.lock();
        open.retain(|l| !l.tx.is_closed());
        for l in open.iter() {
            let mut sent: Vec<&'static str> = Vec::new();
            for kind in changes.for_endpoint(&l.endpoint) {
                let method = kind.changed_notification();
                if l.filter.wants(*kind) && !sent.contains(&method) {
                    sent.push(method);
                    let _ = l.tx.try_send(sse::event(&tagged(method, &l.id, None)));
                }
            }
        }
    }

    /// Registers a stream of `endpoint` that hears what `filter` accepts, tagged with
    /// subscription `id` (JSON text); frames arrive on the receiver.
    pub(super) fn add(
        &self,
        endpoint: &Endpoint,
        filter: Filter,
        id: &str,
    ) -> mpsc::Receiver<Bytes> {
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        self.lock().push(Listener {
            endpoint: endpoint.clone(),
            filter,
            id: id.to_owned(),
            tx,
        });
        rx
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
