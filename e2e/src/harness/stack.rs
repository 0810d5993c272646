//! Real processes for multi-process tests: the fixture MCP server and Hawser
//! gateways, each on a free port, killed when the handle drops.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::process::Child;
use super::tools;

/// A running `hawser-fixture`.
pub struct Fixture {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Fixture {
    /// Starts the fixture with extra arguments (listening on a free port).
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    /// Same, with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::start_on("127.0.0.1:0", args, env)
    }

    fn start_on(listen: &str, args: Vec<String>, env: Vec<(String, String)>) -> Self {
        let mut cmd = Command::new(tools::binary("hawser-fixture"));
        cmd.args(["--listen", listen]).args(&args);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let mut child = Child::spawn("fixture", &mut cmd);
        let base = child.wait_listening();
        Self {
            child,
            base,
            args,
            env,
        }
    }

    /// The Streamable HTTP endpoint.
    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    /// Kills the process (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Starts it again on the same port (after [`Self::kill`]).
    pub fn restart(&mut self) {
        let listen = self.base.trim_start_matches("http://").to_owned();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // The port may linger in TIME_WAIT for a moment.
            let fresh = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                Self::start_on(&listen, self.args.clone(), self.env.clone())
            }));
            match fresh {
                Ok(f) => {
                    *self = f;
                    return;
                }
                Err(e) if Instant::now() > deadline => std::panic::resume_unwind(e),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// What the fixture saw (`GET /fixture/events`).
    pub async fn events(&self) -> Vec<serde_json::Value> {
        let url = format!("{}/fixture/events", self.base);
        match super::http().get(&url).send().await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(e) => panic!("cannot read fixture events: {e}"),
        }
    }
}

/// A running `hawser serve`.
pub struct Gateway {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    _config: tempfile::NamedTempFile,
    /// This gateway's own audit spool, unless the test gave one.
    _spool: Option<tempfile::TempDir>,
}

impl Gateway {
    /// Starts a gateway with `config` (YAML) and extra environment.
    pub fn start(config: &str, env: &[(&str, &str)]) -> Self {
        Self::start_with_args(config, env, &[])
    }

    /// Same, with extra command-line arguments.
    pub fn start_with_args(config: &str, env: &[(&str, &str)], args: &[&str]) -> Self {
        Self::start_at("127.0.0.1:0", config, env, args)
    }

    /// Same, listening on `listen`.
    pub fn start_at(listen: &str, config: &str, env: &[(&str, &str)], args: &[&str]) -> Self {
        let mut file = tempfile::Builder::new()
            .suffix(".yaml")
            .tempfile()
            .unwrap_or_else(|e| panic!("temp config: {e}"));
        std::io::Write::write_all(&mut file, config.as_bytes())
            .unwrap_or_else(|e| panic!("write config: {e}"));
        let mut cmd = Command::new(tools::binary("hawser"));
        cmd.arg("serve")
            .arg("--config")
            .arg(file.path())
            .args(["--listen", listen])
            .args(args)
            .env_remove("DATABASE_URL")
            .env(
                "RUST_LOG",
                super::env_var("HAWSER_TEST_LOG").unwrap_or_else(|| "info".into()),
            );
        for (k, v) in env {
            cmd.env(k, v);
        }
        // Every gateway gets a spool of its own: two processes never share one.
        let spool = if env.iter().any(|(k, _)| *k == "HAWSER_AUDIT_SPOOL_DIR") {
            None
        } else {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("spool dir: {e}"));
            cmd.env("HAWSER_AUDIT_SPOOL_DIR", dir.path());
            Some(dir)
        };
        let mut child = Child::spawn("hawser", &mut cmd);
        let base = child.wait_listening();
        Self {
            child,
            base,
            _config: file,
            _spool: spool,
        }
    }

    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    /// An embedded gateway with one connection, `fx`, to `fixture`; ready.
    pub async fn in_front_of(fixture: &Fixture) -> Self {
        let gateway = Self::start(
            &format!(
                "connections:\n  - name: fx\n    url: {}\n",
                fixture.mcp_url()
            ),
            &[],
        );
        gateway.wait_ready().await;
        gateway
    }

    /// The text of `/metrics` (empty if it cannot be read).
    pub async fn metrics(&self) -> String {
        let scraped = super::http()
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        scraped.text().await.unwrap_or_default()
    }

    /// Waits until `/readyz` answers 200: the connections are loaded and dialled once
    /// (their tools served, or their error known), or 10 s have passed.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = super::http()
                .get(format!("{}/readyz", self.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "gateway not ready:\n{}",
                self.child.lines().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// An upstream MCP server written with the official Python SDK (a script from
/// `e2e/python` that prints its `listening` line).
pub struct PythonServer {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl PythonServer {
    pub fn start(script: &str, args: &[&str]) -> Self {
        let mut cmd = Command::new(tools::python());
        cmd.arg(python_script(script)).args(args);
        let mut child = Child::spawn(script, &mut cmd);
        let base = child.wait_listening();
        Self { child, base }
    }

    /// The Streamable HTTP endpoint.
    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.base)
    }
}

/// A Python script from `e2e/python`.
pub fn python_script(name: &str) -> PathBuf {
    tools::e2e_dir().join("python").join(name)
}

/// Runs a Python client script to completion; panics with its output if it fails.
pub async fn run_python(script: &Path, args: &[&str], timeout: Duration) -> String {
    let mut cmd = tokio::process::Command::new(tools::python());
    cmd.arg(script).args(args).kill_on_drop(true);
    let out = tokio::time::timeout(timeout, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{} timed out after {timeout:?}", script.display()))
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        script.display(),
        out.status
    );
    stdout
}
