//! Test helpers: resources to reconcile, a [`Context`] over a mocked API server and a
//! real Postgres (one database per test), and the [`ApiServerVerifier`] that asserts
//! each HTTP call a [`Scenario`] expects, in order, and answers it like an API server.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hawser_crds::{McpConnection, McpConnectionSpec, McpConnectionStatus};
use hawser_gateway::config::Policy;
use hawser_gateway::crypto::Keyring;
use hawser_gateway::store::{PgStore, postgres};
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::ObjectMeta;
use kube::client::Body;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower_test::mock::{self, Handle, SendResponse};

use crate::Context;
use crate::controller::{FIELD_MANAGER, FINALIZER};
use crate::metrics::Metrics;

pub mod policy;

pub const NAMESPACE: &str = "team-a";
pub const NAME: &str = "github";
/// The store key of [`connection`].
pub const CONNECTION: &str = "team-a/github";

/// `team-a/github`: a bearer token from Secret `gh`, key `token`; generation 1.
pub fn connection() -> McpConnection {
    let spec: McpConnectionSpec = serde_json::from_value(json!({
        "url": "https://mcp.example.com/mcp",
        "auth": {"type": "bearer", "token": {"secretKeyRef": {"name": "gh", "key": "token"}}}
    }))
    .expect("valid spec");
    let mut conn = McpConnection::new(NAME, spec);
    conn.meta_mut().namespace = Some(NAMESPACE.into());
    conn.meta_mut().uid = Some("6d1f0a51-0000-4000-8000-000000000001".into());
    conn.meta_mut().generation = Some(1);
    conn
}

/// Variations of [`connection`] (an extension trait: the type lives in `hawser-crds`).
pub trait ConnectionFixture: Sized {
    fn finalized(self) -> Self;
    fn with_status(self, status: McpConnectionStatus) -> Self;
    /// A changed spec: another URL, the next generation.
    fn with_new_url(self, url: &str) -> Self;
    fn needs_delete(self) -> Self;
}

impl ConnectionFixture for McpConnection {
    fn finalized(self) -> Self {
        with_finalizer(self)
    }

    fn with_status(mut self, status: McpConnectionStatus) -> Self {
        self.set_status(status);
        self
    }

    fn with_new_url(mut self, url: &str) -> Self {
        self.spec.url = Some(url.to_owned());
        next_generation(self)
    }

    fn needs_delete(self) -> Self {
        deleting(self)
    }
}

/// A resource the mock API server serves, for the handlers shared by every kind.
pub trait Served: Resource<DynamicType = ()> + Clone + Serialize {
    /// The resource's plural, in its URLs.
    const PLURAL: &'static str;
    /// The resource's kind, in its status patches and Events.
    const KIND: &'static str;
    type Status: DeserializeOwned + Clone;
    fn set_status(&mut self, status: Self::Status);
}

impl Served for McpConnection {
    const PLURAL: &'static str = "mcpconnections";
    const KIND: &'static str = "McpConnection";
    type Status = McpConnectionStatus;

    fn set_status(&mut self, status: McpConnectionStatus) {
        self.status = Some(status);
    }
}

/// `object` with the [`FINALIZER`] added.
pub fn with_finalizer<K: Resource>(mut object: K) -> K {
    object.finalizers_mut().push(FINALIZER.to_owned());
    object
}

/// `object` as after a spec change: the generation goes up.
pub fn next_generation<K: Resource>(mut object: K) -> K {
    object.meta_mut().generation = object.meta().generation.map(|g| g + 1);
    object
}

/// `object` being deleted.
pub fn deleting<K: Resource>(mut object: K) -> K {
    object.meta_mut().deletion_timestamp = Some(Time(Timestamp::now()));
    object
}

/// A Secret in [`NAMESPACE`] with the given data.
pub fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(NAMESPACE.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Secret::default()
    }
}

/// The HTTP calls one reconciliation is expected to make, in order.
pub enum Scenario {
    /// A resource without the finalizer: one JSON patch adding it, nothing else.
    FinalizerCreation(McpConnection),
    /// The apply branch: one GET per referenced Secret in name order (`None`: the API
    /// server answers 404), the status patch when `status_patch`, then one Event per
    /// reason in `events`.
    Apply {
        conn: McpConnection,
        secrets: Vec<(&'static str, Option<Secret>)>,
        status_patch: bool,
        events: Vec<&'static str>,
    },
    /// The cleanup branch: the Events, then the JSON patch removing the finalizer.
    Cleanup {
        conn: McpConnection,
        events: Vec<&'static str>,
    },
    /// No call at all.
    RadioSilence,
}

/// What the mock API server received that tests look at: the statuses applied (of
/// connections unless told) and the Events.
#[derive(Debug)]
pub struct Seen<S = McpConnectionStatus> {
    pub statuses: Vec<S>,
    pub events: Vec<K8sEvent>,
}

impl<S> Default for Seen<S> {
    fn default() -> Self {
        Self {
            statuses: Vec::new(),
            events: Vec::new(),
        }
    }
}

impl<S: DeserializeOwned + Clone> Seen<S> {
    /// The end of the apply branch: the status patch of `object` when `status_patch`,
    /// then one Event per reason in `events` about `object`, named `name`.
    async fn handle_report<K: Served<Status = S>>(
        &mut self,
        handle: &mut ApiHandle,
        object: &K,
        name: &str,
        status_patch: bool,
        events: Vec<&str>,
    ) {
        if status_patch {
            self.statuses
                .push(handle_status_patch(handle, object).await);
        }
        self.handle_events(handle, K::KIND, name, events).await;
    }

    /// The cleanup branch: one Event per reason in `events` about `object`, named
    /// `name`, then the JSON patch removing the finalizer.
    async fn handle_cleanup<K: Served>(
        &mut self,
        handle: &mut ApiHandle,
        object: &K,
        name: &str,
        events: Vec<&str>,
    ) {
        self.handle_events(handle, K::KIND, name, events).await;
        handle_finalizer_removal(handle, object).await;
    }

    async fn handle_events(
        &mut self,
        handle: &mut ApiHandle,
        kind: &str,
        name: &str,
        events: Vec<&str>,
    ) {
        for reason in events {
            self.events
                .push(handle_event_about(handle, reason, kind, name).await);
        }
    }
}

type ApiHandle = Handle<Request<Body>, Response<Body>>;

pub struct ApiServerVerifier(ApiHandle);

impl ApiServerVerifier {
    /// Serves `scenario` in the background; the handle yields what was seen. The mock
    /// is dropped afterwards, so any further call fails the reconciliation.
    pub fn run(self, scenario: Scenario) -> JoinHandle<Seen> {
        tokio::spawn(async move {
            let mut handle = self.0;
            let mut seen = Seen::default();
            match scenario {
                Scenario::FinalizerCreation(conn) => {
                    handle_finalizer_creation(&mut handle, &conn).await;
                }
                Scenario::Apply {
                    conn,
                    secrets,
                    status_patch,
                    events,
                } => {
                    for (name, secret) in secrets {
                        handle_secret_get(&mut handle, name, secret).await;
                    }
                    seen.handle_report(&mut handle, &conn, NAME, status_patch, events)
                        .await;
                }
                Scenario::Cleanup { conn, events } => {
                    seen.handle_cleanup(&mut handle, &conn, NAME, events).await;
                }
                Scenario::RadioSilence => {}
            }
            seen
        })
    }
}

async fn next(handle: &mut ApiHandle) -> (Request<Body>, SendResponse<Response<Body>>) {
    handle
        .next_request()
        .await
        .expect("the reconciler made no further call")
}

async fn json_body(request: Request<Body>) -> Value {
    let bytes = request
        .into_body()
        .collect_bytes()
        .await
        .expect("request body");
    serde_json::from_slice(&bytes).expect("request body is JSON")
}

fn respond(send: SendResponse<Response<Body>>, status: StatusCode, body: &impl serde::Serialize) {
    let bytes = serde_json::to_vec(body).expect("serializable");
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(bytes))
            .expect("response"),
    );
}

/// The URL path of `object` in [`NAMESPACE`].
fn resource_path<K: Served>(object: &K) -> String {
    format!(
        "/apis/hawser.dev/v1alpha1/namespaces/{NAMESPACE}/{}/{}",
        K::PLURAL,
        object.name_any()
    )
}

/// The JSON patch adding the finalizer to `object` (which has none).
async fn handle_finalizer_creation<K: Served>(handle: &mut ApiHandle, object: &K) {
    let patch = json!([
        {"op": "test", "path": "/metadata/finalizers", "value": null},
        {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}
    ]);
    handle_finalizer_patch(handle, object, &patch, with_finalizer(object.clone())).await;
}

/// The JSON patch removing the finalizer of `object` (its only one).
async fn handle_finalizer_removal<K: Served>(handle: &mut ApiHandle, object: &K) {
    let patch = json!([
        {"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
        {"op": "remove", "path": "/metadata/finalizers/0"}
    ]);
    let mut done = object.clone();
    done.finalizers_mut().clear();
    handle_finalizer_patch(handle, object, &patch, done).await;
}

/// A JSON patch of `object`, `expected`, answered with `patched`.
async fn handle_finalizer_patch<K: Served>(
    handle: &mut ApiHandle,
    object: &K,
    expected: &Value,
    patched: K,
) {
    let (request, send) = next(handle).await;
    assert_eq!(request.method(), Method::PATCH);
    assert_eq!(
        request.uri().to_string(),
        format!("{}?", resource_path(object))
    );
    assert_eq!(
        request.headers()["content-type"],
        "application/json-patch+json"
    );
    assert_eq!(&json_body(request).await, expected);
    respond(send, StatusCode::OK, &patched);
}

async fn handle_secret_get(handle: &mut ApiHandle, name: &str, secret: Option<Secret>) {
    let (request, send) = next(handle).await;
    assert_eq!(request.method(), Method::GET);
    assert_eq!(
        request.uri().to_string(),
        format!("/api/v1/namespaces/{NAMESPACE}/secrets/{name}")
    );
    match secret {
        Some(secret) => respond(send, StatusCode::OK, &secret),
        None => respond(
            send,
            StatusCode::NOT_FOUND,
            &json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("secrets \"{name}\" not found"), "reason": "NotFound",
                "details": {"name": name, "kind": "secrets"}, "code": 404
            }),
        ),
    }
}

/// The server-side apply of `object`'s status; the status applied.
async fn handle_status_patch<K: Served>(handle: &mut ApiHandle, object: &K) -> K::Status {
    let (request, send) = next(handle).await;
    assert_eq!(request.method(), Method::PATCH);
    assert_eq!(
        request.uri().to_string(),
        format!(
            "{}/status?&force=true&fieldManager={FIELD_MANAGER}",
            resource_path(object)
        )
    );
    assert_eq!(
        request.headers()["content-type"],
        "application/apply-patch+yaml"
    );
    let body = json_body(request).await;
    assert_eq!(body["apiVersion"], "hawser.dev/v1alpha1");
    assert_eq!(body["kind"], K::KIND);
    let status: K::Status = serde_json::from_value(body["status"].clone()).expect("a valid status");
    let mut patched = object.clone();
    patched.set_status(status.clone());
    respond(send, StatusCode::OK, &patched);
    status
}

/// An Event with `reason` about the resource `kind` `name` in [`NAMESPACE`].
async fn handle_event_about(
    handle: &mut ApiHandle,
    reason: &str,
    kind: &str,
    name: &str,
) -> K8sEvent {
    let (request, send) = next(handle).await;
    assert_eq!(request.method(), Method::POST);
    assert_eq!(
        request.uri().to_string(),
        format!("/apis/events.k8s.io/v1/namespaces/{NAMESPACE}/events?")
    );
    let event: K8sEvent = serde_json::from_value(json_body(request).await).expect("an Event");
    assert_eq!(event.reason.as_deref(), Some(reason), "{event:?}");
    assert_eq!(event.reporting_controller.as_deref(), Some(FIELD_MANAGER));
    let regarding = event.regarding.clone().unwrap_or_default();
    assert_eq!(regarding.kind.as_deref(), Some(kind));
    assert_eq!(regarding.name.as_deref(), Some(name));
    respond(send, StatusCode::CREATED, &event);
    event
}

/// Waits for the verifier to have seen every expected call.
pub async fn timeout_after_5s<T>(verifier: JoinHandle<T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), verifier)
        .await
        .expect("the scenario timed out: an expected call was not made")
        .expect("the scenario failed: see its assertion above")
}

/// A real, migrated Postgres store (its own database) shared by the steps of a test;
/// each step gets a [`Context`] over a fresh mock API server.
pub struct TestEnv {
    pub store: Arc<PgStore>,
    pub metrics: Metrics,
}

impl TestEnv {
    pub async fn new() -> Self {
        let db = hawser_e2e::harness::test_db().await;
        let pool = postgres::connect(&db.url, &Default::default())
            .await
            .expect("connect to the test database");
        postgres::migrate(&pool).await.expect("migrate");
        let keyring = Keyring::parse(&Keyring::generate_entry()).expect("a fresh key");
        let store = Arc::new(PgStore::start(pool, keyring).await.expect("store"));
        Self {
            store,
            metrics: Metrics::default(),
        }
    }

    /// A context whose client talks to a new mock API server, and that server's verifier.
    pub fn context(&self) -> (Arc<Context>, ApiServerVerifier) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let (_leader, leading) = watch::channel(true);
        let ctx = Context::new(
            client,
            self.store.clone(),
            self.metrics.clone(),
            Policy::default(),
            leading,
            "test-operator",
        );
        (Arc::new(ctx), ApiServerVerifier(handle))
    }
}
