//! Tests of `connection`.

use super::*;

fn spec(json: serde_json::Value) -> McpConnectionSpec {
    serde_json::from_value(json).unwrap()
}

fn resolve_api(name: &str, json: serde_json::Value) -> Result<ConnectionConfig, SpecError> {
    resolve(
        name,
        spec(json),
        Source::Api,
        Policy::default(),
        &InlineOnly,
    )
}

#[test]
fn absurd_timeouts_are_refused_with_the_limit() {
    let e = resolve_api(
        "x",
        serde_json::json!({"url": "https://mcp.example.com/mcp", "timeouts": {"call": "30000d"}}),
    )
    .unwrap_err();
    assert_eq!(e.field, "timeouts.call");
    assert!(e.message.contains("24h"), "{e}");
    let e = resolve_api(
        "x",
        serde_json::json!({"url": "https://mcp.example.com/mcp", "timeouts": {"connect": "11m"}}),
    )
    .unwrap_err();
    assert_eq!(e.field, "timeouts.connect");
    assert!(
        resolve_api(
            "x",
            serde_json::json!({"url": "https://mcp.example.com/mcp", "timeouts": {"call": "24h", "connect": "10m"}}),
        )
        .is_ok()
    );
}

#[test]
fn an_authorization_url_needs_a_token_url() {
    let e = resolve_api(
        "x",
        serde_json::json!({"url": "https://mcp.example.com/mcp", "auth": {"type": "oauth2", "grant": "authorization_code", "clientId": "c", "authorizationUrl": "https://auth.example.com/authorize"}}),
    )
    .unwrap_err();
    assert_eq!(e.field, "auth.tokenUrl");
}

#[test]
fn defaults_prefix_to_name_and_compiles_filters() {
    let c = resolve_api(
        "github",
        serde_json::json!({"url": "https://mcp.example.com/mcp", "tools": {"include": ["get_*", "search"], "exclude": ["get_secret*"]}}),
    )
    .unwrap();
    assert_eq!(c.prefix, "github");
    assert!(c.tools.allows("get_issue"));
    assert!(c.tools.allows("search"));
    assert!(!c.tools.allows("get_secret_key"));
    assert!(!c.tools.allows("delete_repo"));
    assert!(matches!(c.target, Target::StreamableHttp(_)));
}

#[test]
fn crd_names_use_the_resource_name_as_default_prefix() {
    let c = resolve(
        "team-a/github",
        spec(serde_json::json!({"url": "http://x"})),
        Source::Crd,
        Policy::default(),
        &InlineOnly,
    )
    .unwrap();
    assert_eq!(c.prefix, "github");
    assert!(resolve_api("team-a/github", serde_json::json!({"url": "http://x"})).is_err());
}

#[test]
fn errors_name_the_field() {
    let cases = [
        ("Bad_Name", serde_json::json!({"url": "http://x"}), "name"),
        ("ok", serde_json::json!({}), "url"),
        ("ok", serde_json::json!({"url": "ftp://x"}), "url"),
        (
            "ok",
            serde_json::json!({"url": "http://x", "toolPrefix": "a__b"}),
            "toolPrefix",
        ),
        (
            "ok",
            serde_json::json!({"url": "http://x", "tools": {"include": ["a[", "*"]}}),
            "tools.include[0]",
        ),
        (
            "ok",
            serde_json::json!({"url": "http://x", "auth": {"type": "bearer", "token": ""}}),
            "auth.token",
        ),
        (
            "ok",
            serde_json::json!({"url": "http://x", "auth": {"type": "header", "headers": {"Bad Header": "v"}}}),
            "auth.headers.Bad Header",
        ),
        (
            "ok",
            serde_json::json!({"url": "http://x", "auth": {"type": "header", "headers": {"Mcp-Session-Id": "v"}}}),
            "auth.headers.Mcp-Session-Id",
        ),
        (
            "ok",
            serde_json::json!({"url": "http://x", "auth": {"type": "bearer", "token": {"secretKeyRef": {"name": "a", "key": "b"}}}}),
            "auth.token",
        ),
        (
            "ok",
            serde_json::json!({"transport": "stdio", "command": "server"}),
            "transport",
        ),
    ];
    for (name, json, field) in cases {
        let err = resolve_api(name, json.clone()).unwrap_err();
        assert_eq!(err.field, field, "{json} → {err}");
    }
}

#[test]
fn stdio_is_accepted_from_the_file_or_when_allowed() {
    let stdio = serde_json::json!({"transport": "stdio", "command": "server", "args": ["--x"]});
    assert!(
        resolve(
            "local",
            spec(stdio.clone()),
            Source::File,
            Policy::default(),
            &InlineOnly
        )
        .is_ok()
    );
    let allow = Policy {
        allow_stdio_from_api: true,
    };
    assert!(resolve("local", spec(stdio), Source::Api, allow, &InlineOnly).is_ok());
}

#[test]
fn bearer_becomes_a_sensitive_authorization_header() {
    let c = resolve_api(
        "gh",
        serde_json::json!({"url": "http://x", "auth": {"type": "bearer", "token": "t0k"}}),
    )
    .unwrap();
    let UpstreamAuth::Headers(headers) = &c.auth else {
        panic!("headers expected")
    };
    assert_eq!(headers[0].0, http::header::AUTHORIZATION);
    assert!(headers[0].1.is_sensitive());
    assert_eq!(headers[0].1, "Bearer t0k");
    assert!(
        !format!("{c:?}").contains("t0k"),
        "Debug must not show the token"
    );
}

#[test]
fn a_body_name_must_match_the_path() {
    let err = resolve_api("a", serde_json::json!({"name": "b", "url": "http://x"})).unwrap_err();
    assert_eq!(err.field, "name");
}

#[test]
fn a_header_the_identity_mode_sets_cannot_also_be_forwarded() {
    let with = |identity: serde_json::Value, forward: &[&str]| {
        resolve_api(
            "x",
            serde_json::json!({"url": "https://mcp.example.com/mcp", "identity": identity,
                               "forwardHeaders": forward}),
        )
    };
    let e = with(
        serde_json::json!({"mode": "headers"}),
        &["X-Tenant-Id", "X-Forwarded-User"],
    )
    .unwrap_err();
    assert_eq!(e.field, "forwardHeaders[1]");
    assert!(e.message.contains("set by identity.mode"), "{e}");
    let e = with(
        serde_json::json!({"mode": "jwt", "header": "X-Caller"}),
        &["x-caller"],
    )
    .unwrap_err();
    assert_eq!(e.field, "forwardHeaders[0]");
    assert!(with(serde_json::json!({"mode": "headers"}), &["X-Tenant-Id"]).is_ok());
    assert!(with(serde_json::json!({"mode": "none"}), &["X-Forwarded-User"]).is_ok());
}
