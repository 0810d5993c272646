//! What an upstream offers: its initialize result and its tools, prompts, resources
//! and resource templates, listed across every page.

use std::collections::HashMap;

use rmcp::model::{InitializeResult, ServerCapabilities};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::UpstreamError;
use super::era::ParamHeader;
use crate::revision::Era;

/// One listed item: its key (tool/prompt name, resource URI, URI template) and its
/// JSON exactly as the upstream sent it.
#[derive(Debug, Clone)]
pub struct Item {
    pub key: String,
    pub raw: Box<RawValue>,
}

/// Everything discovered about an upstream.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// The upstream's initialize result, as sent (for a 2026-07-28 upstream, one
    /// made from its `server/discover` result).
    pub initialize: Box<RawValue>,
    /// A 2026-07-28 upstream's `server/discover` result, as sent.
    pub discover: Option<Box<RawValue>>,
    pub era: Era,
    pub capabilities: ServerCapabilities,
    pub protocol_version: String,
    pub tools: Vec<Item>,
    pub prompts: Vec<Item>,
    pub resources: Vec<Item>,
    pub templates: Vec<Item>,
    /// The cache hints of each list ([`ListKind::index`]).
    pub hints: [CacheHint; 4],
    /// Tools with `x-mcp-header` arguments, and those arguments.
    pub param_headers: HashMap<String, Vec<ParamHeader>>,
}

/// How long a list may be reused, and by whom (2026-07-28 `ttlMs`, `cacheScope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheHint {
    /// `None`: the upstream gave none (a legacy upstream).
    pub ttl_ms: Option<u64>,
    /// Whether the list may differ between callers.
    pub private: bool,
}

impl CacheHint {
    /// The hint of two lists served as one: the shorter life, the narrower scope.
    pub fn join(self, other: Self) -> Self {
        let ttl_ms = match (self.ttl_ms, other.ttl_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Self {
            ttl_ms,
            private: self.private || other.private,
        }
    }

    fn of_page(page: &serde_json::Map<String, serde_json::Value>) -> Self {
        Self {
            ttl_ms: page.get("ttlMs").and_then(serde_json::Value::as_u64),
            private: page.get("cacheScope").and_then(serde_json::Value::as_str) == Some("private"),
        }
    }
}

/// Stop following cursors after this many pages (a looping cursor is a bug upstream).
const MAX_PAGES: usize = 200;

/// The four lists an MCP server offers and a client can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
    Templates,
}

impl ListKind {
    pub const ALL: [ListKind; 4] = [Self::Tools, Self::Prompts, Self::Resources, Self::Templates];

    pub fn method(self) -> &'static str {
        match self {
            Self::Tools => "tools/list",
            Self::Prompts => "prompts/list",
            Self::Resources => "resources/list",
            Self::Templates => "resources/templates/list",
        }
    }

    /// The list a method asks for (`tools/list` …).
    pub fn of_method(method: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.method() == method)
    }

    /// The notification telling clients this list changed.
    pub fn changed_notification(self) -> &'static str {
        match self {
            Self::Tools => "notifications/tools/list_changed",
            Self::Prompts => "notifications/prompts/list_changed",
            Self::Resources | Self::Templates => "notifications/resources/list_changed",
        }
    }

    /// The result's field holding the items.
    pub(crate) fn field(self) -> &'static str {
        match self {
            Self::Tools => "tools",
            Self::Prompts => "prompts",
            Self::Resources => "resources",
            Self::Templates => "resourceTemplates",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Self::Tools | Self::Prompts => "name",
            Self::Resources => "uri",
            Self::Templates => "uriTemplate",
        }
    }

    /// Position in [`ListKind::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Parses an initialize result.
pub fn parse_initialize(result: &RawValue) -> Result<(ServerCapabilities, String), UpstreamError> {
    let init: InitializeResult = serde_json::from_str(result.get())
        .map_err(|e| UpstreamError::Protocol(format!("invalid initialize result: {e}")))?;
    Ok((init.capabilities, init.protocol_version.to_string()))
}

/// One page of a list result.
pub struct Page {
    pub items: Vec<Item>,
    pub next_cursor: Option<String>,
    pub hint: CacheHint,
}

/// Reads one page of a list result: its items, the next cursor and the cache hint.
pub fn parse_page(kind: ListKind, result: &RawValue) -> Result<Page, UpstreamError> {
    #[derive(Deserialize)]
    struct Wire {
        #[serde(rename = "nextCursor", default)]
        next_cursor: Option<String>,
        #[serde(flatten)]
        rest: serde_json::Map<String, serde_json::Value>,
    }
    let page: Wire = serde_json::from_str(result.get())
        .map_err(|e| UpstreamError::Protocol(format!("invalid {} result: {e}", kind.method())))?;
    let list = page
        .rest
        .get(kind.field())
        .and_then(|v| v.as_array())
        .ok_or_else(|| {
            UpstreamError::Protocol(format!(
                "{} result has no {} array",
                kind.method(),
                kind.field()
            ))
        })?;
    let mut items = Vec::with_capacity(list.len());
    for value in list {
        let Some(key) = value.get(kind.key()).and_then(|k| k.as_str()) else {
            return Err(UpstreamError::Protocol(format!(
                "{} entry without a {} string",
                kind.method(),
                kind.key()
            )));
        };
        let raw = crate::jsonrpc::raw_or_null(value.to_string());
        items.push(Item {
            key: key.to_owned(),
            raw,
        });
    }
    Ok(Page {
        items,
        next_cursor: page.next_cursor.filter(|c| !c.is_empty()),
        hint: CacheHint::of_page(&page.rest),
    })
}

/// Lists every page of `kind` using `request(method, params)`; the items and the
/// hint of all pages together.
pub async fn list_all<F, Fut>(
    kind: ListKind,
    mut request: F,
) -> Result<(Vec<Item>, CacheHint), UpstreamError>
where
    F: FnMut(&'static str, Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Box<RawValue>, UpstreamError>>,
{
    let mut all = Vec::new();
    let mut hint: Option<CacheHint> = None;
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let params = cursor
            .as_ref()
            .map(|c| serde_json::json!({ "cursor": c }).to_string());
        let result = request(kind.method(), params).await?;
        let page = parse_page(kind, &result)?;
        all.extend(page.items);
        hint = Some(hint.map_or(page.hint, |h| h.join(page.hint)));
        match page.next_cursor {
            Some(c) if Some(&c) != cursor.as_ref() => cursor = Some(c),
            _ => return Ok((all, hint.unwrap_or_default())),
        }
    }
    Err(UpstreamError::Protocol(format!(
        "{} returned more than {MAX_PAGES} pages",
        kind.method()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn follows_cursors_and_keeps_items_raw() {
        let pages = [
            r#"{"tools":[{"name":"a","inputSchema":{"type":"object"},"x-extra":1}],"nextCursor":"p2"}"#,
            r#"{"tools":[{"name":"b","inputSchema":{"type":"object"}}]}"#,
        ];
        let mut seen = Vec::new();
        let (items, hint) = list_all(ListKind::Tools, |method, params| {
            seen.push((method, params.clone()));
            let page = if params.is_some() { pages[1] } else { pages[0] };
            async move { Ok(crate::jsonrpc::raw_or_null(page.to_owned())) }
        })
        .await
        .unwrap();
        assert_eq!(
            items.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(
            items[0].raw.get().contains("x-extra"),
            "unknown fields are kept"
        );
        assert_eq!(seen[1].1.as_deref(), Some(r#"{"cursor":"p2"}"#));
        assert_eq!(
            hint,
            CacheHint::default(),
            "a legacy upstream gives no hint"
        );
    }

    #[tokio::test]
    async fn the_hints_of_pages_join_to_the_shortest_life_and_narrowest_scope() {
        let pages = [
            r#"{"tools":[],"nextCursor":"p2","ttlMs":60000,"cacheScope":"public"}"#,
            r#"{"tools":[],"ttlMs":5000,"cacheScope":"private"}"#,
        ];
        let (_, hint) = list_all(ListKind::Tools, |_, params| {
            let page = if params.is_some() { pages[1] } else { pages[0] };
            async move { Ok(crate::jsonrpc::raw_or_null(page.to_owned())) }
        })
        .await
        .unwrap();
        assert_eq!(
            hint,
            CacheHint {
                ttl_ms: Some(5000),
                private: true
            }
        );
    }

    #[tokio::test]
    async fn a_cursor_that_never_ends_is_an_error() {
        let mut n = 0;
        let err = list_all(ListKind::Prompts, |_, _| {
            n += 1;
            let page = format!(r#"{{"prompts":[],"nextCursor":"c{n}"}}"#);
            async move { Ok(crate::jsonrpc::raw_or_null(page)) }
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("pages"), "{err}");
    }
}
