//! The life of one upstream on one replica: dial, discover, watch for changes and
//! failures, and re-dial with backoff. It reports what it sees to the registry.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use std::collections::HashMap;

use super::catalog::{self, CacheHint, Catalog, ListKind};
use super::{Upstream, UpstreamError, channel, hawser_info, sse_legacy, stdio};
use crate::config::Target;
use crate::jsonrpc::{self, Message};
use crate::store::{ConnectionState, UpstreamSession};

/// How often a healthy upstream is pinged; a failed ping re-dials.
const PING_EVERY: Duration = Duration::from_secs(30);
/// Without a live notification stream, lists are re-read this often.
const REFRESH_EVERY: Duration = Duration::from_secs(300);

/// What a lifecycle tells the registry.
#[derive(Debug)]
pub enum Report {
    /// New state (and why, when not ready).
    State {
        upstream: Arc<Upstream>,
        state: ConnectionState,
        error: Option<String>,
    },
    /// The catalog changed (first discovery or re-discovery).
    Catalog { upstream: Arc<Upstream> },
}

/// Exponential backoff with jitter.
struct Backoff {
    next: Duration,
}

impl Backoff {
    const MIN: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(30);

    fn new() -> Self {
        Self { next: Self::MIN }
    }

    fn reset(&mut self) {
        self.next = Self::MIN;
    }

    fn step(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        let jitter = rand::random::<f64>() * 0.3 + 0.85;
        base.mul_f64(jitter)
    }
}

/// Runs until `shutdown`.
pub async fn run(
    upstream: Arc<Upstream>,
    reports: mpsc::UnboundedSender<Report>,
    shutdown: CancellationToken,
) {
    let report = |state, error: Option<String>| {
        let _ = reports.send(Report::State {
            upstream: upstream.clone(),
            state,
            error,
        });
    };
    let mut backoff = Backoff::new();
    loop {
        report(ConnectionState::Connecting, None);
        let dialled = tokio::select! {
            () = shutdown.cancelled() => return,
            r = dial(&upstream) => r,
        };
        upstream.mark_dialled();
        match dialled {
            Ok(watch) => {
                backoff.reset();
                let _ = reports.send(Report::Catalog {
                    upstream: upstream.clone(),
                });
                report(ConnectionState::Ready, None);
                let why = tokio::select! {
                    () = shutdown.cancelled() => {
                        close(&upstream, watch);
                        return;
                    }
                    why = watch_loop(&upstream, &watch, &reports) => why,
                    // Credentials changed (a grant was revoked or replaced): dial again
                    // so the state says whether they still work.
                    () = upstream.wake.notified() => UpstreamError::Unavailable("credentials changed".into()),
                };
                tracing::warn!(connection = %upstream.name(), reason = %why, "upstream lost; re-dialling");
                close(&upstream, watch);
                report(ConnectionState::Down, Some(why.to_string()));
            }
            Err(error) => {
                let state = match error {
                    UpstreamError::NotAuthorized(_) => ConnectionState::AwaitingAuthorization,
                    _ => ConnectionState::Down,
                };
                tracing::warn!(connection = %upstream.name(), %error, "cannot reach upstream");
                report(state, Some(error.to_string()));
            }
        }
        let wait = backoff.step();
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
            () = upstream.wake.notified() => backoff.reset(),
        }
    }
}

/// What keeps a dialled upstream observed.
enum Watch {
    Http(Arc<UpstreamSession>),
    Channel(Arc<channel::Channel>),
}

fn close(upstream: &Arc<Upstream>, watch: Watch) {
    match watch {
        Watch::Http(session) => upstream.close_session((*session).clone()),
        Watch::Channel(channel) => channel.close("connection closed".into()),
    }
}

/// Connects, finds the upstream's era, opens Hawser's own session (a legacy upstream)
/// and discovers everything. Hawser declares every capability it can relay, so that
/// upstreams which offer some tools only to able clients offer them to Hawser's.
async fn dial(upstream: &Arc<Upstream>) -> Result<Watch, UpstreamError> {
    let init_params = format!(
        r#"{{"protocolVersion":{},"capabilities":{},"clientInfo":{}}}"#,
        serde_json::json!(super::PROTOCOL_VERSION),
        super::era::RELAYABLE_CAPABILITIES,
        hawser_info(),
    );
    let config = upstream.config().clone();
    let mut discovered = None;
    let (watch, session, init) = match &config.target {
        Target::StreamableHttp(_) => {
            let probed = upstream.probe_modern().await?;
            upstream
                .modern
                .store(probed.is_some(), std::sync::atomic::Ordering::Relaxed);
            let dual = probed.as_deref().is_some_and(super::era::speaks_legacy_too);
            upstream
                .legacy_too
                .store(dual, std::sync::atomic::Ordering::Relaxed);
            let (session, init) = match probed {
                Some(result) => {
                    let (_, init) = super::era::parse_discover(&result)?;
                    discovered = Some(result);
                    (upstream.stateless_session(None), init)
                }
                None => {
                    upstream
                        .initialize_http(super::PROTOCOL_VERSION, &init_params, None)
                        .await?
                }
            };
            let session = Arc::new(session);
            upstream.control.store(Some(session.clone()));
            (Watch::Http(session.clone()), session, init)
        }
        Target::Stdio { command, args, env } => {
            let ch = stdio::spawn(
                upstream.name(),
                command,
                args,
                env,
                upstream.id_prefix.clone(),
            )?;
            let (session, init) = initialize_channel(upstream, &ch, &init_params).await?;
            (Watch::Channel(ch), session, init)
        }
        Target::Sse(url) => {
            let ch = sse_legacy::connect(
                url.clone(),
                upstream.credentials.clone(),
                config.connect_timeout,
                upstream.id_prefix.clone(),
            )
            .await?;
            let (session, init) = initialize_channel(upstream, &ch, &init_params).await?;
            (Watch::Channel(ch), session, init)
        }
    };
    let catalog = discover(upstream, &session, init, discovered).await?;
    tracing::info!(connection = %upstream.name(), era = %catalog.era, version = %catalog.protocol_version, "upstream era");
    upstream.catalog.store(Some(Arc::new(catalog)));
    Ok(watch)
}

async fn initialize_channel(
    upstream: &Arc<Upstream>,
    ch: &Arc<channel::Channel>,
    params: &str,
) -> Result<(Arc<UpstreamSession>, Box<serde_json::value::RawValue>), UpstreamError> {
    let timeout = upstream.config().connect_timeout;
    let params = jsonrpc::raw_or_null(params.to_owned());
    let mut call = ch.request("initialize", Some(&params)).await?;
    let reply = tokio::time::timeout(timeout, call.rx.recv())
        .await
        .map_err(|_| UpstreamError::Timeout(timeout))?
        .unwrap_or(Err(UpstreamError::Closed))?;
    let result = super::result_of(&reply)?;
    let (_, version) = catalog::parse_initialize(&result)?;
    ch.send(jsonrpc::notification("notifications/initialized", None))
        .await?;
    if let super::Transport::Channel(slot) = &upstream.transport {
        slot.store(Some(ch.clone()));
    }
    let session = Arc::new(UpstreamSession {
        id: None,
        protocol_version: version,
        revision: upstream.revision(),
        url: None,
        subject: None,
    });
    Ok((session, result))
}

/// Lists everything the upstream declares.
async fn discover(
    upstream: &Arc<Upstream>,
    session: &UpstreamSession,
    init: Box<serde_json::value::RawValue>,
    discovered: Option<Box<serde_json::value::RawValue>>,
) -> Result<Catalog, UpstreamError> {
    let (capabilities, protocol_version) = catalog::parse_initialize(&init)?;
    let timeout = upstream.config().call_timeout;
    let list = |kind: ListKind| {
        let upstream = upstream.clone();
        async move {
            catalog::list_all(kind, |method, params| {
                let upstream = upstream.clone();
                async move {
                    upstream
                        .request(session, method, params.as_deref(), timeout)
                        .await
                }
            })
            .await
        }
    };
    let none = || (Vec::new(), CacheHint::default());
    let (tools, tools_hint) = if capabilities.tools.is_some() {
        list(ListKind::Tools).await?
    } else {
        none()
    };
    let (prompts, prompts_hint) = if capabilities.prompts.is_some() {
        list(ListKind::Prompts).await?
    } else {
        none()
    };
    let ((resources, resources_hint), (templates, templates_hint)) =
        if capabilities.resources.is_some() {
            (
                list(ListKind::Resources).await?,
                list(ListKind::Templates).await.unwrap_or_else(|_| none()),
            )
        } else {
            (none(), none())
        };
    let (tools, param_headers) = annotated_tools(upstream.name(), tools);
    Ok(Catalog {
        initialize: init,
        era: crate::revision::Era::of(&protocol_version),
        discover: discovered,
        capabilities,
        protocol_version,
        tools,
        prompts,
        resources,
        templates,
        hints: [tools_hint, prompts_hint, resources_hint, templates_hint],
        param_headers,
    })
}

/// The tools whose `x-mcp-header` annotations are valid, and those annotations; a tool
/// with an invalid one is left out, as the revision tells clients to.
fn annotated_tools(
    connection: &str,
    tools: Vec<catalog::Item>,
) -> (
    Vec<catalog::Item>,
    HashMap<String, Vec<super::era::ParamHeader>>,
) {
    let mut annotated = HashMap::new();
    let mut kept = Vec::with_capacity(tools.len());
    for tool in tools {
        if !tool.raw.get().contains("x-mcp-header") {
            kept.push(tool);
            continue;
        }
        let parsed = serde_json::from_str::<serde_json::Value>(tool.raw.get())
            .map_err(|e| e.to_string())
            .and_then(|v| super::era::param_headers(&v));
        match parsed {
            Ok(headers) => {
                if !headers.is_empty() {
                    annotated.insert(tool.key.clone(), headers);
                }
                kept.push(tool);
            }
            Err(reason) => {
                tracing::warn!(connection, tool = %tool.key, %reason, "tool left out: invalid x-mcp-header");
            }
        }
    }
    (kept, annotated)
}

/// Watches a dialled upstream; returns why it stopped being usable.
async fn watch_loop(
    upstream: &Arc<Upstream>,
    watch: &Watch,
    reports: &mpsc::UnboundedSender<Report>,
) -> UpstreamError {
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.reset();
    let mut refresh = tokio::time::interval(REFRESH_EVERY);
    refresh.reset();
    match watch {
        Watch::Http(session) => {
            let mut stream = match upstream.listen(session).await {
                Ok(s) => s,
                Err(e) => return e,
            };
            loop {
                let live = stream.is_some();
                let next = async {
                    match stream.as_mut() {
                        Some(s) => s.next_message().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    msg = next => match msg {
                        Some(Ok(bytes)) => {
                            if is_list_changed(&bytes)
                                && let Err(e) = rediscover(upstream, session, reports).await
                            {
                                return e;
                            }
                            answer_own(upstream, session, &bytes).await;
                        }
                        // The stream ended: the upstream went away or dropped it; a
                        // liveness check tells which, and a fresh stream follows.
                        Some(Err(_)) | None => {
                            if let Err(e) = upstream.check_alive(session).await {
                                return e;
                            }
                            stream = match upstream.listen(session).await {
                                Ok(s) => s,
                                Err(e) => return e,
                            };
                        }
                    },
                    _ = ping.tick() => {
                        if let Err(e) = upstream.check_alive(session).await {
                            return e;
                        }
                    }
                    _ = refresh.tick(), if !live => {
                        if let Err(e) = rediscover(upstream, session, reports).await {
                            return e;
                        }
                    }
                }
            }
        }
        Watch::Channel(ch) => {
            let mut unsolicited = ch.subscribe();
            let closed = ch.closed();
            let session = UpstreamSession {
                id: None,
                protocol_version: upstream
                    .catalog()
                    .map(|c| c.protocol_version.clone())
                    .unwrap_or_default(),
                revision: upstream.revision(),
                url: None,
                subject: None,
            };
            loop {
                tokio::select! {
                    () = closed.cancelled() => return ch.failure(),
                    msg = unsolicited.recv() => {
                        if let Ok(bytes) = msg
                            && is_list_changed(&bytes)
                            && let Err(e) = rediscover(upstream, &session, reports).await
                        {
                            return e;
                        }
                    }
                    _ = ping.tick() => {
                        if let Err(e) = upstream.request(&session, "ping", None, upstream.config().connect_timeout).await {
                            return e;
                        }
                    }
                }
            }
        }
    }
}

/// Answers a request an upstream sends on Hawser's own session: roots are none, the
/// rest is not something Hawser's own session does.
async fn answer_own(upstream: &Arc<Upstream>, session: &UpstreamSession, bytes: &[u8]) {
    let Ok(msg) = Message::parse(bytes) else {
        return;
    };
    let (jsonrpc::Kind::Request, Some(id)) = (msg.kind(), msg.id) else {
        return;
    };
    let reply = if msg.method() == "roots/list" {
        jsonrpc::result(id.get(), r#"{"roots":[]}"#)
    } else {
        jsonrpc::error(
            Some(id.get()),
            jsonrpc::code::METHOD_NOT_FOUND,
            "not supported by the gateway's discovery session",
            None,
        )
    };
    let _ = upstream.send(session, reply).await;
}

fn is_list_changed(bytes: &[u8]) -> bool {
    Message::parse(bytes).is_ok_and(|m| {
        matches!(
            m.method(),
            "notifications/tools/list_changed"
                | "notifications/prompts/list_changed"
                | "notifications/resources/list_changed"
        )
    })
}

async fn rediscover(
    upstream: &Arc<Upstream>,
    session: &UpstreamSession,
    reports: &mpsc::UnboundedSender<Report>,
) -> Result<(), UpstreamError> {
    let Some(old) = upstream.catalog() else {
        return Ok(());
    };
    let catalog = discover(
        upstream,
        session,
        old.initialize.clone(),
        old.discover.clone(),
    )
    .await?;
    upstream.catalog.store(Some(Arc::new(catalog)));
    let _ = reports.send(Report::Catalog {
        upstream: upstream.clone(),
    });
    Ok(())
}
