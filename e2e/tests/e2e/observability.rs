//! The chart's Grafana dashboard and Prometheus alerts, as the chart renders them: the
//! alert rules pass `promtool test rules`, every expression parses, every metric they
//! read is one a running gateway exports, and the signals of the Postgres and reload
//! alerts follow a real outage and real connection changes.

mod promql;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hawser_e2e::harness::cluster::{ADMIN_TOKEN, Cluster};
use hawser_e2e::harness::mcp::McpClient;
use hawser_e2e::harness::stack::{Fixture, Gateway};
use hawser_e2e::harness::{TestCluster, http, pg, tools};
use hawser_e2e::oauth::{self, ClientConfig, MockOAuth, ResourceServer};
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Value, json};

use crate::chart::{find, render};

const KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// The chart with the dashboard and the alerts on, default values otherwise.
fn rendered() -> Vec<Value> {
    render(
        "secrets: {existingSecret: hawser}\ndashboards: {enabled: true}\nalerts: {enabled: true}\n",
    )
    .unwrap_or_else(|e| panic!("helm template: {e}"))
}

/// The PrometheusRule's spec: a Prometheus rule file.
fn rule_file(docs: &[Value]) -> Value {
    docs.iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .map(|d| d["spec"].clone())
        .expect("a PrometheusRule")
}

/// The dashboard the chart ships, from its ConfigMap.
fn dashboard(docs: &[Value]) -> Value {
    let config: ConfigMap = find(docs, "ConfigMap", "hw-hawser-dashboards");
    let labels = config.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("grafana_dashboard").map(String::as_str),
        Some("1"),
        "the sidecar's default label"
    );
    let json = config
        .data
        .as_ref()
        .and_then(|d| d.get("hawser.json"))
        .expect("hawser.json");
    serde_json::from_str(json).unwrap_or_else(|e| panic!("dashboard JSON: {e}"))
}

/// (where, PromQL) for every alert of the rule file.
fn rule_expressions(rules: &Value) -> Vec<(String, String)> {
    rules["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .map(|r| {
            let name = r["alert"].as_str().or(r["record"].as_str()).unwrap_or("?");
            (
                format!("rule {name}"),
                r["expr"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// (where, PromQL) for every panel query and variable query of the dashboard, with
/// Grafana's interval variables given a value.
fn dashboard_expressions(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a target with expr");
            out.push((format!("panel {}", panel["title"]), grafana_to_promql(expr)));
        }
    }
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if var["type"] != "query" {
            continue;
        }
        // label_values(<series selector>, <label>)
        let query = var["query"].as_str().expect("a query string");
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .and_then(|q| q.rsplit_once(','))
            .map(|(selector, _label)| selector)
            .unwrap_or_else(|| {
                panic!(
                    "variable {}: not label_values(selector, label)",
                    var["name"]
                )
            });
        out.push((
            format!("variable {}", var["name"]),
            grafana_to_promql(inner),
        ));
    }
    out
}

fn grafana_to_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
}

/// Runs `promtool args` in `dir`; panics with its output when it fails.
fn promtool(dir: &Path, args: &[&str]) {
    let out = Command::new(tools::promtool())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool {}:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_alerts_fire_on_bad_series_and_not_on_healthy_ones() {
    let dir = tempfile::tempdir().expect("temp dir");
    // JSON is YAML: the rendered rules as promtool reads them, beside the test file.
    let rules = serde_json::to_string_pretty(&rule_file(&rendered())).expect("rules");
    std::fs::write(dir.path().join("hawser-rules.yaml"), rules).expect("write rules");
    let tests = tools::workspace_root().join("charts/hawser/rules/hawser-rules.test.yaml");
    std::fs::copy(&tests, dir.path().join("hawser-rules.test.yaml")).expect("copy tests");
    promtool(dir.path(), &["check", "rules", "hawser-rules.yaml"]);
    promtool(dir.path(), &["test", "rules", "hawser-rules.test.yaml"]);
}

#[test]
fn every_dashboard_query_parses_and_uses_the_variables() {
    let dashboard = dashboard(&rendered());
    let vars: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for wanted in ["datasource", "connection"] {
        assert!(vars.contains(&wanted), "no ${wanted} variable: {vars:?}");
    }
    for panel in dashboard["panels"].as_array().expect("panels") {
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "panel {} does not use $datasource",
            panel["title"]
        );
        for target in panel["targets"].as_array().expect("targets") {
            assert_eq!(target["datasource"]["uid"], "${datasource}");
        }
    }
    // promtool parses each query as a recording rule.
    let rules: Vec<Value> = dashboard_expressions(&dashboard)
        .into_iter()
        .enumerate()
        .map(|(n, (_, expr))| json!({"record": format!("dashboard:query_{n}"), "expr": expr}))
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(dir.path().join("dashboard.yaml"), file.to_string()).expect("write");
    promtool(dir.path(), &["check", "rules", "dashboard.yaml"]);
}

/// The metric families (`# TYPE` lines) and sample names of an exposition.
fn exposition(text: &str) -> (BTreeMap<String, String>, BTreeSet<String>) {
    let mut families = BTreeMap::new();
    let mut samples = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, kind)) = rest.split_once(' ') {
                families.insert(name.to_owned(), kind.trim().to_owned());
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            samples.insert(line[..end].to_owned());
        }
    }
    (families, samples)
}

/// Whether Prometheus gets series named `name` from an exposition with these families
/// and samples (a family may have no sample yet).
fn exported(name: &str, families: &BTreeMap<String, String>, samples: &BTreeSet<String>) -> bool {
    if samples.contains(name) {
        return true;
    }
    let of_type = |family: &str, kinds: &[&str]| {
        families
            .get(family)
            .is_some_and(|k| kinds.contains(&k.as_str()))
    };
    if of_type(name, &["gauge", "unknown"]) {
        return true;
    }
    [
        ("_total", &["counter"][..]),
        ("_bucket", &["histogram", "gaugehistogram"][..]),
        ("_count", &["histogram", "summary"][..]),
        ("_sum", &["histogram", "summary"][..]),
    ]
    .iter()
    .any(|(suffix, kinds)| {
        name.strip_suffix(suffix)
            .is_some_and(|family| of_type(family, kinds))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_the_alerts_read_is_exported() {
    let docs = rendered();
    let mut expressions = rule_expressions(&rule_file(&docs));
    expressions.extend(dashboard_expressions(&dashboard(&docs)));
    let mut wanted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (place, expr) in &expressions {
        for name in promql::metric_names(expr).unwrap_or_else(|e| panic!("{place}: {e}")) {
            wanted.entry(name).or_default().push(place.clone());
        }
    }
    // A lexer that found nothing would pass everything.
    for name in [
        "hawser_requests_total",
        "hawser_request_duration_seconds_bucket",
        "hawser_upstream_state",
        "hawser_db_pool_connections",
        "hawser_store_up",
        "hawser_config_revision",
    ] {
        assert!(
            wanted.contains_key(name),
            "{name} not found in {:?}",
            wanted.keys()
        );
    }

    // A gateway in shared mode (the pool metrics need Postgres) with a plain connection
    // and one that gets its token with client_credentials. A family without series is
    // not in the exposition at all: the gateway forwards a call, asks for a token and
    // refuses a call over a rate limit, so that every family has one.
    let mock = MockOAuth::start(oauth::Config {
        clients: vec![ClientConfig::confidential("hawser", "hawser-client-secret")],
        resource_servers: vec![ResourceServer {
            id: "fixture".into(),
            secret: "fixture-rs-secret".into(),
        }],
        ..oauth::Config::default()
    })
    .await
    .unwrap_or_else(|e| panic!("mock OAuth: {e}"));
    let fixture = Fixture::start(&[]);
    let protected = Fixture::start(&[
        "--oauth-introspect",
        mock.base_url(),
        "--oauth-client",
        "fixture:fixture-rs-secret",
    ]);
    let db = pg::test_db().await;
    let gateway = Gateway::start(
        &format!(
            "connections:\n  - name: fx\n    url: {}\n  - name: m2m\n    url: {}\n    auth: {{type: oauth2, grant: client_credentials, clientId: hawser, clientSecret: hawser-client-secret, scopes: [mcp]}}\n",
            fixture.mcp_url(),
            protected.mcp_url()
        ),
        &[
            ("DATABASE_URL", &db.url),
            ("HAWSER_ENCRYPTION_KEYS", KEYS),
            ("HAWSER_ADMIN_TOKEN", ADMIN_TOKEN),
        ],
    );
    gateway.wait_ready().await;
    let mut client = McpClient::connect(&gateway.mcp_url()).await;
    client.wait_for_tool("fx__echo").await;
    let reply = client.call("fx__echo", json!({"text": "metrics"})).await;
    assert!(reply.result().get("content").is_some(), "{reply:?}");
    rate_limited_once(&gateway, &mut client).await;
    scrape_until(
        &gateway,
        "a token request",
        "hawser_oauth_token_requests_total{",
    )
    .await;

    let text = scrape(&gateway).await;
    let (families, samples) = exposition(&text);
    assert!(
        samples.contains("hawser_requests_total"),
        "the call is not counted:\n{text}"
    );
    let missing: Vec<String> = wanted
        .iter()
        .filter(|(name, _)| !exported(name, &families, &samples))
        .map(|(name, places)| format!("{name} (read by {})", places.join(", ")))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics the gateway does not export:\n  {}\nexposition:\n{text}",
        missing.join("\n  ")
    );
}

/// Puts a rate limit of one call a minute on `fx` and calls it until refused.
async fn rate_limited_once(gateway: &Gateway, client: &mut McpClient) {
    let spec = json!({"targetRefs": [{"name": "fx"}], "rules": [{}],
        "rateLimits": [{"tools": ["echo"], "requests": 1, "per": "1m"}]});
    let put = http()
        .put(format!("{}/api/v1/policies/fx-rate", gateway.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&spec)
        .send()
        .await
        .expect("PUT policy");
    assert!(put.status().is_success(), "{:?}", put.text().await);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = client.call("fx__echo", json!({"text": "again"})).await;
        if reply.messages.iter().any(|m| m.get("error").is_some()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no call refused by the rate limit"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    scrape_until(gateway, "a rate-limited call", "hawser_rate_limited_total{").await;
}

/// Scrapes until the exposition has a line starting with `prefix`.
async fn scrape_until(gateway: &Gateway, what: &str, prefix: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = scrape(gateway).await;
        if text.lines().any(|l| l.starts_with(prefix)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no {prefix} in the exposition after 20 s:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The gateway's /metrics as Prometheus scrapes it (OpenMetrics, by its `Accept`).
async fn scrape(gateway: &Gateway) -> String {
    http()
        .get(format!("{}/metrics", gateway.base))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The value of the gauge `name` (a family without labels) on the gateway.
async fn gauge(gateway: &Gateway, name: &str) -> i64 {
    let text = scrape(gateway).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name}:\n{text}"))
}

/// Scrapes until the gauge `name` holds `wanted`, for at most `within`.
async fn wait_gauge(gateway: &Gateway, name: &str, wanted: i64, what: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let n = gauge(gateway, name).await;
        if n == wanted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {name} is {n}, not {wanted}, after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The alert's expression, by name.
fn alert_expr(name: &str) -> String {
    let rules = rule_file(&rendered());
    rule_expressions(&rules)
        .into_iter()
        .find(|(place, _)| *place == format!("rule {name}"))
        .map(|(_, expr)| expr)
        .unwrap_or_else(|| panic!("no alert {name}"))
}

#[tokio::test]
async fn the_postgres_alert_signal_follows_a_real_outage() {
    let expr = alert_expr("HawserPostgresUnreachable");
    assert!(
        expr.contains("hawser_store_up"),
        "the rule reads another signal than this test checks: {expr}"
    );

    let mut cluster = tokio::task::spawn_blocking(TestCluster::start)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let db = pg::create_database(&cluster.url("postgres"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let gateway = Gateway::start(
        "connections: []\n",
        &[("DATABASE_URL", &db.url), ("HAWSER_ENCRYPTION_KEYS", KEYS)],
    );
    gateway.wait_ready().await;
    let up = "hawser_store_up";
    assert_eq!(gauge(&gateway, up).await, 1, "Postgres up");

    cluster = tokio::task::spawn_blocking(move || {
        cluster.stop().unwrap_or_else(|e| panic!("{e}"));
        cluster
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    wait_gauge(&gateway, up, 0, "Postgres stopped", Duration::from_secs(10)).await;
    // And it stays so while Postgres is away: every probe fails.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(gauge(&gateway, up).await, 0, "up while Postgres is away");
    }

    cluster = tokio::task::spawn_blocking(move || {
        cluster.launch().unwrap_or_else(|e| panic!("{e}"));
        cluster
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    wait_gauge(&gateway, up, 1, "Postgres back", Duration::from_secs(20)).await;
    let _ = cluster.stop();
}

/// The revision of connection `name` in the store, through replica `i`.
async fn revision(cluster: &Cluster, i: usize, name: &str) -> i64 {
    let conn = cluster
        .admin_get(i, &format!("/api/v1/connections/{name}"))
        .await;
    conn["revision"]
        .as_i64()
        .unwrap_or_else(|| panic!("no revision for {name}: {conn}"))
}

/// Waits until every replica's `hawser_config_revision` is `wanted`.
async fn wait_revision(replicas: &[&Gateway], wanted: i64, what: &str) {
    for r in replicas {
        wait_gauge(
            r,
            "hawser_config_revision",
            wanted,
            what,
            Duration::from_secs(20),
        )
        .await;
    }
}

#[tokio::test]
async fn the_reload_alert_signal_follows_connection_changes_on_every_replica() {
    let expr = alert_expr("HawserReplicaNotReloading");
    assert!(
        expr.contains("hawser_config_revision"),
        "the rule reads another signal than this test checks: {expr}"
    );

    let (cluster, fixture) = Cluster::with_fixture(2).await;
    let [r1, r2] = [&cluster.replicas[0], &cluster.replicas[1]];
    let fx = revision(&cluster, 0, "fx").await;
    assert!(fx > 0, "fx has revision {fx}");
    wait_revision(&[r1, r2], fx, "fx loaded").await;

    // A new connection written through one replica raises it on both.
    let put = |name: &'static str, spec: Value| {
        let cluster = &cluster;
        async move {
            let status = cluster.put_connection(0, name, spec).await;
            assert!(matches!(status, 200 | 201), "PUT {name}: {status}");
            revision(cluster, 1, name).await
        }
    };
    let gh = put("gh", json!({"url": fixture.mcp_url()})).await;
    assert!(gh > fx, "gh {gh} after fx {fx}");
    wait_revision(&[r1, r2], gh, "gh written").await;

    // So does a change of an existing one.
    let fx2 = put(
        "fx",
        json!({"url": fixture.mcp_url(), "timeouts": {"call": "30s"}}),
    )
    .await;
    assert!(fx2 > gh, "fx changed to {fx2} after gh {gh}");
    wait_revision(&[r1, r2], fx2, "fx changed").await;

    // Deleting the newest lowers it on every replica alike, to the newest left.
    assert_eq!(cluster.delete_connection(1, "fx").await, 204);
    wait_revision(&[r1, r2], gh, "fx deleted").await;

    // A replica that starts now loads the same rows and shows the same revision.
    let r3 = cluster.start_replica("r3");
    r3.wait_ready().await;
    assert_eq!(
        gauge(&r3, "hawser_config_revision").await,
        gh,
        "a new replica"
    );
}
