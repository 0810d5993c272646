//! Hawser: a Kubernetes-native, multi-replica MCP gateway.
//!
//! Modules follow a request's path: [`config`] → [`store`] (shared state) →
//! [`upstream`] (dialling MCP servers) → [`view`] (what clients see) → [`front`] (the
//! MCP endpoints clients use). [`server`] wires them up.
#![forbid(unsafe_code)]

/// Where the fixed byte string `needle` (a `'static` literal or constant) first
/// occurs in `haystack`. The searcher is built once per call site: building one
/// costs more than searching a small message, and these searches run on every call.
macro_rules! find_bytes {
    ($haystack:expr, $needle:expr) => {{
        static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
            std::sync::LazyLock::new(|| memchr::memmem::Finder::new($needle));
        FINDER.find($haystack)
    }};
}

pub mod admin;
pub mod audit;
pub mod body;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod crypto;
pub mod endpoint;
pub mod front;
pub mod headers;
pub mod identity;
pub mod jsonrpc;
pub mod metrics;
pub mod oauth;
pub mod policy;
pub mod registry;
pub mod revision;
pub mod runtime;
pub mod server;
pub mod sse;
pub mod store;
pub mod telemetry;
pub mod upstream;
pub mod view;

/// Installs rustls' ring provider as the process default (once). Every HTTP client
/// Hawser builds needs it; calling it again is harmless.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
