//! The connections live on this replica: loaded from the store, kept in step with it
//! through its events (re-syncing everything after a missed notification), each one
//! run by its lifecycle task. Every change rebuilds the [`View`] and announces which
//! lists changed so sessions can be told.

mod entry;
mod status;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

pub use entry::LocalStatus;

use crate::clock::Timestamp;
use crate::config::{InlineOnly, Policy, resolve};
use crate::metrics::Metrics;
use crate::store::{
    BusMessage, ConnectionState, ConnectionStatus, Store, StoreEvent, StoredConnection,
};
use crate::upstream::auth::CredentialsFactory;
use crate::upstream::lifecycle::{self, Report};
use crate::upstream::{Upstream, UpstreamError};
use crate::view::{Changes, View};
use entry::Entry;

/// Settings the registry needs.
pub struct RegistrySettings {
    pub replica: String,
    /// Short random token unique to this process, used in upstream request ids.
    pub replica_token: String,
    pub policy: Policy,
}

/// The connections of this replica.
pub struct Registry {
    settings: RegistrySettings,
    store: Arc<dyn Store>,
    credentials: Arc<dyn CredentialsFactory>,
    metrics: Arc<Metrics>,
    entries: Mutex<HashMap<String, Entry>>,
    view: ArcSwap<View>,
    changes: broadcast::Sender<Arc<Changes>>,
    reports: mpsc::UnboundedSender<Report>,
    status_tx: mpsc::UnboundedSender<ConnectionStatus>,
    /// When the first load finished, and whether every connection it loaded has since
    /// been dialled once (or [`FIRST_DIALS_WAIT`] passed): readiness.
    synced_at: std::sync::OnceLock<std::time::Instant>,
    settled: AtomicBool,

    shutdown: CancellationToken,
    /// Cancelled once the registry has stopped its upstreams after `shutdown`.
    finished: CancellationToken,
}

/// The longest a starting replica stays unready for connections still dialling: one
/// that hangs does not hold back the others for longer.
pub const FIRST_DIALS_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl Registry {
    /// Starts the registry: loads every connection and follows the store's events.
    pub fn start(
        settings: RegistrySettings,
        store: Arc<dyn Store>,
        credentials: Arc<dyn CredentialsFactory>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let (reports, report_rx) = mpsc::unbounded_channel();
        let (status_tx, status_rx) = mpsc::unbounded_channel();
        tokio::spawn(Self::write_statuses(store.clone(), status_rx));

        let registry = Arc::new(Self {
            settings,
            store: store.clone(),
            credentials,
            metrics,
            entries: Mutex::new(HashMap::new()),
            view: ArcSwap::from_pointee(View::default()),
            changes: broadcast::channel(256).0,
            reports,
            status_tx,
            synced_at: std::sync::OnceLock::new(),
            settled: AtomicBool::new(false),

            shutdown,
            finished: CancellationToken::new(),
        });
        // Subscribe before the first sync so no change falls between the two.
        let events = store.subscribe();
        tokio::spawn(registry.clone().follow_store(events));
        tokio::spawn(registry.clone().follow_reports(report_rx));
        tokio::spawn(registry.clone().heartbeat());
        registry
    }

    /// The current view.
    pub fn view(&self) -> Arc<View> {
        self.view.load_full()
    }

    /// Changes of the view, as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Changes>> {
        self.changes.subscribe()
    }

    /// Whether the first full load from the store finished (readiness).
    pub fn is_synced(&self) -> bool {
        self.synced_at.get().is_some()
    }

    /// Whether each connection of the first load has been dialled once, so that its
    /// tools are served or its error known (readiness: a replica that took traffic
    /// before would answer its first calls with "not listed yet"). True for good once
    /// it is, or once [`FIRST_DIALS_WAIT`] has passed since the load.
    pub fn is_settled(&self) -> bool {
        if self.settled.load(Ordering::Acquire) {
            return true;
        }
        let Some(synced_at) = self.synced_at.get() else {
            return false;
        };
        let dialling = self
            .lock()
            .values()
            .any(|e| e.upstream.is_some() && e.status.state == ConnectionState::Connecting);
        if dialling && synced_at.elapsed() < FIRST_DIALS_WAIT {
            return false;
        }
        self.settled.store(true, Ordering::Release);
        true
    }

    /// This replica's status of each connection.
    pub fn local_status(&self) -> HashMap<String, LocalStatus> {
        self.lock()
            .iter()
            .map(|(k, e)| (k.clone(), e.status.clone()))
            .collect()
    }

    /// The upstream serving a connection.
    pub fn upstream(&self, name: &str) -> Option<Arc<Upstream>> {
        self.lock().get(name).and_then(Entry::serving)
    }

    pub fn replica(&self) -> &str {
        &self.settings.replica
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn follow_store(self: Arc<Self>, mut events: broadcast::Receiver<StoreEvent>) {
        self.resync().await;
        let _ = self.synced_at.set(std::time::Instant::now());
        loop {
            let event = tokio::select! {
                () = self.shutdown.cancelled() => break,
                e = events.recv() => e,
            };
            match event {
                Ok(StoreEvent::ConnectionChanged { name, revision }) => {
                    let current = self.lock().get(&name).map(|e| e.revision);
                    if current.is_some_and(|r| r >= revision) {
                        continue;
                    }
                    match self.store.get_connection(&name).await {
                        Ok(Some(row)) => self.apply(row),
                        Ok(None) => self.remove(&name),
                        Err(error) => {
                            tracing::warn!(connection = %name, %error, "cannot read changed connection; resyncing");
                            self.resync().await;
                        }
                    }
                }
                Ok(StoreEvent::ConnectionDeleted { name }) => self.remove(&name),
                Ok(StoreEvent::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    self.resync().await
                }
                Ok(StoreEvent::Bus(BusMessage::TokenChanged {
                    connection,
                    subject,
                })) => {
                    if let Some(upstream) = self.upstream(&connection) {
                        if let Some(subject) = &subject {
                            upstream.forget_token(subject);
                        }
                        tracing::info!(connection = %connection, "credentials changed; re-dialling");
                        upstream.wake();
                    }
                }
                Ok(StoreEvent::SessionEnded { .. } | StoreEvent::Bus(_)) => {}

                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
        // Shutting down: stop every lifecycle and withdraw this replica's status.
        let entries: Vec<Entry> = self.lock().drain().map(|(_, e)| e).collect();
        for e in entries {
            e.stop.cancel();
        }
        let _ = self
            .store
            .clear_replica_status(&self.settings.replica)
            .await;
        self.finished.cancel();
    }

    /// Resolves once the registry has stopped (after its shutdown token fired): every
    /// lifecycle told to stop and this replica's status withdrawn.
    pub async fn stopped(&self) {
        self.finished.cancelled().await;
    }

    /// Compares everything with the store (after start-up or missed notifications).
    async fn resync(&self) {
        let rows = loop {
            match self.store.list_connections().await {
                Ok(rows) => break rows,
                Err(error) => {
                    tracing::warn!(%error, "cannot list connections; retrying");
                    tokio::select! {
                        () = self.shutdown.cancelled() => return,
                        () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        let names: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
        let gone: Vec<String> = self
            .lock()
            .keys()
            .filter(|n| !names.contains(n))
            .cloned()
            .collect();
        for name in gone {
            self.remove(&name);
        }
        for row in rows {
            let current = self.lock().get(&row.name).map(|e| e.revision);
            if current != Some(row.revision) {
                self.apply(row);
            }
        }
    }

    /// Starts (or replaces) a connection from its stored row.
    fn apply(&self, row: StoredConnection) {
        let name = row.name.clone();
        let stop = self.shutdown.child_token();
        let (upstream, status) = match self.build(&row) {
            Ok(upstream) => {
                let upstream = Arc::new(upstream);
                tokio::spawn(lifecycle::run(
                    upstream.clone(),
                    self.reports.clone(),
                    stop.clone(),
                ));
                let status = LocalStatus {
                    state: ConnectionState::Connecting,
                    error: None,
                    revision: row.revision,
                };
                (Some(upstream), status)
            }
            Err((state, error)) => {
                tracing::warn!(connection = %name, %error, "connection cannot run on this replica");
                let status = LocalStatus {
                    state,
                    error: Some(error),
                    revision: row.revision,
                };
                (None, status)
            }
        };
        tracing::info!(connection = %name, revision = row.revision, "connection loaded");
        {
            let mut entries = self.lock();
            let old = entries.remove(&name);
            // The old revision keeps serving only while a new upstream is on its way.
            let previous = match (old, &upstream) {
                (Some(old), Some(_)) => old.into_bridge(),
                (Some(old), None) => {
                    old.stop_all();
                    None
                }
                (None, _) => None,
            };
            entries.insert(
                name.clone(),
                Entry {
                    revision: row.revision,
                    written_at: row.updated_at,
                    upstream,
                    stop,
                    previous,
                    status: status.clone(),
                },
            );
        }
        self.metrics.reloads.inc();
        self.set_revision_gauge();
        self.rebuild_view();
        self.write_status(&name, &status);
    }

    /// The upstream a stored row describes, or the state it is in and why not.
    fn build(&self, row: &StoredConnection) -> Result<Upstream, (ConnectionState, String)> {
        let invalid = |e: String| (ConnectionState::Invalid, e);
        let spec = row.spec.clone().map_err(invalid)?;
        let config = resolve(
            &row.name,
            spec,
            row.source,
            self.settings.policy,
            &InlineOnly,
        )
        .map_err(|e| invalid(e.to_string()))?;
        let credentials = self.credentials.credentials(&config).map_err(|e| {
            let state = match e {
                UpstreamError::NotAuthorized(_) => ConnectionState::AwaitingAuthorization,
                _ => ConnectionState::Invalid,
            };
            (state, e.to_string())
        })?;
        Upstream::new(
            Arc::new(config),
            row.revision,
            credentials,
            &self.settings.replica_token,
        )
        .map_err(|e| invalid(e.to_string()))
    }

    fn remove(&self, name: &str) {
        let Some(entry) = self.lock().remove(name) else {
            return;
        };
        tracing::info!(connection = %name, "connection removed");
        entry.stop_all();
        self.metrics.remove_connection(name);
        self.metrics.reloads.inc();
        self.set_revision_gauge();
        self.rebuild_view();
        // This replica's status of the deleted connection says so.
        let _ = self.status_tx.send(ConnectionStatus {
            connection: name.to_owned(),
            replica: self.settings.replica.clone(),
            state: ConnectionState::Removed,
            tools: 0,
            last_error: None,
            problems: Vec::new(),
            auth_state: None,
            revision: 0,
            updated_at: Timestamp::now(),
        });
    }

    /// `hawser_config_revision`: the newest revision held. Revisions come from one
    /// sequence for all connections, so replicas that applied the same changes agree,
    /// also after a delete (which lowers it on all of them) and on one that just
    /// started (which loads the rows as they are).
    fn set_revision_gauge(&self) {
        let newest = self.lock().values().map(|e| e.revision).max().unwrap_or(0);
        self.metrics.config_revision.set(newest);
    }

    async fn follow_reports(self: Arc<Self>, mut reports: mpsc::UnboundedReceiver<Report>) {
        while let Some(report) = reports.recv().await {
            match report {
                Report::State {
                    upstream,
                    state,
                    error,
                } => {
                    let status = {
                        let mut entries = self.lock();
                        let Some(entry) = entries.get_mut(upstream.name()) else {
                            continue;
                        };
                        // A report from a replaced upstream is stale.
                        if !entry
                            .upstream
                            .as_ref()
                            .is_some_and(|u| Arc::ptr_eq(u, &upstream))
                        {
                            continue;
                        }
                        entry.status = LocalStatus {
                            state,
                            error,
                            revision: entry.revision,
                        };
                        // The new revision cannot serve: stop bridging with the old one.
                        let failed = matches!(
                            state,
                            ConnectionState::Down
                                | ConnectionState::Invalid
                                | ConnectionState::AwaitingAuthorization
                        );
                        let bridged = failed && entry.previous.is_some();
                        if bridged {
                            entry.retire_previous();
                        }
                        (entry.status.clone(), bridged)
                    };
                    let (status, bridged) = status;
                    if bridged {
                        self.rebuild_view();
                    }
                    self.write_status(upstream.name(), &status);
                }
                Report::Catalog { upstream } => {
                    let (current, written) = {
                        let mut entries = self.lock();
                        match entries.get_mut(upstream.name()) {
                            Some(e)
                                if e.upstream
                                    .as_ref()
                                    .is_some_and(|u| Arc::ptr_eq(u, &upstream)) =>
                            {
                                // The new revision is ready: it takes over, and
                                // the old one finishes what it was asked.
                                e.retire_previous();
                                (e.upstream.clone(), e.written_at.take())
                            }
                            Some(e) => (e.upstream.clone(), None),
                            None => (None, None),
                        }
                    };
                    if current.is_some_and(|u| Arc::ptr_eq(&u, &upstream)) {
                        self.rebuild_view();
                        if let Some(written) = written {
                            self.metrics
                                .reload_lag
                                .observe(written.elapsed().as_secs_f64());
                        }
                    }
                }
            }
        }
    }

    fn rebuild_view(&self) {
        let upstreams: Vec<Arc<Upstream>> =
            self.lock().values().filter_map(Entry::serving).collect();
        let new = View::build(&upstreams);
        let old = self.view.swap(Arc::new(new));
        let changes = self.view.load().changes_since(&old);
        if !changes.is_empty() {
            let _ = self.changes.send(Arc::new(changes));
        }
    }
}
