//! An upstream's SSE stream, through the parser the gateway reads upstream streams
//! with (`sse_stream::SseStream`, as `upstream/streamable.rs` and `sse_legacy.rs` use
//! it). The first byte says where the network cuts the rest into chunks: the events
//! must be the same however the bytes arrive, and what the gateway takes from each
//! (`id`, `retry`, `data`) must be usable.
#![no_main]

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use libfuzzer_sys::fuzz_target;
use sse_stream::{Sse, SseStream};

/// The events of a stream delivered in `chunks`, and whether it ended in an error.
fn events(chunks: Vec<Bytes>) -> (Vec<Sse>, bool) {
    let body = futures::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
    let mut stream = Box::pin(SseStream::from_bytes_stream(body));
    futures::executor::block_on(async {
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => out.push(event),
                Err(_) => return (out, true),
            }
        }
        (out, false)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, body)) = data.split_first() else {
        return;
    };
    let whole = events(vec![Bytes::copy_from_slice(body)]);
    let step = usize::from(cut % 32) + 1;
    let pieces = body.chunks(step).map(Bytes::copy_from_slice).collect();
    let split = events(pieces);
    assert_eq!(whole, split, "events differ when cut every {step} bytes");
    for event in whole.0 {
        if let Some(ms) = event.retry {
            let _ = Duration::from_millis(ms);
        }
        if let Some(data) = event.data {
            let _ = data.trim().is_empty();
            let _ = hawser_gateway::jsonrpc::Message::parse(data.as_bytes());
        }
    }
});
