//! The pool against a real HTTP/1.1 server on a local port that counts the
//! connections it accepts.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::*;

struct Upstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Upstream {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// `/big`: 4 MiB; `/empty`: 202 without a body; `/slow`: answers after 100 ms; any
/// other path: the request's target and `Host`.
async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match req.uri().path() {
        "/big" => Bytes::from(vec![b'x'; 4 << 20]),
        "/empty" => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::ACCEPTED;
            return Ok(r);
        }
        path => {
            if path == "/slow" {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let host = req
                .headers()
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("-");
            Bytes::from(format!("{} {host}", req.uri()))
        }
    };
    Ok(Response::new(Full::new(body)))
}

async fn upstream(keep_alive: bool) -> Upstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(keep_alive)
                    .serve_connection(TokioIo::new(socket), hyper::service::service_fn(answer))
                    .await;
            });
        }
    });
    Upstream { addr, accepted }
}

fn clients() -> HttpClients {
    super::super::streamable::client(Duration::from_secs(2))
}

/// A request of `method` to `url` with `body`.
fn request(method: http::Method, url: &str, body: &'static [u8]) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::from_static(body)))
        .unwrap()
}

async fn get(clients: &HttpClients, url: &str) -> Result<(StatusCode, String), ClientError> {
    let response = clients
        .request(request(http::Method::GET, url, b""))
        .await?;
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Asserts a GET of `url` is answered 200.
async fn answered(clients: &HttpClients, url: &str) {
    let (status, body) = get(clients, url).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn calls_one_after_another_share_one_connection_and_send_origin_form() {
    let up = upstream(true).await;
    let clients = clients();
    for _ in 0..5 {
        let (status, body) = get(&clients, &up.url("/echo?x=1")).await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, format!("/echo?x=1 {}", up.addr));
    }
    assert_eq!(
        up.accepted(),
        1,
        "every call after the first reuses the connection"
    );
}

#[tokio::test]
async fn calls_at_the_same_time_get_a_connection_each_and_both_are_kept() {
    let up = upstream(true).await;
    let clients = clients();
    let slow = up.url("/slow");
    let (a, b) = tokio::join!(get(&clients, &slow), get(&clients, &slow));
    assert_eq!(a.unwrap().0, StatusCode::OK);
    assert_eq!(b.unwrap().0, StatusCode::OK);
    assert_eq!(up.accepted(), 2);
    let (a, b) = tokio::join!(get(&clients, &slow), get(&clients, &slow));
    assert!(a.is_ok() && b.is_ok());
    assert_eq!(up.accepted(), 2, "both connections were reused");
}

#[tokio::test]
async fn a_body_dropped_half_read_takes_its_connection_with_it() {
    let up = upstream(true).await;
    let clients = clients();
    let req = request(http::Method::GET, &up.url("/big"), b"");
    let mut body = clients.request(req).await.unwrap().into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    drop(body);
    let (status, _) = get(&clients, &up.url("/next")).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(up.accepted(), 2, "the half-read connection was not reused");
}

#[tokio::test]
async fn an_answer_without_a_body_frees_its_connection_unread() {
    let up = upstream(true).await;
    let clients = clients();
    let req = request(http::Method::POST, &up.url("/empty"), b"{}");
    let response = clients.request(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    drop(response);
    answered(&clients, &up.url("/next")).await;
    assert_eq!(up.accepted(), 1);
}

#[tokio::test]
async fn connections_the_upstream_closes_are_replaced() {
    let up = upstream(false).await;
    let clients = clients();
    for _ in 0..3 {
        answered(&clients, &up.url("/echo")).await;
    }
    assert_eq!(up.accepted(), 3);
}

#[tokio::test]
async fn an_upstream_not_listening_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let error = get(&clients(), &format!("http://{addr}/mcp"))
        .await
        .unwrap_err();
    assert!(error.is_connect(), "{error:?}");
    let cause = crate::upstream::error::root_cause(&error).to_lowercase();
    assert!(cause.contains("refused"), "{cause}");
}

#[test]
fn host_leaves_out_the_schemes_default_port() {
    let key = |uri: &str| {
        let uri: Uri = uri.parse().unwrap();
        Key {
            scheme: uri.scheme().cloned().unwrap(),
            authority: uri.authority().cloned().unwrap(),
        }
    };
    let host = |uri: &str| host_header(&key(uri)).unwrap();
    assert_eq!(host("http://mcp.example:80/mcp"), "mcp.example");
    assert_eq!(host("https://mcp.example:443/mcp"), "mcp.example");
    assert_eq!(host("https://mcp.example:8443/mcp"), "mcp.example:8443");
    assert_eq!(host("http://10.0.0.1:8080/"), "10.0.0.1:8080");
    assert_eq!(host("http://[::1]:8080/"), "[::1]:8080");
    assert_eq!(origin_form(&"http://a:1".parse().unwrap()), "/");
}

#[tokio::test]
async fn past_the_upstreams_kept_per_thread_connections_are_not_kept() {
    let clients = clients();
    let slot = &clients.slots[crate::runtime::slot() % clients.slots.len()];
    let key = |port: u16| Key {
        scheme: Scheme::HTTP,
        authority: format!("127.0.0.1:{port}").parse().unwrap(),
    };
    for port in 1..=MAX_UPSTREAMS as u16 {
        assert!(slot.checkout(&key(port)).0.is_some());
    }
    assert_eq!(
        slot.checkout(&key(1)).0,
        Some(0),
        "a known upstream keeps its place"
    );
    assert_eq!(slot.checkout(&key(9999)).0, None);
    let up = upstream(true).await;
    for _ in 0..2 {
        answered(&clients, &up.url("/echo")).await;
    }
    assert_eq!(up.accepted(), 2, "a connection per call, none kept");
}
