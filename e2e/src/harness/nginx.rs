//! nginx as a plain round-robin load balancer in front of gateway replicas: no
//! stickiness, streaming (no buffering), HTTP/1.1 keep-alive to the replicas.

use std::path::PathBuf;
use std::process::Command;

use super::process::Child;

/// A running nginx.
pub struct Nginx {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    _dir: tempfile::TempDir,
}

fn binary() -> PathBuf {
    for candidate in ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"] {
        let p = PathBuf::from(candidate);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "nginx not found: install it (Debian: apt-get install nginx-light), or run scripts/setup-test-deps"
    );
}

impl Nginx {
    /// Balances `backends` (`http://127.0.0.1:PORT` each) round-robin.
    pub fn start(backends: &[String]) -> Self {
        Self::start_on(super::free_port(), backends)
    }

    /// Same, listening on `port`.
    pub fn start_on(port: u16, backends: &[String]) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = dir.path();
        // Workers may run as another user when nginx starts as root.
        let _ = std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o777));
        let servers: String = backends
            .iter()
            .map(|b| {
                format!(
                    "        server {} max_fails=1 fail_timeout=10s;\n",
                    b.trim_start_matches("http://")
                )
            })
            .collect();
        let d = path.display();
        let conf = format!(
            "daemon off;
worker_processes 1;
error_log {d}/error.log warn;
pid {d}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream hawser {{
{servers}        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://hawser;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host $http_host;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 300s;
        }}
    }}
}}
"
        );
        let conf_path = path.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap_or_else(|e| panic!("write nginx.conf: {e}"));
        let mut cmd = Command::new(binary());
        cmd.arg("-p").arg(path).arg("-c").arg(&conf_path);
        let child = Child::spawn("nginx", &mut cmd);
        let base = format!("http://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let log = std::fs::read_to_string(path.join("error.log")).unwrap_or_default();
            assert!(
                std::time::Instant::now() < deadline,
                "nginx did not start:\n{log}\n{}",
                child.lines().join("\n")
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self {
            child,
            base,
            _dir: dir,
        }
    }

    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.base)
    }
}

impl Drop for Nginx {
    /// SIGKILL on the master would orphan its workers: ask it to stop (SIGTERM), which
    /// takes the workers down with it, then make sure.
    fn drop(&mut self) {
        self.child.terminate(std::time::Duration::from_secs(3));
    }
}
