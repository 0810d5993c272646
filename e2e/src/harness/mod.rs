//! Test support shared by every crate's tests: a real PostgreSQL, child processes
//! that die with the test, and the locations of built binaries and tool installs.

pub mod cluster;
pub mod mcp;
pub mod nginx;
pub mod pg;
pub mod process;
pub mod stack;
pub mod tools;

pub use pg::{TestCluster, TestDb, test_db};
pub use process::{Child, free_port};

/// A variable of the test process's environment (unset and empty are the same): the
/// one place the harness reads it, for the knobs a developer sets (`HAWSER_TEST_*`).
#[allow(
    clippy::disallowed_methods,
    reason = "the harness's one reader of the environment"
)]
pub fn env_var(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

/// An HTTP client for tests (installs the TLS crypto provider reqwest needs).
pub fn http() -> reqwest::Client {
    static PROVIDER: std::sync::Once = std::sync::Once::new();
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::new()
}
