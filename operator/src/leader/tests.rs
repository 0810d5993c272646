//! The election rules, and each attempt's calls against a mocked API server.

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::json;
use tower_test::mock::{self, Handle};

use super::*;

const NS: &str = "hawser-system";
const PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/hawser-system/leases/hawser-operator";

type ApiHandle = Handle<Request<Body>, Response<Body>>;

fn elector(identity: &str) -> (Elector, ApiHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    (
        Elector::new(client, NS, identity.into(), Timing::default()),
        handle,
    )
}

fn lease(
    holder: Option<&str>,
    renew: &str,
    transitions: i32,
    resource_version: &str,
) -> serde_json::Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": LEASE_NAME, "namespace": NS, "resourceVersion": resource_version},
        "spec": {
            "holderIdentity": holder,
            "renewTime": renew,
            "leaseDurationSeconds": 15,
            "leaseTransitions": transitions
        }
    })
}

fn respond(send: mock::SendResponse<Response<Body>>, status: StatusCode, body: serde_json::Value) {
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap(),
    );
}

async fn expect(
    handle: &mut ApiHandle,
    method: Method,
    uri: &str,
) -> (serde_json::Value, mock::SendResponse<Response<Body>>) {
    let (request, send) = handle.next_request().await.expect("a call");
    assert_eq!(request.method(), method);
    assert_eq!(request.uri().to_string(), uri);
    let bytes = request.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (body, send)
}

fn conflict() -> serde_json::Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict",
           "message": "the object has been modified", "code": 409})
}

#[test]
fn decisions() {
    let d = Duration::from_secs(15);
    assert_eq!(decide(None, "me", Duration::ZERO, d), Decision::Acquire);
    assert_eq!(decide(Some(""), "me", Duration::ZERO, d), Decision::Acquire);
    assert_eq!(decide(Some("me"), "me", Duration::ZERO, d), Decision::Renew);
    assert_eq!(
        decide(Some("other"), "me", Duration::from_secs(14), d),
        Decision::Follow {
            holder: "other".into()
        }
    );
    assert_eq!(decide(Some("other"), "me", d, d), Decision::Acquire);
}

#[test]
fn the_leader_steps_down_before_the_lease_can_expire() {
    let t = Timing::default();
    assert!(t.renew_deadline + t.retry_period < t.lease_duration);
}

#[tokio::test]
async fn a_missing_lease_is_created_with_us_as_holder() {
    let (mut elector, mut handle) = elector("op-1");
    let server = tokio::spawn(async move {
        let (_, send) = expect(&mut handle, Method::GET, PATH).await;
        respond(
            send,
            StatusCode::NOT_FOUND,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
        );
        let (body, send) = expect(
            &mut handle,
            Method::POST,
            "/apis/coordination.k8s.io/v1/namespaces/hawser-system/leases?",
        )
        .await;
        assert_eq!(body["metadata"]["name"], LEASE_NAME);
        assert_eq!(body["spec"]["holderIdentity"], "op-1");
        assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
        respond(send, StatusCode::CREATED, body);
    });
    assert!(elector.try_acquire_or_renew(Instant::now()).await.unwrap());
    server.await.unwrap();
}

#[tokio::test]
async fn a_held_lease_is_taken_over_only_after_it_stayed_unchanged_for_its_duration() {
    let (mut elector, mut handle) = elector("op-2");
    let start = Instant::now();
    // The holder's renewTime is far in the past by the wall clock: that alone must
    // not make the lease expired (clocks differ); only our own observation counts.
    let held = lease(Some("op-1"), "2020-01-01T00:00:00.000000Z", 3, "41");
    let server = tokio::spawn(async move {
        for _ in 0..2 {
            let (_, send) = expect(&mut handle, Method::GET, PATH).await;
            respond(send, StatusCode::OK, held.clone());
        }
        let (_, send) = expect(&mut handle, Method::GET, PATH).await;
        respond(send, StatusCode::OK, held.clone());
        let (body, send) = expect(&mut handle, Method::PUT, &format!("{PATH}?")).await;
        assert_eq!(
            body["metadata"]["resourceVersion"], "41",
            "optimistic concurrency"
        );
        assert_eq!(body["spec"]["holderIdentity"], "op-2");
        assert_eq!(body["spec"]["leaseTransitions"], 4);
        respond(send, StatusCode::OK, body);
    });
    assert!(
        !elector.try_acquire_or_renew(start).await.unwrap(),
        "first sight"
    );
    assert!(
        !elector
            .try_acquire_or_renew(start + Duration::from_secs(14))
            .await
            .unwrap(),
        "unchanged for 14s < 15s"
    );
    assert!(
        elector
            .try_acquire_or_renew(start + Duration::from_secs(15))
            .await
            .unwrap()
    );
    server.await.unwrap();
}

#[tokio::test]
async fn a_renewal_that_conflicts_loses_the_lease() {
    let (mut elector, mut handle) = elector("op-1");
    let server = tokio::spawn(async move {
        let (_, send) = expect(&mut handle, Method::GET, PATH).await;
        respond(
            send,
            StatusCode::OK,
            lease(Some("op-1"), "2020-01-01T00:00:00.000000Z", 0, "7"),
        );
        let (body, send) = expect(&mut handle, Method::PUT, &format!("{PATH}?")).await;
        assert_eq!(body["metadata"]["resourceVersion"], "7");
        assert_eq!(body["spec"]["holderIdentity"], "op-1");
        assert_eq!(
            body["spec"]["leaseTransitions"], 0,
            "a renewal is no transition"
        );
        respond(send, StatusCode::CONFLICT, conflict());
    });
    assert!(!elector.try_acquire_or_renew(Instant::now()).await.unwrap());
    server.await.unwrap();
}

#[tokio::test]
async fn release_clears_the_holder_only_if_it_is_us() {
    let (mut elector, mut handle) = elector("op-1");
    let server = tokio::spawn(async move {
        let (_, send) = expect(&mut handle, Method::GET, PATH).await;
        respond(
            send,
            StatusCode::OK,
            lease(Some("op-1"), "2020-01-01T00:00:00.000000Z", 2, "9"),
        );
        let (body, send) = expect(&mut handle, Method::PUT, &format!("{PATH}?")).await;
        assert!(body["spec"].get("holderIdentity").is_none(), "{body}");
        assert_eq!(body["spec"]["leaseDurationSeconds"], 1);
        respond(send, StatusCode::OK, body);
        let (_, send) = expect(&mut handle, Method::GET, PATH).await;
        respond(
            send,
            StatusCode::OK,
            lease(Some("op-2"), "2020-01-01T00:00:00.000000Z", 3, "10"),
        );
    });
    elector.release().await.unwrap();
    elector.release().await.unwrap();
    server.await.unwrap();
}
