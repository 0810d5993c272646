//! Bytes as an `Authorization` header, through `headers::bearer` (the one parser of
//! client and admin credentials) and `identity::authenticate`. Never a panic; a token
//! read is never empty nor padded with spaces.
#![no_main]

use std::sync::OnceLock;

use hawser_gateway::config::ClientAuth;
use hawser_gateway::crypto::IdHash;
use hawser_gateway::headers::bearer;
use hawser_gateway::identity::authenticate;
use libfuzzer_sys::fuzz_target;

fn auth() -> &'static ClientAuth {
    static AUTH: OnceLock<ClientAuth> = OnceLock::new();
    AUTH.get_or_init(|| ClientAuth::Bearer(vec![("fuzz".to_owned(), IdHash::of("fuzz-token"))]))
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = http::HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, value);
    if let Some(token) = bearer(&headers) {
        assert!(!token.is_empty(), "empty token from {data:?}");
        assert_eq!(token.trim(), token, "untrimmed token from {data:?}");
    }
    let accepted = authenticate(auth(), &headers).is_ok();
    assert_eq!(accepted, bearer(&headers) == Some("fuzz-token"), "{data:?}");
});
