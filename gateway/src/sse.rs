//! Server-sent events framing for the responses Hawser streams to clients.

use bytes::Bytes;

/// A comment line that keeps idle proxies from closing a quiet stream.
pub const KEEPALIVE: &[u8] = b": keep-alive\n\n";

/// One `message` event carrying `data`. Data spanning lines (pretty-printed JSON from
/// an upstream) becomes one `data:` line per line, as SSE requires.
pub fn event(data: &[u8]) -> Bytes {
    event_with_id(None, data)
}

/// An event with an `id:` field.
pub fn event_with_id(id: Option<&str>, data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + 16 + id.map_or(0, |i| i.len() + 5));
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
    }
    if !data.contains(&b'\n') && !data.contains(&b'\r') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(data);
        out.push(b'\n');
    } else {
        let text = String::from_utf8_lossy(data);
        for line in text.lines() {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
    }
    out.push(b'\n');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_single_and_multi_line_data() {
        assert_eq!(&event(b"{\"a\":1}")[..], b"data: {\"a\":1}\n\n");
        assert_eq!(
            &event(b"{\n \"a\": 1\n}")[..],
            b"data: {\ndata:  \"a\": 1\ndata: }\n\n"
        );
        assert_eq!(&event_with_id(Some("5"), b"{}")[..], b"id: 5\ndata: {}\n\n");
    }
}
