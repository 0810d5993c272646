//! A real PostgreSQL for tests.
//!
//! [`test_db`] gives each test its own database. The server is `DATABASE_URL` when
//! set, otherwise one throwaway cluster per test process, started from the system's
//! `initdb`/`postgres` (on `PATH` or under `/usr/lib/postgresql/*/bin`) on a free
//! port in a temp dir. A small supervisor shell stops it and removes its files when
//! the test process exits, however it exits. [`TestCluster::start`] gives a test a
//! cluster of its own that it can stop and restart.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

/// Why a test database could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error(
        "PostgreSQL server binaries (initdb, postgres) not found on PATH or under /usr/lib/postgresql/*/bin.\n\
         Install them (Debian/Ubuntu: `apt-get install -y postgresql`) or set DATABASE_URL to a server the tests may create databases on."
    )]
    NotInstalled,
    #[error("{step}: {detail}")]
    Step { step: &'static str, detail: String },
}

fn step(step: &'static str, detail: impl ToString) -> PgError {
    PgError::Step {
        step,
        detail: detail.to_string(),
    }
}

/// A database created for one test.
#[derive(Debug, Clone)]
pub struct TestDb {
    /// Connection URL of the test's own database.
    pub url: String,
    /// Name of the database.
    pub name: String,
}

static SHARED: OnceCell<String> = OnceCell::const_new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh, empty database on the shared test server.
pub async fn test_db() -> TestDb {
    match try_test_db().await {
        Ok(db) => db,
        Err(e) => panic!("cannot provide a test database: {e}"),
    }
}

async fn try_test_db() -> Result<TestDb, PgError> {
    let admin_url = SHARED
        .get_or_try_init(|| async {
            if let Some(url) = super::env_var("DATABASE_URL") {
                return Ok(url);
            }
            let cluster = tokio::task::spawn_blocking(TestCluster::start_uninterruptible)
                .await
                .map_err(|e| step("start cluster", e))??;
            let url = cluster.url("postgres");
            // The shared cluster lives as long as the process; its supervisor cleans up.
            std::mem::forget(cluster);
            Ok::<_, PgError>(url)
        })
        .await?
        .clone();
    create_database(&admin_url).await
}

/// Creates a uniquely named database on the server of `admin_url`.
pub async fn create_database(admin_url: &str) -> Result<TestDb, PgError> {
    use sqlx::Connection as _;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("hawser_t{}_{}_{}", std::process::id(), n, nanos());
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .map_err(|e| step("connect to test server", e))?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .map_err(|e| step("create database", e))?;
    let url = with_database(admin_url, &name);
    Ok(TestDb { url, name })
}

fn nanos() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default()
}

/// `admin_url` with its database path replaced by `db`.
fn with_database(admin_url: &str, db: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    // postgres://user@host:port[/dbname]
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[scheme_end..].find('/').map(|i| i + scheme_end);
    let root = match path_start {
        Some(i) => &base[..i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{db}?{q}"),
        None => format!("{root}/{db}"),
    }
}

/// A PostgreSQL cluster owned by a test: stopped and removed on drop.
#[derive(Debug)]
pub struct TestCluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres_user: bool,
    supervisor: Option<std::process::Child>,
}

impl TestCluster {
    /// Starts a new cluster on a free port.
    pub fn start() -> Result<Self, PgError> {
        Self::start_uninterruptible()
    }

    fn start_uninterruptible() -> Result<Self, PgError> {
        let bin = find_bin_dir().ok_or(PgError::NotInstalled)?;
        let as_postgres_user = is_root();
        let dir =
            std::env::temp_dir().join(format!("hawser-pg-{}-{}", std::process::id(), nanos()));
        std::fs::create_dir_all(&dir).map_err(|e| step("create temp dir", e))?;
        if as_postgres_user {
            run(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&dir),
                "chown temp dir",
            )?;
        }
        let data = dir.join("data");
        let mut initdb = pg_command(&bin, "initdb", as_postgres_user);
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        run(&mut initdb, "initdb")?;
        let port = crate::harness::free_port();
        let mut cluster = Self {
            bin,
            dir,
            port,
            as_postgres_user,
            supervisor: None,
        };
        cluster.launch()?;
        Ok(cluster)
    }

    /// Connection URL for database `db` on this cluster.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn launch(&mut self) -> Result<(), PgError> {
        let data = self.dir.join("data");
        let postgres = self.bin.join("postgres");
        let preload = if self.bin.join("../lib/pg_stat_statements.so").exists()
            || Path::new(&format!("{}/pg_stat_statements.so", pkglibdir(&self.bin))).exists()
        {
            "-c shared_preload_libraries=pg_stat_statements"
        } else {
            ""
        };
        // The supervisor runs the server and stops it when this test process is gone.
        let script = format!(
            "{postgres} -D {data} -p {port} -k {sock} -c listen_addresses=127.0.0.1 \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c max_connections=400 {preload} >{log} 2>&1 & pg=$!; \
             while [ -d /proc/{parent} ] && kill -0 $pg 2>/dev/null; do sleep 0.5; done; \
             kill -INT $pg 2>/dev/null; wait $pg; \
             [ -d /proc/{parent} ] || rm -rf {dir}",
            postgres = postgres.display(),
            data = data.display(),
            port = self.port,
            sock = self.dir.display(),
            log = self.dir.join("postgres.log").display(),
            parent = std::process::id(),
            dir = self.dir.display(),
        );
        let mut cmd = if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "bash", "-c", &script]);
            c
        } else {
            let mut c = Command::new("bash");
            c.args(["-c", &script]);
            c
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| step("start postgres", e))?;
        self.supervisor = Some(child);
        self.wait_ready(Duration::from_secs(30))
    }

    fn wait_ready(&self, timeout: Duration) -> Result<(), PgError> {
        let deadline = Instant::now() + timeout;
        loop {
            let ok = Command::new(self.bin.join("pg_isready"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                    "-q",
                ])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
                return Err(step(
                    "wait for postgres",
                    format!("not ready after {timeout:?}; log:\n{log}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (fast shutdown), keeping its data for [`Self::launch`].
    pub fn stop(&mut self) -> Result<(), PgError> {
        let mut cmd = pg_command(&self.bin, "pg_ctl", self.as_postgres_user);
        cmd.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w", "stop"]);
        run(&mut cmd, "pg_ctl stop")?;
        if let Some(mut s) = self.supervisor.take() {
            let _ = s.wait();
        }
        Ok(())
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if self.supervisor.is_some() {
            let _ = self.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pkglibdir(bin: &Path) -> String {
    Command::new(bin.join("pg_config"))
        .arg("--pkglibdir")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .is_some_and(|s| s.trim() == "0")
}

fn pg_command(bin: &Path, program: &str, as_postgres_user: bool) -> Command {
    if as_postgres_user {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(program));
        c
    } else {
        Command::new(bin.join(program))
    }
}

fn run(cmd: &mut Command, what: &'static str) -> Result<(), PgError> {
    let out = cmd.output().map_err(|e| step(what, e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(step(
            what,
            format!(
                "{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ))
    }
}

/// The directory holding `initdb` and `postgres`.
fn find_bin_dir() -> Option<PathBuf> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(path) = super::env_var("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_server(&dir) {
                // PATH may hold symlinks (e.g. /usr/local/bin/initdb); the real directory
                // also has pg_ctl, pg_isready and pg_config.
                let real = std::fs::canonicalize(dir.join("initdb")).ok()?;
                return real.parent().map(Path::to_path_buf);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            has_server(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_in_urls() {
        assert_eq!(
            with_database("postgres://u@h:5/postgres", "t1"),
            "postgres://u@h:5/t1"
        );
        assert_eq!(
            with_database("postgres://u@h:5", "t1"),
            "postgres://u@h:5/t1"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "t1"),
            "postgres://u:p@h/t1?sslmode=disable"
        );
    }
}

#[cfg(test)]
mod cluster_tests {
    #[test]
    fn a_cluster_starts_stops_and_restarts() {
        let mut c = super::TestCluster::start().unwrap_or_else(|e| panic!("{e}"));
        c.stop().unwrap_or_else(|e| panic!("{e}"));
        c.launch().unwrap_or_else(|e| panic!("{e}"));
    }
}

/// `pg_dump` of the database at `url` (plain SQL), for tests that look for data that
/// must not be there.
pub fn dump(url: &str) -> String {
    let bin = find_bin_dir().unwrap_or_else(|| panic!("{}", PgError::NotInstalled));
    let out = Command::new(bin.join("pg_dump"))
        .arg("--no-owner")
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("pg_dump: {e}"));
    assert!(
        out.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
