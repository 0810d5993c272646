//! N gateway replicas sharing one PostgreSQL, behind nginx.

use std::time::Duration;

use super::nginx::Nginx;
use super::stack::{Fixture, Gateway};
use super::{TestDb, http, test_db};

/// The admin token every test cluster uses.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// Replicas of one gateway and a load balancer.
pub struct Cluster {
    pub db: TestDb,
    pub keys: String,
    pub replicas: Vec<Gateway>,
    pub lb: Nginx,
    config: String,
    extra_env: Vec<(String, String)>,
    /// Each replica's audit spool lives under here, by replica id, and outlives the
    /// replica's processes (as an emptyDir outlives a container).
    pub spools: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` replicas (ids `r1`…) with `config` and nginx in front.
    pub async fn start(n: usize, config: &str) -> Self {
        Self::start_with_env(n, config, &[]).await
    }

    /// Like [`Self::start`] with extra environment. In values and in `config`,
    /// `{r1}`…`{rN}` stand for the replicas' base URLs and `{lb}` for the load
    /// balancer's (ports are chosen before they start).
    pub async fn start_with_env(n: usize, config: &str, env: &[(&str, &str)]) -> Self {
        let db = test_db().await;
        let keys = format!(
            "k1:{}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                rand::random::<[u8; 32]>()
            )
        );
        Self::launch(db, keys, n, config, env).await
    }

    async fn launch(
        db: TestDb,
        keys: String,
        n: usize,
        config: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let ports: Vec<u16> = (0..n).map(|_| super::free_port()).collect();
        let lb_port = super::free_port();
        let fill = |v: &str| {
            let mut v = v.replace("{lb}", &format!("http://127.0.0.1:{lb_port}"));
            for (i, p) in ports.iter().enumerate() {
                v = v.replace(&format!("{{r{}}}", i + 1), &format!("http://127.0.0.1:{p}"));
            }
            v
        };
        let extra_env: Vec<(String, String)> =
            env.iter().map(|(k, v)| (k.to_string(), fill(v))).collect();
        let config = &fill(config);
        let spools = tempfile::tempdir().unwrap_or_else(|e| panic!("spool dirs: {e}"));
        let replicas: Vec<Gateway> = ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                replica(
                    &db,
                    &keys,
                    config,
                    &extra_env,
                    spools.path(),
                    &format!("r{}", i + 1),
                    *port,
                )
            })
            .collect();
        for r in &replicas {
            r.wait_ready().await;
        }
        let backends: Vec<String> = replicas.iter().map(|r| r.base.clone()).collect();
        let lb = Nginx::start_on(lb_port, &backends);
        Self {
            db,
            keys,
            replicas,
            lb,
            config: config.to_owned(),
            extra_env,
            spools,
        }
    }

    /// Starts replica `i` again (same id, port, spool and settings) after it died.
    pub async fn revive(&mut self, i: usize) {
        let port = self.port_of(i);
        self.start_at(i, port).await;
    }

    /// The port replica `i` listens on.
    fn port_of(&self, i: usize) -> u16 {
        self.replicas[i]
            .base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    /// Starts replica `i` on `port` (retrying while the old process still holds it)
    /// and waits until it is ready.
    async fn start_at(&mut self, i: usize, port: u16) {
        let mut attempt = 0;
        let g = loop {
            attempt += 1;
            let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                replica(
                    &self.db,
                    &self.keys,
                    &self.config,
                    &self.extra_env,
                    self.spools.path(),
                    &format!("r{}", i + 1),
                    port,
                )
            }));
            match started {
                Ok(g) => break g,
                Err(e) if attempt > 20 => std::panic::resume_unwind(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        };
        g.wait_ready().await;
        self.replicas[i] = g;
    }

    /// Stops every replica and starts them again with `keys` (same database, same
    /// ports, same environment), as a rolling restart or a key rotation would.
    pub async fn restart_all(&mut self, keys: Option<&str>) {
        if let Some(k) = keys {
            self.keys = k.to_owned();
        }
        let mut fresh = Vec::new();
        for i in 0..self.replicas.len() {
            let port = self.port_of(i);
            self.replicas[i].child.terminate(Duration::from_secs(5));
            fresh.push((i, port));
        }
        for (i, port) in fresh {
            self.start_at(i, port).await;
        }
    }

    /// Starts one more replica process with this cluster's settings.
    pub fn start_replica(&self, id: &str) -> Gateway {
        replica(
            &self.db,
            &self.keys,
            &self.config,
            &self.extra_env,
            self.spools.path(),
            id,
            0,
        )
    }

    /// `n` replicas and a fixture upstream as the connection `fx`, loaded everywhere.
    pub async fn with_fixture(n: usize) -> (Self, Fixture) {
        let fixture = Fixture::start(&[]);
        let cluster = Self::start(n, "").await;
        assert_eq!(
            cluster
                .put_connection(0, "fx", serde_json::json!({"url": fixture.mcp_url()}))
                .await,
            201
        );
        cluster
            .wait_all("fx loaded", Duration::from_secs(20), |names| {
                names.iter().any(|n| n == "fx__echo")
            })
            .await;
        (cluster, fixture)
    }

    /// How many lines of every replica's log contain `needle`.
    pub fn log_lines_containing(&self, needle: &str) -> usize {
        self.replicas
            .iter()
            .map(|r| {
                r.child
                    .lines()
                    .iter()
                    .filter(|l| l.contains(needle))
                    .count()
            })
            .sum()
    }

    /// PUT /api/v1/connections/{name} on replica `i`; returns the status code.
    pub async fn put_connection(&self, i: usize, name: &str, spec: serde_json::Value) -> u16 {
        let r = http()
            .put(format!(
                "{}/api/v1/connections/{name}",
                self.replicas[i].base
            ))
            .bearer_auth(ADMIN_TOKEN)
            .json(&spec)
            .send()
            .await
            .unwrap_or_else(|e| panic!("admin PUT: {e}"));
        r.status().as_u16()
    }

    /// PUT /api/v1/policies/{name} on replica `i`; the status.
    pub async fn put_policy(&self, i: usize, name: &str, spec: serde_json::Value) -> u16 {
        let r = http()
            .put(format!("{}/api/v1/policies/{name}", self.replicas[i].base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&spec)
            .send()
            .await
            .unwrap_or_else(|e| panic!("admin PUT: {e}"));
        r.status().as_u16()
    }

    /// DELETE /api/v1/connections/{name} on replica `i`.
    pub async fn delete_connection(&self, i: usize, name: &str) -> u16 {
        http()
            .delete(format!(
                "{}/api/v1/connections/{name}",
                self.replicas[i].base
            ))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    /// GET on the admin API of replica `i`.
    pub async fn admin_get(&self, i: usize, path: &str) -> serde_json::Value {
        http()
            .get(format!("{}{path}", self.replicas[i].base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap_or_else(|e| panic!("admin GET: {e}"))
            .json()
            .await
            .unwrap_or_default()
    }

    /// Adds a connection per `(name, fixture)` through replica 0 and waits until every
    /// replica lists each one's `tool` (as `<name>__<tool>`).
    pub async fn add_fixtures(&self, fixtures: &[(&str, &super::stack::Fixture)], tool: &str) {
        for (name, fixture) in fixtures {
            let spec = serde_json::json!({"url": fixture.mcp_url()});
            assert_eq!(self.put_connection(0, name, spec).await, 201, "PUT {name}");
        }
        let wanted: Vec<String> = fixtures
            .iter()
            .map(|(name, _)| format!("{name}__{tool}"))
            .collect();
        self.wait_all("connections loaded", Duration::from_secs(20), |names| {
            wanted.iter().all(|w| names.contains(w))
        })
        .await;
    }

    /// Waits until every replica's aggregated tool list satisfies `check`.
    pub async fn wait_all(&self, what: &str, timeout: Duration, check: impl Fn(&[String]) -> bool) {
        let deadline = std::time::Instant::now() + timeout;
        for r in &self.replicas {
            let mut client = super::mcp::McpClient::connect(&r.mcp_url()).await;
            loop {
                let names = client.tool_names().await;
                if check(&names) {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{what}: replica {} still lists {names:?}",
                    r.base
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

fn replica(
    db: &TestDb,
    keys: &str,
    config: &str,
    extra: &[(String, String)],
    spools: &std::path::Path,
    id: &str,
    port: u16,
) -> Gateway {
    let spool = spools.join(id).to_string_lossy().into_owned();
    let mut env: Vec<(&str, &str)> = vec![
        ("DATABASE_URL", &db.url),
        ("HAWSER_ENCRYPTION_KEYS", keys),
        ("HAWSER_ADMIN_TOKEN", ADMIN_TOKEN),
        ("HAWSER_REPLICA_ID", id),
        ("HAWSER_AUDIT_SPOOL_DIR", &spool),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    Gateway::start_at(&format!("127.0.0.1:{port}"), config, &env, &[])
}
