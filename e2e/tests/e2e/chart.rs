//! The Helm chart: rendered with the real `helm`, and the gateway Deployment it renders
//! run as the kubelet would run it (same command, arguments, environment and config
//! file; Secret and downward-API values filled in), against a real Postgres.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use hawser_e2e::harness::pg;
use hawser_e2e::harness::process::{Child, free_port};
use hawser_e2e::harness::tools;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const RELEASE: &str = "hw";
/// The pod's address as the downward API gives it.
const POD_IP: &str = "127.0.0.1";
const NAMESPACE: &str = "mcp";
const POD_NAME: &str = "hw-hawser-gateway-7d9f8c6b5-x2kqp";

fn chart_dir() -> PathBuf {
    tools::workspace_root().join("charts/hawser")
}

/// `helm template` with `values` (YAML); Err(stderr) when helm refuses.
pub(crate) fn render(values: &str) -> Result<Vec<Value>, String> {
    let mut file = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("temp values file");
    std::io::Write::write_all(&mut file, values.as_bytes()).expect("write values");
    let out = Command::new(tools::helm())
        .args(["template", RELEASE])
        .arg(chart_dir())
        .args(["--namespace", NAMESPACE, "--include-crds", "--values"])
        .arg(file.path())
        .output()
        .expect("run helm");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("helm output is not YAML: {e}\n{text}"));
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

pub(crate) fn find<T: serde::de::DeserializeOwned>(docs: &[Value], kind: &str, name: &str) -> T {
    let doc = docs
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendered chart"));
    serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{kind} {name}: {e}"))
}

fn kinds(docs: &[Value]) -> Vec<String> {
    docs.iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap_or("?"),
                d["metadata"]["name"]
            )
        })
        .collect()
}

fn container<'a>(deployment: &'a Deployment, name: &str) -> &'a Container {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.iter().find(|c| c.name == name))
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn pod_labels(deployment: &Deployment) -> BTreeMap<String, String> {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The environment the kubelet would give `container`: literal values, Secret keys
/// from `secret`, and the downward API.
fn pod_env(container: &Container, secret: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for var in container.env.iter().flatten() {
        if let Some(value) = &var.value {
            // `$(NAME)` names a variable defined before this one, as the kubelet expands it.
            let expanded = env
                .iter()
                .fold(value.clone(), |v, (name, value): &(String, String)| {
                    v.replace(&format!("$({name})"), value)
                });
            env.push((var.name.clone(), expanded));
            continue;
        }
        let from = var.value_from.as_ref().expect("env value or valueFrom");
        if let Some(key_ref) = &from.secret_key_ref {
            match secret.get(&key_ref.key) {
                Some(v) => env.push((var.name.clone(), v.clone())),
                None => assert_eq!(
                    key_ref.optional,
                    Some(true),
                    "{} reads missing Secret key {}",
                    var.name,
                    key_ref.key
                ),
            }
        } else if let Some(field) = &from.field_ref {
            let value = match field.field_path.as_str() {
                "metadata.name" => POD_NAME,
                "metadata.namespace" => NAMESPACE,
                "status.podIP" => POD_IP,
                other => panic!("unexpected fieldRef {other}"),
            };
            env.push((var.name.clone(), value.to_owned()));
        } else {
            panic!("unexpected valueFrom for {}", var.name);
        }
    }
    env
}

async fn get(url: &str, host: &str) -> u16 {
    hawser_e2e::harness::http()
        .get(url)
        .header("host", host)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn initialize(base: &str, host: &str, bearer: Option<&str>) -> reqwest::Response {
    let mut req = hawser_e2e::harness::http()
        .post(format!("{base}/mcp"))
        .header("host", host)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "chart-test", "version": "1"}
            }
        }));
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("initialize")
}

#[tokio::test]
async fn the_gateway_deployment_the_chart_renders_serves_mcp() {
    let client_token = "chart-test-client-token-0123456789";
    let digest = hex(&Sha256::digest(client_token.as_bytes()));
    let values = format!(
        "secrets: {{databaseUrl: postgres://placeholder, encryptionKeys: placeholder, adminToken: placeholder}}\n\
         gateway:\n  publicUrl: https://mcp.example.com\n  config:\n    clientAuth:\n      type: bearer\n      tokens: [{{subject: ci, sha256: \"{digest}\"}}]\n    audit: {{retention: 14d}}\n"
    );
    let docs = render(&values).expect("helm template");
    let listed = kinds(&docs);
    for expected in [
        "CustomResourceDefinition/\"mcpconnections.hawser.dev\"",
        "Deployment/\"hw-hawser-gateway\"",
        "Deployment/\"hw-hawser-operator\"",
        "Service/\"hw-hawser-gateway\"",
        "PodDisruptionBudget/\"hw-hawser-gateway\"",
        "ClusterRole/\"hw-hawser-operator\"",
        "Role/\"hw-hawser-operator-lease\"",
    ] {
        assert!(
            listed.iter().any(|k| k == expected),
            "{expected} missing from {listed:?}"
        );
    }

    let deployment: Deployment = find(&docs, "Deployment", "hw-hawser-gateway");
    let service: Service = find(&docs, "Service", "hw-hawser-gateway");
    let pdb: PodDisruptionBudget = find(&docs, "PodDisruptionBudget", "hw-hawser-gateway");
    let config: ConfigMap = find(&docs, "ConfigMap", "hw-hawser-gateway");
    let secret: Secret = find(&docs, "Secret", "hw-hawser-secrets");

    // The Service and the PDB select the gateway pods, and the Service targets a port
    // the container declares.
    let labels = pod_labels(&deployment);
    let service_spec = service.spec.as_ref().expect("service spec");
    assert!(selects(
        service_spec.selector.as_ref().expect("selector"),
        &labels
    ));
    let pdb_selector = pdb
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .and_then(|s| s.match_labels.clone())
        .unwrap_or_default();
    assert!(selects(&pdb_selector, &labels));
    let gateway = container(&deployment, "gateway");
    let ports = gateway.ports.as_ref().expect("container ports");
    let target = service_spec.ports.as_ref().expect("service ports")[0]
        .target_port
        .clone()
        .expect("targetPort");
    let http_port = ports
        .iter()
        .find(|p| {
            matches!(&target, k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(n) if p.name.as_deref() == Some(n))
        })
        .expect("the Service's targetPort names a container port")
        .container_port;

    // Run the container: the image's entrypoint is `hawser`; the Secret is the test's.
    let db = pg::test_db().await;
    let key = stdout_of("hawser", "keygen");
    let admin_token = "chart-test-admin-token-0123456789";
    let secret_keys: Vec<String> = secret.string_data.unwrap_or_default().into_keys().collect();
    let mut secret_values = BTreeMap::new();
    for k in secret_keys {
        let v = match k.as_str() {
            "database-url" => db.url.clone(),
            "encryption-keys" => key.trim().to_owned(),
            "admin-token" => admin_token.to_owned(),
            other => panic!("unexpected Secret key {other}"),
        };
        secret_values.insert(k, v);
    }
    let env = pod_env(gateway, &secret_values);
    let listen = env
        .iter()
        .find(|(k, _)| k == "HAWSER_LISTEN")
        .map(|(_, v)| v.clone())
        .expect("HAWSER_LISTEN");
    assert!(
        listen.ends_with(&format!(":{http_port}")),
        "the gateway listens on {listen}, the container declares port {http_port}"
    );

    let config_dir = tempfile::tempdir().expect("temp dir");
    let config_text = config
        .data
        .as_ref()
        .and_then(|d| d.get("config.yaml"))
        .expect("config.yaml in the ConfigMap");
    let config_path = config_dir.path().join("config.yaml");
    std::fs::write(&config_path, config_text).expect("write config");
    let args: Vec<String> = gateway
        .args
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|a| {
            if a == "/etc/hawser/config.yaml" {
                config_path.display().to_string()
            } else {
                a
            }
        })
        .collect();
    assert_eq!(
        gateway.command, None,
        "the gateway uses the image entrypoint"
    );

    // The audit spool is a writable emptyDir of the pod (the root filesystem is read-only).
    let spool_path = env
        .iter()
        .find(|(k, _)| k == "HAWSER_AUDIT_SPOOL_DIR")
        .map(|(_, v)| v.clone())
        .expect("HAWSER_AUDIT_SPOOL_DIR");
    let pod = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec");
    let mounted_empty_dir = gateway.volume_mounts.iter().flatten().any(|m| {
        m.mount_path == spool_path
            && pod
                .volumes
                .iter()
                .flatten()
                .any(|v| v.name == m.name && v.empty_dir.is_some())
    });
    assert!(
        mounted_empty_dir,
        "{spool_path} is not an emptyDir mount of the gateway pod"
    );
    let spool_dir = tempfile::tempdir().expect("temp dir");

    let port = free_port();
    let mut cmd = Command::new(tools::binary("hawser"));
    cmd.args(&args).env_clear().env("PATH", "/usr/bin:/bin");
    for (k, v) in &env {
        cmd.env(k, v);
    }
    // The deviations from the pod: a free loopback port instead of 0.0.0.0:8080, and
    // the spool's emptyDir at a temporary directory.
    cmd.env("HAWSER_LISTEN", format!("127.0.0.1:{port}"));
    cmd.env("HAWSER_AUDIT_SPOOL_DIR", spool_dir.path());
    let mut child = Child::spawn("hawser", &mut cmd);
    let base = child.wait_listening();

    // Probes as the kubelet sends them (Host: the pod's IP and port).
    let kubelet_host = format!("10.244.1.7:{http_port}");
    let probe_paths: Vec<String> = [
        &gateway.startup_probe,
        &gateway.liveness_probe,
        &gateway.readiness_probe,
    ]
    .into_iter()
    .map(|p| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|g| g.path.clone())
            .expect("an httpGet probe")
    })
    .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    for path in &probe_paths {
        loop {
            let status = get(&format!("{base}{path}"), &kubelet_host).await;
            if status == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "probe {path} answers {status}:\n{}",
                child.lines().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // MCP through the Service's in-cluster name and the public URL's host, with the
    // client token the values configured; a foreign Host and a missing token refused.
    for host in ["hw-hawser-gateway.mcp.svc", "mcp.example.com"] {
        let r = initialize(&base, host, Some(client_token)).await;
        assert_eq!(r.status(), 200, "initialize via Host {host}");
        assert!(r.headers().contains_key("mcp-session-id"));
    }
    assert_eq!(
        initialize(&base, "attacker.example", Some(client_token))
            .await
            .status(),
        403
    );
    assert_eq!(
        initialize(&base, "hw-hawser-gateway.mcp.svc", None)
            .await
            .status(),
        401
    );

    // The admin token from the Secret opens the admin API.
    let r = hawser_e2e::harness::http()
        .get(format!("{base}/api/v1/connections"))
        .bearer_auth(admin_token)
        .send()
        .await
        .expect("admin api");
    assert_eq!(r.status(), 200);

    // The replica is named after its pod, and logs are JSON.
    let lines = child.lines();
    let started = lines
        .iter()
        .find(|l| l.contains("hawser listening"))
        .expect("start-up log line");
    let parsed: Value = serde_json::from_str(started).expect("JSON log line");
    assert!(
        parsed.to_string().contains(POD_NAME),
        "replica id is the pod name: {started}"
    );
    child.terminate(Duration::from_secs(10));
}

#[tokio::test]
async fn the_operator_deployment_sets_only_what_the_operator_reads() {
    let docs = render(
        "secrets: {databaseUrl: postgres://x, encryptionKeys: placeholder}\noperator: {watchNamespace: team-a}\ngateway: {allowStdioFromApi: true}\n",
    )
    .expect("helm template");
    let deployment: Deployment = find(&docs, "Deployment", "hw-hawser-operator");
    let operator = container(&deployment, "operator");
    let help = stdout_of("hawser-operator", "--help");
    let env: Vec<&str> = operator
        .env
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    for name in &env {
        if *name == "RUST_LOG" {
            continue;
        }
        assert!(
            help.contains(&format!("[env: {name}")),
            "the chart sets {name}, which hawser-operator does not read"
        );
    }
    for required in [
        "DATABASE_URL",
        "HAWSER_ENCRYPTION_KEYS",
        "POD_NAMESPACE",
        "POD_NAME",
        "HAWSER_WATCH_NAMESPACE",
        "HAWSER_ALLOW_STDIO_FROM_API",
    ] {
        assert!(env.contains(&required), "{required} not set: {env:?}");
    }
    let probe_port = operator
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .map(|g| g.port.clone())
        .expect("readiness probe");
    assert_eq!(
        probe_port,
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("http".into())
    );

    // One watched namespace: a Role there instead of cluster-wide Secret access.
    let listed = kinds(&docs);
    assert!(
        !listed.iter().any(|k| k.starts_with("ClusterRole")),
        "{listed:?}"
    );
    let role = docs
        .iter()
        .find(|d| d["kind"] == "Role" && d["metadata"]["name"] == "hw-hawser-operator")
        .expect("Role hw-hawser-operator");
    assert_eq!(role["metadata"]["namespace"], "team-a");
    let resources: Vec<String> = role["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .flat_map(|r| r["resources"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r.as_str().map(String::from))
        .collect();
    for r in [
        "mcpconnections",
        "mcpconnections/status",
        "secrets",
        "events",
    ] {
        assert!(resources.iter().any(|x| x == r), "{r} not granted");
    }
}

#[tokio::test]
async fn the_chart_refuses_to_render_without_secrets() {
    let err = render("{}").expect_err("rendering without secrets must fail");
    assert!(
        err.contains("secrets.existingSecret"),
        "the error says what to set: {err}"
    );
    let err = render("secrets: {databaseUrl: postgres://x}").expect_err("no keys");
    assert!(err.contains("hawser keygen"), "{err}");
    // An existing Secret needs no values, and the chart creates none.
    let docs = render("secrets: {existingSecret: mine}").expect("existingSecret");
    assert!(!docs.iter().any(|d| d["kind"] == "Secret"));
    let deployment: Deployment = find(&docs, "Deployment", "hw-hawser-gateway");
    let refs: Vec<String> = container(&deployment, "gateway")
        .env
        .iter()
        .flatten()
        .filter_map(|v| v.value_from.as_ref()?.secret_key_ref.as_ref())
        .map(|r| r.name.clone())
        .collect();
    assert!(
        !refs.is_empty() && refs.iter().all(|n| n == "mine"),
        "{refs:?}"
    );
}

#[tokio::test]
async fn dashboards_and_alerts_render_only_when_enabled() {
    let docs = render("secrets: {existingSecret: mine}").expect("defaults");
    assert!(
        !docs
            .iter()
            .any(|d| d["kind"] == "PrometheusRule"
                || d["metadata"]["name"] == "hw-hawser-dashboards"),
        "{:?}",
        kinds(&docs)
    );

    let docs = render(
        "secrets: {existingSecret: mine}\n\
         dashboards: {enabled: true, label: grafana_dashboard_hawser, labelValue: enabled, namespace: monitoring, annotations: {grafana_folder: Hawser}}\n\
         alerts: {enabled: true, labels: {release: prom}, for: 7m, errorRatio: 0.2, runbookUrl: https://docs.example.com/ops}\n",
    )
    .expect("helm template");

    // The dashboard ConfigMap: the label the sidecar looks for, the JSON as shipped.
    let config: ConfigMap = find(&docs, "ConfigMap", "hw-hawser-dashboards");
    let meta = &config.metadata;
    assert_eq!(meta.namespace.as_deref(), Some("monitoring"));
    let labels = meta.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("grafana_dashboard_hawser").map(String::as_str),
        Some("enabled")
    );
    assert_eq!(
        meta.annotations
            .as_ref()
            .and_then(|a| a.get("grafana_folder"))
            .map(String::as_str),
        Some("Hawser")
    );
    let shipped = std::fs::read_to_string(chart_dir().join("dashboards/hawser.json"))
        .expect("dashboards/hawser.json");
    let json = config
        .data
        .as_ref()
        .and_then(|d| d.get("hawser.json"))
        .expect("hawser.json in the ConfigMap");
    assert_eq!(json.trim_end(), shipped.trim_end());
    let dashboard: Value = serde_json::from_str(json).expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "hawser");

    // The PrometheusRule: its labels, and the values in its rules.
    let rule = docs
        .iter()
        .find(|d| d["kind"] == "PrometheusRule" && d["metadata"]["name"] == "hw-hawser")
        .unwrap_or_else(|| panic!("no PrometheusRule in {:?}", kinds(&docs)));
    assert_eq!(rule["metadata"]["namespace"], NAMESPACE);
    assert_eq!(rule["metadata"]["labels"]["release"], "prom");
    let rules: Vec<Value> = rule["spec"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect();
    let operations = std::fs::read_to_string(tools::workspace_root().join("docs/operations.md"))
        .expect("docs/operations.md");
    for rule in &rules {
        let name = rule["alert"].as_str().expect("alerting rules only");
        // Lost audit events fire at once; a failing store probe after a fixed minute.
        match name {
            "HawserAuditEventsDropped" => assert!(rule.get("for").is_none(), "{name}"),
            "HawserPostgresUnreachable" => assert_eq!(rule["for"], "1m", "{name}"),
            _ => assert_eq!(rule["for"], "7m", "{name}"),
        }
        // Each runbook is the section of docs/operations.md named after the alert.
        let runbook = rule["annotations"]["runbook_url"]
            .as_str()
            .expect("runbook_url");
        assert_eq!(
            runbook,
            format!("https://docs.example.com/ops#{}", name.to_lowercase())
        );
        assert!(
            operations.contains(&format!("\n### {name}\n")),
            "docs/operations.md has no runbook section for {name}"
        );
    }
    let error_ratio = rules
        .iter()
        .find(|r| r["alert"] == "HawserErrorRatioHigh")
        .expect("HawserErrorRatioHigh");
    assert!(
        error_ratio["expr"]
            .as_str()
            .is_some_and(|e| e.contains("> 0.2")),
        "{error_ratio}"
    );

    // Helm's own checks pass with everything on.
    let out = Command::new(tools::helm())
        .args(["lint", "--strict"])
        .arg(chart_dir())
        .args([
            "--set",
            "secrets.existingSecret=hawser",
            "--set",
            "dashboards.enabled=true",
            "--set",
            "alerts.enabled=true",
        ])
        .output()
        .expect("run helm lint");
    assert!(
        out.status.success(),
        "helm lint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What `binary arg` prints.
fn stdout_of(binary: &str, arg: &str) -> String {
    let out = Command::new(tools::binary(binary))
        .arg(arg)
        .output()
        .unwrap_or_else(|e| panic!("{binary} {arg}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
