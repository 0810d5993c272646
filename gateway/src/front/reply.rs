//! HTTP responses of the MCP endpoints: JSON-RPC messages, SSE streams, and plain
//! HTTP errors with a message.

use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode, header};
use bytes::Bytes;

use crate::jsonrpc;

pub type Reply = Response<Body>;

/// `200 application/json` with one message.
pub fn json(message: Bytes) -> Reply {
    let mut r = Response::new(Body::from(message));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A JSON-RPC error response (HTTP 200: the transport worked, the request did not).
pub fn rpc_error(id: Option<&str>, code: i64, message: &str) -> Reply {
    json(jsonrpc::error(id, code, message, None))
}

/// `202 Accepted` for notifications and responses.
pub fn accepted() -> Reply {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}

/// A plain HTTP error carrying a JSON-RPC error body, as the MCP SDKs expect.
pub fn http_error(status: StatusCode, message: &str) -> Reply {
    let code = match status {
        StatusCode::NOT_FOUND => jsonrpc::code::INVALID_REQUEST,
        StatusCode::BAD_REQUEST => jsonrpc::code::INVALID_REQUEST,
        _ => jsonrpc::code::INVALID_REQUEST,
    };
    let mut r = json(jsonrpc::error(None, code, message, None));
    *r.status_mut() = status;
    r
}

/// An SSE response streaming `body`.
pub fn sse(body: Body) -> Reply {
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    // Tell nginx-style proxies not to buffer the stream.
    h.insert(
        crate::headers::X_ACCEL_BUFFERING,
        HeaderValue::from_static("no"),
    );
    r
}

/// An SSE response carrying one message.
/// A 2026-07-28 client's plain JSON answer: an upstream's "method not found" keeps
/// the 404 the revision gives it (the upstream's own status is not kept), anything
/// else is 200.
pub fn json_modern(message: Bytes) -> Reply {
    let unknown_method = find_bytes!(&message, b"\"error\"").is_some()
        && jsonrpc::Message::parse(&message)
            .ok()
            .and_then(|m| m.error.map(jsonrpc::error_summary))
            .is_some_and(|(code, _)| code == jsonrpc::code::METHOD_NOT_FOUND);
    let mut r = json(message);
    if unknown_method {
        *r.status_mut() = StatusCode::NOT_FOUND;
    }
    r
}

pub fn sse_once(message: Bytes) -> Reply {
    let frame = crate::sse::event(&message);
    sse(Body::from(frame))
}

/// Adds the session header.
pub fn with_session(mut reply: Reply, session_id: &str) -> Reply {
    if let Ok(v) = HeaderValue::from_str(session_id) {
        reply
            .headers_mut()
            .insert(crate::headers::MCP_SESSION_ID, v);
    }
    reply
}
