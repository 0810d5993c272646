//! Settings resolution: precedence, errors that name their field, secrets.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::crypto::IdHash;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn from_yaml(
    yaml: &str,
    flags: &Flags,
    env: &BTreeMap<String, String>,
) -> Result<Settings, ConfigError> {
    let raw = file::parse(yaml, Path::new("test.yaml"))?;
    Settings::from_raw(raw, Some("test.yaml".into()), flags, env)
}

#[test]
fn flags_override_env_override_file() {
    let yaml = "listen: 127.0.0.1:1000\n";
    let s = from_yaml(yaml, &Flags::default(), &env(&[])).unwrap();
    assert_eq!(s.listen.port(), 1000);
    let e = env(&[("HAWSER_LISTEN", "127.0.0.1:2000")]);
    assert_eq!(
        from_yaml(yaml, &Flags::default(), &e)
            .unwrap()
            .listen
            .port(),
        2000
    );
    let flags = Flags {
        listen: Some("127.0.0.1:3000".into()),
        ..Flags::default()
    };
    assert_eq!(from_yaml(yaml, &flags, &e).unwrap().listen.port(), 3000);
    assert_eq!(
        from_yaml("", &Flags::default(), &env(&[]))
            .unwrap()
            .listen
            .to_string(),
        DEFAULT_LISTEN
    );
}

#[test]
fn connection_errors_name_file_index_and_field() {
    let yaml = "connections:\n  - name: ok\n    url: http://x\n  - name: bad\n    url: nope\n";
    let e = from_yaml(yaml, &Flags::default(), &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("test.yaml: connections[1] (bad): url:"),
        "{e}"
    );
    let dup = "connections:\n  - name: a\n    url: http://x\n  - name: a\n    url: http://y\n";
    let e = from_yaml(dup, &Flags::default(), &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("duplicate connection name \"a\""), "{e}");
}

#[test]
fn env_secrets_resolve_from_the_environment() {
    let yaml = "connections:\n  - name: gh\n    url: http://x\n    auth: {type: bearer, token: {env: GH_TOKEN}}\n";
    let e = from_yaml(yaml, &Flags::default(), &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("auth.token: environment variable GH_TOKEN is not set"),
        "{e}"
    );
    let s = from_yaml(yaml, &Flags::default(), &env(&[("GH_TOKEN", "abc")])).unwrap();
    let UpstreamAuth::Headers(h) = &s.connections[0].auth else {
        panic!()
    };
    assert_eq!(h[0].1, "Bearer abc");
}

#[test]
fn host_and_origin_allow_lists() {
    let s = from_yaml("", &Flags::default(), &env(&[]))
        .unwrap()
        .security;
    assert!(s.host_allowed("localhost:8080"));
    assert!(s.host_allowed("127.0.0.1"));
    assert!(s.host_allowed("[::1]:9000"));
    assert!(!s.host_allowed("evil.example.com"));
    assert!(!s.host_allowed("evil.example.com:8080"));
    assert!(s.origin_allowed("http://localhost:3000"));
    assert!(!s.origin_allowed("http://evil.example.com"));
    let s = from_yaml(
        "security: {allowedHosts: [\"hawser.example.com:443\"]}",
        &Flags::default(),
        &env(&[]),
    )
    .unwrap()
    .security;
    assert!(s.host_allowed("HAWSER.example.com:443"));
    assert!(!s.host_allowed("hawser.example.com:80"));
    let s = from_yaml(
        "",
        &Flags::default(),
        &env(&[("HAWSER_ALLOWED_HOSTS", "*")]),
    )
    .unwrap()
    .security;
    assert!(s.host_allowed("anything"));
}

#[test]
fn client_tokens_are_kept_as_digests() {
    let yaml = "clientAuth:\n  type: bearer\n  tokens:\n    - {subject: alice, token: a-token}\n";
    let s = from_yaml(yaml, &Flags::default(), &env(&[])).unwrap();
    assert!(!format!("{:?}", s.client_auth).contains("a-token"));
    assert_eq!(s.client_auth.tokens[0].digest, IdHash::of("a-token"));
    assert!(!s.client_auth.is_open());
    let new_form =
        "clientAuth:\n  tokens:\n    - {subject: alice, token: a-token, groups: [ops]}\n";
    let s = from_yaml(new_form, &Flags::default(), &env(&[])).unwrap();
    assert_eq!(s.client_auth.tokens[0].groups, ["ops"]);
    assert!(
        from_yaml("", &Flags::default(), &env(&[]))
            .unwrap()
            .client_auth
            .is_open()
    );
}

#[test]
fn oidc_needs_only_an_issuer_and_the_public_url() {
    let yaml = "publicUrl: https://mcp.example.com\nclientAuth:\n  oidc: {issuer: https://login.example.com/realms/acme}\n";
    let s = from_yaml(yaml, &Flags::default(), &env(&[])).unwrap();
    let oidc = s.client_auth.oidc.unwrap();
    assert_eq!(
        oidc.issuer.as_str(),
        "https://login.example.com/realms/acme"
    );
    assert_eq!(
        oidc.authorization_servers,
        ["https://login.example.com/realms/acme"]
    );
    assert_eq!(oidc.subject_claim, "sub");
    assert_eq!(oidc.algorithms.len(), 3);
    // Entra ID: tokens carry `mcp.access`, clients must ask for the qualified name.
    let entra = "publicUrl: https://x\nclientAuth:\n  oidc:\n    issuer: https://l\n    scopesRequired: [mcp.access]\n    scopesSupported: [api://app/mcp.access]\n";
    let oidc = from_yaml(entra, &Flags::default(), &env(&[]))
        .unwrap()
        .client_auth
        .oidc
        .unwrap();
    assert_eq!(oidc.scopes_required, ["mcp.access"]);
    assert_eq!(oidc.scopes_supported, ["api://app/mcp.access"]);
    let errors = [
        (
            "clientAuth:\n  oidc: {issuer: https://login.example.com}\n",
            "publicUrl",
        ),
        (
            "publicUrl: https://x\nclientAuth:\n  oidc: {issuer: http://login.example.com}\n",
            "must be https",
        ),
        (
            "publicUrl: https://x\nclientAuth:\n  oidc: {issuer: https://l, algorithms: [HS256]}\n",
            "never accepted",
        ),
        (
            "publicUrl: https://x\nclientAuth:\n  oidc: {issuer: https://l, algorithms: [none]}\n",
            "never accepted",
        ),
        (
            "clientAuth:\n  type: none\n  apiKeys: true\n",
            "lets everyone in",
        ),
        ("clientAuth:\n  type: bearer\n", "at least one token"),
    ];
    for (yaml, needle) in errors {
        let e = from_yaml(yaml, &Flags::default(), &env(&[])).unwrap_err();
        assert!(e.to_string().contains(needle), "{yaml}: {e}");
    }
}

#[test]
fn short_admin_tokens_and_bad_keys_are_rejected() {
    let e = from_yaml(
        "",
        &Flags::default(),
        &env(&[("HAWSER_ADMIN_TOKEN", "short")]),
    )
    .unwrap_err();
    assert!(e.to_string().contains("at least 16"), "{e}");
    let e = from_yaml(
        "",
        &Flags::default(),
        &env(&[("HAWSER_ENCRYPTION_KEYS", "k1:xx")]),
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("HAWSER_ENCRYPTION_KEYS"), "{e}");
}

#[test]
fn file_values_are_named_as_written_and_booleans_are_strict() {
    let e = from_yaml("adminToken: short\n", &Flags::default(), &env(&[])).unwrap_err();
    assert!(e.to_string().starts_with("adminToken"), "{e}");
    let s = from_yaml(
        "security: {allowedHosts: [MCP.Example.COM]}\n",
        &Flags::default(),
        &env(&[]),
    )
    .unwrap();
    assert!(s.security.host_allowed("mcp.example.com"));
    let e = from_yaml(
        "",
        &Flags::default(),
        &env(&[("HAWSER_ALLOW_STDIO_FROM_API", "yes")]),
    )
    .unwrap_err();
    assert!(
        e.to_string().starts_with("HAWSER_ALLOW_STDIO_FROM_API"),
        "{e}"
    );
    let s = from_yaml(
        "",
        &Flags::default(),
        &env(&[("HAWSER_ALLOW_STDIO_FROM_API", "1")]),
    )
    .unwrap();
    assert!(s.security.allow_stdio_from_api);
}

#[test]
fn the_shipped_examples_load() {
    let dir = example_path("");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let raw = file::load(&path).unwrap_or_else(|e| panic!("{e}"));
            let vars = env(&[("FIXTURE_TOKEN", "example-token")]);
            Settings::from_raw(raw, Some(path.clone()), &Flags::default(), &vars)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            checked += 1;
        }
    }
    assert!(checked > 0, "no examples found in {}", dir.display());
}
