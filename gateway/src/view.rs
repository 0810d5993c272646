//! What clients see: for the aggregated endpoint and for each connection's own
//! endpoint, the prebuilt list results and the routing tables from exposed names
//! and URIs to upstreams.
//!
//! A view is built once per change (a connection added, removed or re-discovered) and
//! swapped in atomically; requests read it without locks and list requests answer
//! from its prebuilt bytes, so no request rebuilds or copies a tool list.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use bytes::Bytes;

use hawser_crds::{Problem, ProblemKind};

use crate::config::PREFIX_SEPARATOR;
use crate::endpoint::Endpoint;
use crate::jsonrpc::{RawParams, raw_string};
use crate::upstream::Upstream;
use crate::upstream::catalog::{CacheHint, Item};

/// Hawser's `serverInfo` (JSON text), in the results it builds itself.
pub fn hawser_info() -> &'static str {
    HAWSER_INFO.as_str()
}

static HAWSER_INFO: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    serde_json::json!({"name": "hawser", "title": "Hawser MCP gateway", "version": env!("CARGO_PKG_VERSION")})
        .to_string()
});

/// MCP caps tool names at 128 characters.
const MAX_NAME: usize = 128;

/// How long a client may reuse Hawser's own results (`ttlMs`) when no upstream asks
/// for less: list changes are announced meanwhile (GET stream, `subscriptions/listen`).
pub const DEFAULT_TTL_MS: u64 = 60_000;

pub use crate::upstream::catalog::ListKind;

/// Where an exposed tool or prompt goes.
#[derive(Debug, Clone)]
pub struct Route {
    pub upstream: Arc<Upstream>,
    /// The name at the upstream.
    pub name: String,
}

/// One listed item: the connection it comes from, its name (URI, URI template) at
/// the upstream, and its JSON as this endpoint lists it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub connection: Arc<str>,
    pub name: String,
    json: String,
}

impl Entry {
    fn new(connection: &str, name: &str, json: String) -> Self {
        Self {
            connection: connection.into(),
            name: name.to_owned(),
            json,
        }
    }
}

/// What one endpoint serves: its lists and routes.
#[derive(Debug)]
pub struct EndpointView {
    lists: [Bytes; 4],
    fingerprints: [u64; 4],
    /// The items of each list, for lists filtered per caller.
    entries: [Vec<Entry>; 4],
    hints: [CacheHint; 4],
    server_info: Option<String>,
    pub tools: HashMap<String, Route>,
    pub prompts: HashMap<String, Route>,
    pub resources: HashMap<String, Arc<Upstream>>,
    pub templates: Vec<(UriTemplate, Arc<Upstream>)>,
    /// For a connection's own endpoint: its upstream, whether or not it is up.
    pub upstream: Option<Arc<Upstream>>,
    /// The upstreams behind this endpoint whose lists were not read when it was built
    /// (starting, or not reached since): their names are not known to be unknown.
    pub pending: Vec<Arc<Upstream>>,
}

impl Default for EndpointView {
    /// An endpoint with empty (but valid) lists.
    fn default() -> Self {
        Builder::new(None).finish()
    }
}

impl EndpointView {
    /// The prebuilt `result` of a list request.
    pub fn list(&self, kind: ListKind) -> Bytes {
        self.lists[kind.index()].clone()
    }

    /// The `result` of a list request showing only the entries `keep` accepts; marked
    /// `cacheScope: private`, since another caller may see another list.
    pub fn filtered(&self, kind: ListKind, keep: impl Fn(&Entry) -> bool) -> Bytes {
        let i = kind.index();
        let items = self.entries[i]
            .iter()
            .filter(|e| keep(e))
            .map(|e| e.json.as_str());
        let mut hint = self.hints[i];
        hint.private = true;
        render(kind, items, hint, self.server_info.as_deref()).0
    }

    /// The entries of a list.
    pub fn entries(&self, kind: ListKind) -> &[Entry] {
        &self.entries[kind.index()]
    }

    pub fn fingerprint(&self, kind: ListKind) -> u64 {
        self.fingerprints[kind.index()]
    }

    /// The upstream serving `uri`: one that listed it, else the first template match.
    pub fn resource_owner(&self, uri: &str) -> Option<&Arc<Upstream>> {
        self.resources.get(uri).or_else(|| {
            self.templates
                .iter()
                .find(|(t, _)| t.matches(uri))
                .map(|(_, u)| u)
        })
    }
}

/// A problem found while building a view, with the connection it concerns
/// (reported on that connection's status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub connection: String,
    pub problem: Problem,
}

/// Every endpoint.
#[derive(Debug, Default)]
pub struct View {
    pub aggregated: Arc<EndpointView>,
    pub connections: HashMap<String, Arc<EndpointView>>,
    pub problems: Vec<Found>,
}

/// Which lists of which endpoints changed between two views.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    pub aggregated: Vec<ListKind>,
    pub connections: HashMap<String, Vec<ListKind>>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.aggregated.is_empty() && self.connections.values().all(Vec::is_empty)
    }

    /// What changed for `endpoint`.
    pub fn for_endpoint(&self, endpoint: &Endpoint) -> &[ListKind] {
        match endpoint {
            Endpoint::Aggregated => &self.aggregated,
            Endpoint::Connection(name) => self
                .connections
                .get(name)
                .map(Vec::as_slice)
                .unwrap_or_default(),
        }
    }
}

struct Builder {
    items: [Vec<Entry>; 4],
    hints: [CacheHint; 4],
    /// `serverInfo` for result `_meta` (JSON text).
    server_info: Option<String>,
    endpoint: EndpointView,
}

impl Builder {
    fn new(upstream: Option<Arc<Upstream>>) -> Self {
        Self {
            items: Default::default(),
            hints: Default::default(),
            server_info: None,
            endpoint: EndpointView {
                lists: Default::default(),
                fingerprints: [0; 4],
                entries: Default::default(),
                hints: Default::default(),
                server_info: None,
                tools: HashMap::new(),
                prompts: HashMap::new(),
                resources: HashMap::new(),
                templates: Vec::new(),
                pending: Vec::new(),
                upstream,
            },
        }
    }

    fn finish(mut self) -> EndpointView {
        for kind in ListKind::ALL {
            let i = kind.index();
            let items = self.items[i].iter().map(|e| e.json.as_str());
            let (list, fingerprint) =
                render(kind, items, self.hints[i], self.server_info.as_deref());
            self.endpoint.lists[i] = list;
            self.endpoint.fingerprints[i] = fingerprint;
        }
        self.endpoint.entries = self.items;
        self.endpoint.hints = self.hints;
        self.endpoint.server_info = self.server_info;
        self.endpoint
    }
}

/// A list `result` of `items`, and the fingerprint of the items (not the hints).
fn render<'a>(
    kind: ListKind,
    items: impl Iterator<Item = &'a str>,
    hint: CacheHint,
    server_info: Option<&str>,
) -> (Bytes, u64) {
    let mut json = String::with_capacity(256);
    json.push_str("{\"");
    json.push_str(kind.field());
    json.push_str("\":[");
    for (i, item) in items.enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push_str(item);
    }
    json.push(']');
    // The fingerprint says whether the items changed, not the hints.
    let mut h = DefaultHasher::new();
    json.hash(&mut h);
    let fingerprint = h.finish();
    // 2026-07-28 fields; earlier revisions ignore them.
    json.push_str(",\"resultType\":\"complete\",\"ttlMs\":");
    json.push_str(
        &hint
            .ttl_ms
            .unwrap_or(DEFAULT_TTL_MS)
            .min(DEFAULT_TTL_MS)
            .to_string(),
    );
    json.push_str(if hint.private {
        ",\"cacheScope\":\"private\""
    } else {
        ",\"cacheScope\":\"public\""
    });
    json.push_str(",\"_meta\":{\"io.modelcontextprotocol/serverInfo\":");
    json.push_str(server_info.unwrap_or(HAWSER_INFO.as_str()));
    json.push_str("}}");
    (Bytes::from(json), fingerprint)
}

/// An endpoint listing `tools` of `connection`, for tests.
#[cfg(test)]
pub fn test_endpoint(connection: &str, tools: &[&str]) -> EndpointView {
    let mut b = Builder::new(None);
    for t in tools {
        b.items[0].push(Entry::new(
            connection,
            t,
            serde_json::json!({"name": t}).to_string(),
        ));
    }
    b.finish()
}

/// The `serverInfo` of an initialize result (JSON text).
fn server_info(initialize: &serde_json::value::RawValue) -> Option<String> {
    RawParams::parse(Some(initialize))
        .ok()?
        .0
        .get("serverInfo")
        .map(|v| v.get().to_owned())
}

/// An item's JSON with its `name` replaced.
fn renamed(item: &Item, name: &str) -> String {
    match RawParams::parse(Some(&item.raw)) {
        Ok(mut members) => {
            members.0.set("name", raw_string(name));
            members.to_json()
        }
        Err(_) => item.raw.get().to_owned(),
    }
}

impl View {
    /// Builds every endpoint from the upstreams (any order; ties break by name).
    pub fn build(upstreams: &[Arc<Upstream>]) -> Self {
        let mut sorted: Vec<&Arc<Upstream>> = upstreams.iter().collect();
        sorted.sort_by(|a, b| a.name().cmp(b.name()));
        let mut problems = Vec::new();
        let mut agg = Builder::new(None);
        let mut connections = HashMap::new();
        let mut claimed: HashMap<String, String> = HashMap::new();

        for upstream in sorted {
            let mut own = Builder::new(Some(upstream.clone()));
            let Some(catalog) = upstream.catalog() else {
                // Its items are not known yet: a list without them is not to be reused.
                let unknown = CacheHint {
                    ttl_ms: Some(0),
                    private: false,
                };
                own.hints = [unknown; 4];
                own.endpoint.pending.push(upstream.clone());
                for joined in &mut agg.hints {
                    *joined = joined.join(unknown);
                }
                agg.endpoint.pending.push(upstream.clone());
                connections.insert(upstream.name().to_owned(), Arc::new(own.finish()));
                continue;
            };
            own.hints = catalog.hints;
            own.server_info = server_info(&catalog.initialize);
            for (joined, hint) in agg.hints.iter_mut().zip(catalog.hints) {
                *joined = joined.join(hint);
            }
            let config = upstream.config();
            for tool in &catalog.tools {
                if !config.tools.allows(&tool.key) {
                    continue;
                }
                own.items[0].push(Entry::new(
                    upstream.name(),
                    &tool.key,
                    tool.raw.get().to_owned(),
                ));
                own.endpoint.tools.insert(
                    tool.key.clone(),
                    Route {
                        upstream: upstream.clone(),
                        name: tool.key.clone(),
                    },
                );
                let exposed = format!("{}{PREFIX_SEPARATOR}{}", config.prefix, tool.key);
                if exposed.len() > MAX_NAME {
                    problems.push(Found {
                        connection: upstream.name().to_owned(),
                        problem: Problem {
                            kind: ProblemKind::NameTooLong,
                            message: format!("tool {:?} not exposed on /mcp: {exposed:?} is longer than {MAX_NAME} characters", tool.key),
                        },
                    });
                    continue;
                }
                if let Some(owner) = claimed.get(&format!("tool:{exposed}")) {
                    collision(&mut problems, "tool", &exposed, owner, upstream.name());
                    continue;
                }
                claimed.insert(format!("tool:{exposed}"), upstream.name().to_owned());
                agg.items[0].push(Entry::new(
                    upstream.name(),
                    &tool.key,
                    renamed(tool, &exposed),
                ));
                agg.endpoint.tools.insert(
                    exposed,
                    Route {
                        upstream: upstream.clone(),
                        name: tool.key.clone(),
                    },
                );
            }
            for prompt in &catalog.prompts {
                own.items[1].push(Entry::new(
                    upstream.name(),
                    &prompt.key,
                    prompt.raw.get().to_owned(),
                ));
                own.endpoint.prompts.insert(
                    prompt.key.clone(),
                    Route {
                        upstream: upstream.clone(),
                        name: prompt.key.clone(),
                    },
                );
                let exposed = format!("{}{PREFIX_SEPARATOR}{}", config.prefix, prompt.key);
                if let Some(owner) = claimed.get(&format!("prompt:{exposed}")) {
                    collision(&mut problems, "prompt", &exposed, owner, upstream.name());
                    continue;
                }
                claimed.insert(format!("prompt:{exposed}"), upstream.name().to_owned());
                agg.items[1].push(Entry::new(
                    upstream.name(),
                    &prompt.key,
                    renamed(prompt, &exposed),
                ));
                agg.endpoint.prompts.insert(
                    exposed,
                    Route {
                        upstream: upstream.clone(),
                        name: prompt.key.clone(),
                    },
                );
            }
            for resource in &catalog.resources {
                own.items[2].push(Entry::new(
                    upstream.name(),
                    &resource.key,
                    resource.raw.get().to_owned(),
                ));
                own.endpoint
                    .resources
                    .insert(resource.key.clone(), upstream.clone());
                if let Some(owner) = claimed.get(&format!("resource:{}", resource.key)) {
                    collision(
                        &mut problems,
                        "resource",
                        &resource.key,
                        owner,
                        upstream.name(),
                    );
                    continue;
                }
                claimed.insert(
                    format!("resource:{}", resource.key),
                    upstream.name().to_owned(),
                );
                agg.items[2].push(Entry::new(
                    upstream.name(),
                    &resource.key,
                    resource.raw.get().to_owned(),
                ));
                agg.endpoint
                    .resources
                    .insert(resource.key.clone(), upstream.clone());
            }
            for template in &catalog.templates {
                let parsed = UriTemplate::parse(&template.key);
                own.items[3].push(Entry::new(
                    upstream.name(),
                    &template.key,
                    template.raw.get().to_owned(),
                ));
                own.endpoint
                    .templates
                    .push((parsed.clone(), upstream.clone()));
                agg.items[3].push(Entry::new(
                    upstream.name(),
                    &template.key,
                    template.raw.get().to_owned(),
                ));
                agg.endpoint.templates.push((parsed, upstream.clone()));
            }
            connections.insert(upstream.name().to_owned(), Arc::new(own.finish()));
        }
        for p in &problems {
            tracing::warn!(connection = %p.connection, problem = %p.problem.message, "view problem");
        }
        Self {
            aggregated: Arc::new(agg.finish()),
            connections,
            problems,
        }
    }

    /// What changed from `old` to `self`.
    pub fn changes_since(&self, old: &View) -> Changes {
        let diff = |new: &EndpointView, old: Option<&EndpointView>| -> Vec<ListKind> {
            ListKind::ALL
                .into_iter()
                .filter(|k| old.is_none_or(|o| o.fingerprint(*k) != new.fingerprint(*k)))
                .collect()
        };
        let mut changes = Changes {
            aggregated: diff(&self.aggregated, Some(&old.aggregated)),
            connections: HashMap::new(),
        };
        for (name, ep) in &self.connections {
            let d = diff(ep, old.connections.get(name).map(Arc::as_ref));
            if !d.is_empty() {
                changes.connections.insert(name.clone(), d);
            }
        }
        for name in old.connections.keys() {
            if !self.connections.contains_key(name) {
                changes
                    .connections
                    .insert(name.clone(), ListKind::ALL.to_vec());
            }
        }
        changes
    }

    /// What `endpoint` serves; `None` for a connection that does not exist.
    pub fn endpoint(&self, endpoint: &Endpoint) -> Option<&Arc<EndpointView>> {
        match endpoint {
            Endpoint::Aggregated => Some(&self.aggregated),
            Endpoint::Connection(name) => self.connections.get(name),
        }
    }

    /// Problems concerning one connection.
    pub fn problems_of(&self, connection: &str) -> Vec<Problem> {
        self.problems
            .iter()
            .filter(|p| p.connection == connection)
            .map(|p| p.problem.clone())
            .collect()
    }
}

/// A name two connections claim: reported on both, so neither is shadowed silently.
fn collision(problems: &mut Vec<Found>, what: &str, name: &str, owner: &str, other: &str) {
    let found = |connection: &str, message: String| Found {
        connection: connection.to_owned(),
        problem: Problem {
            kind: ProblemKind::NameCollision,
            message,
        },
    };
    problems.push(found(
        other,
        format!(
            "{what} {name:?} collides with connection {owner:?}, which keeps it; change toolPrefix to expose it"
        ),
    ));
    problems.push(found(
        owner,
        format!("{what} {name:?} is also offered by connection {other:?} (not exposed from there)"),
    ));
}

/// A URI template (RFC 6570), matched against concrete URIs to route reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriTemplate {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// `{var}`: one or more characters, no `/`, `?` or `#`.
    Simple,
    /// `{+var}`, `{#var}`: anything, possibly empty.
    Reserved,
    /// `{?a,b}`, `{&a}`: an optional query part to the end.
    Query,
}

impl UriTemplate {
    pub fn parse(template: &str) -> Self {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let Some(close) = rest[open..].find('}') else {
                parts.push(Part::Literal(rest[open..].to_owned()));
                rest = "";
                break;
            };
            let expr = &rest[open + 1..open + close];
            parts.push(match expr.chars().next() {
                Some('+' | '#') => Part::Reserved,
                Some('?' | '&') => Part::Query,
                _ => Part::Simple,
            });
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Self { parts }
    }

    pub fn matches(&self, uri: &str) -> bool {
        match_parts(&self.parts, uri)
    }
}

fn match_parts(parts: &[Part], input: &str) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return input.is_empty();
    };
    match first {
        Part::Literal(lit) => input
            .strip_prefix(lit.as_str())
            .is_some_and(|tail| match_parts(rest, tail)),
        Part::Query => {
            input.is_empty()
                || ((input.starts_with('?') || input.starts_with('&')) && rest.is_empty())
        }
        Part::Simple | Part::Reserved => {
            let simple = matches!(first, Part::Simple);
            let min = usize::from(simple);
            let mut end = 0;
            for (i, c) in input.char_indices() {
                end = i + c.len_utf8();
                if simple && matches!(c, '/' | '?' | '#') {
                    end = i;
                    break;
                }
            }
            if simple && input[..end].len() != end {
                return false;
            }
            // Try the longest capture first, then shorter ones.
            let mut cut = end;
            loop {
                if cut >= min && input.is_char_boundary(cut) && match_parts(rest, &input[cut..]) {
                    return true;
                }
                if cut == 0 {
                    return false;
                }
                cut -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_templates_match_like_rfc6570_level_1_and_2() {
        let t = UriTemplate::parse("test://template/{id}/data");
        assert!(t.matches("test://template/42/data"));
        assert!(!t.matches("test://template//data"));
        assert!(!t.matches("test://template/a/b/data"));
        assert!(!t.matches("test://other/42/data"));
        let t = UriTemplate::parse("file:///{+path}");
        assert!(t.matches("file:///a/b/c.txt"));
        let t = UriTemplate::parse("repo://{owner}/{repo}/issues{?state}");
        assert!(t.matches("repo://me/hawser/issues"));
        assert!(t.matches("repo://me/hawser/issues?state=open"));
        assert!(!t.matches("repo://me/issues"));
    }

    #[test]
    fn renaming_keeps_every_other_field() {
        let item = Item {
            key: "search".into(),
            raw: crate::jsonrpc::raw_or_null(r#"{"name":"search","inputSchema":{"type":"object"},"annotations":{"readOnlyHint":true}}"#.into()),
        };
        assert_eq!(
            renamed(&item, "gh__search"),
            r#"{"name":"gh__search","inputSchema":{"type":"object"},"annotations":{"readOnlyHint":true}}"#
        );
    }
}

#[cfg(test)]
mod empty_tests {
    use super::*;

    #[test]
    fn an_empty_view_serves_valid_empty_lists() {
        let view = View::default();
        for kind in ListKind::ALL {
            let list: serde_json::Value =
                serde_json::from_slice(&view.aggregated.list(kind)).unwrap();
            assert_eq!(list[kind.field()], serde_json::json!([]), "{list}");
            // 2026-07-28 members, ignored by earlier revisions.
            assert_eq!(list["resultType"], "complete", "{list}");
            assert_eq!(list["ttlMs"], DEFAULT_TTL_MS, "{list}");
        }
    }
}
