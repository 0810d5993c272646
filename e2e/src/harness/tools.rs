//! Where tests find built binaries and the installed client tooling.

use std::path::{Path, PathBuf};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The target profile directory the running binary lives in (`target/debug`,
/// `target/release`): tests run from `target/<profile>/deps/`, binaries from
/// `target/<profile>/`.
pub fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            let dir = exe.parent()?;
            if dir.file_name().is_some_and(|n| n == "deps") {
                dir.parent().map(Path::to_path_buf)
            } else {
                Some(dir.to_path_buf())
            }
        })
        .unwrap_or_else(|| workspace_root().join("target/debug"))
}

/// Path of a workspace binary, e.g. `hawser` or `hawser-fixture`. Panics with the
/// build command when it is missing.
pub fn binary(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    crate::harness::process::require_file(
        &path,
        "build the workspace binaries first: `cargo build --workspace --bins` (scripts/test does)",
    );
    path
}

/// The Python interpreter with the official MCP SDK installed (scripts/setup-test-deps).
pub fn python() -> PathBuf {
    let path = crate::harness::env_var("HAWSER_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/test-deps/venv/bin/python"));
    crate::harness::process::require_file(
        &path,
        "run scripts/setup-test-deps (installs the Python MCP SDK)",
    );
    path
}

/// A Node.js ≥ 22 binary (scripts/setup-test-deps installs one).
pub fn node() -> PathBuf {
    let path = crate::harness::env_var("HAWSER_TEST_NODE")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/test-deps/node/bin/node"));
    crate::harness::process::require_file(
        &path,
        "run scripts/setup-test-deps (installs Node.js 24)",
    );
    path
}

/// Helm 3 (scripts/setup-test-deps installs it into the test venv).
pub fn helm() -> PathBuf {
    let path = crate::harness::env_var("HAWSER_TEST_HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/test-deps/venv/bin/helm"));
    crate::harness::process::require_file(&path, "run scripts/setup-test-deps (installs Helm)");
    path
}

/// Prometheus's `promtool` (scripts/setup-test-deps takes it out of Debian's
/// `prometheus` package), to check and unit-test the chart's alert rules.
pub fn promtool() -> PathBuf {
    let path = crate::harness::env_var("HAWSER_TEST_PROMTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/test-deps/promtool/bin/promtool"));
    crate::harness::process::require_file(&path, "run scripts/setup-test-deps (installs promtool)");
    path
}

/// The e2e folder (Python scripts, conformance suite).
pub fn e2e_dir() -> PathBuf {
    workspace_root().join("e2e")
}
