//! This replica's `connection_status` rows: written on every state change (in order,
//! by one writer task) and rewritten periodically, so readers can tell a live replica
//! from one that stopped reporting.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{LocalStatus, Registry};
use crate::clock::Timestamp;
use crate::store::{AuthState, ConnectionState, ConnectionStatus, Store};

/// How often each replica rewrites its status rows.
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(60);

impl Registry {
    /// Rewrites this replica's status rows periodically, so readers can tell a live
    /// replica from one that stopped reporting.
    pub(super) async fn heartbeat(self: Arc<Self>) {
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.reset();
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            for (name, status) in self.local_status() {
                self.write_status(&name, &status);
            }
        }
    }

    /// Where an OAuth connection's authorization stands, for OAuth connections.
    fn auth_state(&self, name: &str, state: ConnectionState) -> Option<AuthState> {
        let oauth = self.upstream(name).is_some_and(|u| u.uses_oauth());
        match state {
            ConnectionState::AwaitingAuthorization => Some(AuthState::AwaitingAuthorization),
            ConnectionState::Ready if oauth => Some(AuthState::Authorized),
            _ => None,
        }
    }

    pub(super) fn write_status(&self, name: &str, status: &LocalStatus) {
        let view = self.view();
        let problems = view.problems_of(name);
        let tools = view
            .connections
            .get(name)
            .map(|e| e.tools.len())
            .unwrap_or_default();
        let last_error = match (&status.error, problems.is_empty()) {
            (Some(e), _) => Some(e.clone()),
            (None, false) => Some(
                problems
                    .iter()
                    .map(|p| p.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            (None, true) => None,
        };
        self.metrics.set_state(name, status.state);
        let row = ConnectionStatus {
            connection: name.to_owned(),
            replica: self.settings.replica.clone(),
            state: status.state,
            tools: i32::try_from(tools).unwrap_or(i32::MAX),
            last_error,
            problems,
            auth_state: self.auth_state(name, status.state),
            revision: status.revision,
            updated_at: Timestamp::now(),
        };
        // One writer task keeps the rows in the order the states happened.
        let _ = self.status_tx.send(row);
    }

    pub(super) async fn write_statuses(
        store: Arc<dyn Store>,
        mut rows: mpsc::UnboundedReceiver<ConnectionStatus>,
    ) {
        while let Some(row) = rows.recv().await {
            if let Err(error) = store.write_status(&row).await {
                tracing::warn!(connection = %row.connection, %error, "cannot write connection status");
            }
        }
    }
}
