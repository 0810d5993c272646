//! Who may see and call what: `McpPolicy` rules evaluated per caller.
//!
//! A connection no policy targets is open to every caller (unless
//! `policy.defaultAction: deny`); once a policy targets it, only what some rule
//! allows is allowed, and a matching deny wins over any allow (NetworkPolicy-like).
//! The front asks two questions: may this caller *see* an item (lists; a hidden item
//! answers exactly like an unknown one), and may it *call* it with these arguments.
//! Policies live in the store; every replica holds them compiled and re-reads them
//! when the bus says they changed, so no decision costs a store round-trip.

pub mod compile;
mod eval;
mod limits;
mod patterns;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use hawser_crds::Effect;
use serde_json::value::RawValue;

use compile::{Compiled, Rule};
pub use compile::{PolicyError, check};
use patterns::Patterns;

use crate::identity::Identity;
use crate::store::{BusMessage, Store, StoreEvent};
use crate::view::{EndpointView, Entry, ListKind};

/// What an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tool,
    Prompt,
    Resource,
}

impl Kind {
    pub fn of_list(kind: ListKind) -> Self {
        match kind {
            ListKind::Tools => Self::Tool,
            ListKind::Prompts => Self::Prompt,
            _ => Self::Resource,
        }
    }
}

/// What a call carries that conditions may read.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts<'a> {
    /// The call's `arguments` (JSON).
    pub args: Option<&'a RawValue>,
    pub client_address: Option<&'a str>,
    /// The tool as its upstream lists it (JSON), for `tool.annotations`.
    pub tool: Option<&'a RawValue>,
}

/// Which rule decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decider {
    pub policy: String,
    /// `None`: no rule of the connection's policies allowed it.
    pub rule: Option<usize>,
}

/// A decision on a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed; by which rule when a policy governs the connection.
    Allow(Option<Decider>),
    /// Not visible to this caller: answered like an unknown name. The deny rule that
    /// hides it, if one does (else no rule allows it).
    Hidden(Option<Decider>),
    /// Visible but refused (a condition said no, or a deny matched).
    Denied(Decider),
}

/// One compiled set of policies.
#[derive(Default)]
struct Snapshot {
    policies: Vec<Compiled>,
    /// Connection → indices into `policies`.
    by_connection: HashMap<String, Vec<usize>>,
    /// Connections a broken stored policy targets: closed until it is fixed.
    broken: HashMap<String, String>,
    generation: u64,
    /// What was loaded (names, targets, specs), to tell a reload that changed
    /// something from one that did not.
    content: u64,
}

/// (endpoint view, list kind, policy generation, caller signature).
type ViewKey = (usize, usize, u64, Vec<u64>);

/// The policies every request is checked against.
pub struct Policies {
    store: Arc<dyn Store>,
    default_deny: bool,
    current: ArcSwap<Snapshot>,
    /// (endpoint view, list kind, generation, caller signature) → filtered list.
    views: Mutex<HashMap<ViewKey, Bytes>>,
    limiter: limits::Limiter,
    /// The generation of the policies in force, bumped only when they changed.
    changed: tokio::sync::watch::Sender<u64>,
}

/// A call refused by a rate limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    pub policy: String,
    pub retry_after: Duration,
}

/// Most filtered lists kept.
const VIEW_CACHE: usize = 4096;

fn matches(set: &Option<Patterns>, value: &str) -> bool {
    set.as_ref().is_none_or(|s| s.is_match(value))
}

impl Rule {
    fn matches_caller(&self, caller: &Identity) -> bool {
        self.subjects
            .as_ref()
            .is_none_or(|s| s.is_match(&caller.subject))
            && self
                .groups
                .as_ref()
                .is_none_or(|g| caller.groups.iter().any(|group| g.is_match(group)))
    }

    fn covers_item(&self, kind: Kind, item: &str) -> bool {
        let lists = [&self.tools, &self.prompts, &self.resources];
        if lists.iter().all(|l| l.is_none()) {
            return true;
        }
        let list = match kind {
            Kind::Tool => &self.tools,
            Kind::Prompt => &self.prompts,
            Kind::Resource => &self.resources,
        };
        list.as_ref().is_some_and(|s| s.is_match(item))
    }
}

/// One rule that decides who may call a tool, in words (the console shows them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub policy: String,
    /// The rule's index in its policy, as `explain` names it.
    pub rule: usize,
    pub allow: bool,
    /// "everyone", or the subjects and groups the rule names.
    pub who: String,
    /// The rule's `when:`, if it has one.
    pub when: Option<String>,
}

impl Policies {
    pub fn new(
        store: Arc<dyn Store>,
        default_deny: bool,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            limiter: limits::Limiter::new(store.clone(), metrics),
            store,
            default_deny,
            current: ArcSwap::from_pointee(Snapshot::default()),
            views: Mutex::new(HashMap::new()),
            changed: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Changes to the policies in force (their generation), for those who must tell
    /// callers their views changed.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Re-reads every policy from the store.
    pub async fn load(&self) -> crate::store::Result<()> {
        let stored = self.store.list_policies().await?;
        let content = content_of(&stored);
        if self.current.load().generation > 0 && self.current.load().content == content {
            // The periodic re-read found what is in force: keep the views cached.
            return Ok(());
        }
        let generation = self.current.load().generation + 1;
        let mut snapshot = Snapshot {
            generation,
            content,
            ..Snapshot::default()
        };
        for p in stored {
            let compiled = match &p.spec {
                Ok(spec) => compile::compile(&p.name, spec, p.connections.clone())
                    .map_err(|e| e.to_string()),
                Err(e) => Err(format!("unreadable: {e}")),
            };
            match compiled {
                Ok(c) => {
                    let i = snapshot.policies.len();
                    for conn in &c.connections {
                        snapshot
                            .by_connection
                            .entry(conn.clone())
                            .or_default()
                            .push(i);
                    }
                    snapshot.policies.push(c);
                }
                Err(error) => {
                    tracing::error!(policy = %p.name, %error, "policy not loaded: the connections it targets refuse every call until it is fixed");
                    for conn in &p.connections {
                        snapshot.broken.insert(conn.clone(), p.name.clone());
                    }
                }
            }
        }
        self.current.store(Arc::new(snapshot));
        if let Ok(mut views) = self.views.lock() {
            views.clear();
        }
        self.limiter.reset();
        self.changed.send_replace(generation);
        Ok(())
    }

    /// A fingerprint of what `caller` sees in list `kind` of `endpoint`: equal
    /// fingerprints, equal lists (for telling a caller their view changed).
    pub fn fingerprint(&self, caller: &Identity, endpoint: &EndpointView, kind: ListKind) -> u64 {
        let governed = |e: &Entry| self.governs(&e.connection);
        if !endpoint.entries(kind).iter().any(governed) {
            return endpoint.fingerprint(kind);
        }
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.list(caller, endpoint, kind).hash(&mut h);
        h.finish()
    }

    /// Loads now, then follows changes (bus, resync, every 30 s) until `stop`.
    pub fn spawn(self: &Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let me = self.clone();
        let mut events = self.store.subscribe();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            tick.tick().await;
            me.limiter.maintain().await;
            loop {
                let reload = tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => true,
                    event = events.recv() => match event {
                        Ok(StoreEvent::Bus(BusMessage::PoliciesChanged) | StoreEvent::Resync) => true,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                        Ok(_) => false,
                    },
                };
                if reload {
                    me.limiter.maintain().await;
                }
                if reload && let Err(error) = me.load().await {
                    tracing::warn!(%error, "cannot re-read policies; keeping the ones known");
                }
            }
        });
    }

    /// Whether any policy (or `defaultAction: deny`) governs `connection`.
    pub fn governs(&self, connection: &str) -> bool {
        let s = self.current.load();
        self.default_deny
            || s.by_connection.contains_key(connection)
            || s.broken.contains_key(connection)
    }

    /// The decision on `caller` using item `name` of `connection`. Without `facts`
    /// (a list), conditions are not evaluated: an allow with a condition shows the
    /// item, a deny with one does not hide it.
    pub fn decide(
        &self,
        caller: &Identity,
        connection: &str,
        kind: Kind,
        name: &str,
        facts: Option<&Facts<'_>>,
    ) -> Decision {
        let s = self.current.load();
        if let Some(policy) = s.broken.get(connection) {
            return match facts {
                None => Decision::Hidden(None),
                Some(_) => Decision::Denied(Decider {
                    policy: policy.clone(),
                    rule: None,
                }),
            };
        }
        let Some(indices) = s.by_connection.get(connection) else {
            return if self.default_deny {
                Decision::Hidden(None)
            } else {
                Decision::Allow(None)
            };
        };
        let mut allowed: Option<Decider> = None;
        let mut refused: Option<Decider> = None;
        let none = Facts::default();
        let mut scope = eval::Scope::new(caller, connection, name, facts.unwrap_or(&none));
        for &i in indices {
            let policy = &s.policies[i];
            for (r, rule) in policy.rules.iter().enumerate() {
                if !rule.covers_item(kind, name) || !rule.matches_caller(caller) {
                    continue;
                }
                // One allow is enough; only denies must all be looked at.
                if rule.effect == Effect::Allow && allowed.is_some() {
                    continue;
                }
                let decider = || Decider {
                    policy: policy.name.clone(),
                    rule: Some(r),
                };
                // None: not evaluated (a list) or the condition failed to run.
                let holds = match (&rule.when, facts) {
                    (None, _) => Some(true),
                    (Some(_), None) => None,
                    (Some(c), Some(_)) => scope.holds(c),
                };
                match rule.effect {
                    Effect::Deny => match (holds, facts) {
                        (Some(true), None) => return Decision::Hidden(Some(decider())),
                        (Some(true), Some(_)) => return Decision::Denied(decider()),
                        // A deny whose condition cannot be evaluated on a call denies
                        // (fail closed); in a list it does not hide.
                        (None, Some(_)) => return Decision::Denied(decider()),
                        _ => {}
                    },
                    Effect::Allow => match (holds, facts) {
                        (Some(true), _) | (None, None) => {
                            allowed.get_or_insert_with(decider);
                        }
                        _ => {
                            refused.get_or_insert_with(decider);
                        }
                    },
                }
            }
        }
        match (allowed, refused, facts) {
            (Some(d), _, _) => Decision::Allow(Some(d)),
            (None, Some(r), Some(_)) => Decision::Denied(r),
            _ => Decision::Hidden(None),
        }
    }

    /// Whether `caller` sees item `name` of `connection` in lists.
    pub fn visible(&self, caller: &Identity, connection: &str, kind: Kind, name: &str) -> bool {
        matches!(
            self.decide(caller, connection, kind, name, None),
            Decision::Allow(_)
        )
    }

    /// The decision on a call (a hidden item first: it is answered as unknown): what
    /// `decide` says without facts and then, if the item is seen, with them, made in
    /// one walk over the rules.
    pub fn check_call(
        &self,
        caller: &Identity,
        connection: &str,
        kind: Kind,
        name: &str,
        facts: &Facts<'_>,
    ) -> Decision {
        // One snapshot of the policies for the whole decision.
        let s = self.current.load();
        if s.broken.contains_key(connection) {
            return Decision::Hidden(None);
        }
        let Some(indices) = s.by_connection.get(connection) else {
            return if self.default_deny {
                Decision::Hidden(None)
            } else {
                Decision::Allow(None)
            };
        };
        // Seen in lists: an allow matches (held or not) and no deny without a condition.
        let mut seen = false;
        // The call: the first deny that holds (or cannot be evaluated: fail closed),
        // else the first allow that holds, else the first that does not.
        let mut denied: Option<Decider> = None;
        let mut allowed: Option<Decider> = None;
        let mut refused: Option<Decider> = None;
        let mut scope = eval::Scope::new(caller, connection, name, facts);
        for &i in indices {
            let policy = &s.policies[i];
            for (r, rule) in policy.rules.iter().enumerate() {
                if !rule.covers_item(kind, name) || !rule.matches_caller(caller) {
                    continue;
                }
                let decider = || Decider {
                    policy: policy.name.clone(),
                    rule: Some(r),
                };
                match (&rule.effect, &rule.when) {
                    (Effect::Deny, None) => return Decision::Hidden(Some(decider())),
                    (Effect::Deny, Some(c)) => {
                        if denied.is_none() && scope.holds(c) != Some(false) {
                            denied = Some(decider());
                        }
                    }
                    (Effect::Allow, when) => {
                        seen = true;
                        // One allow is enough, and none counts once a deny holds.
                        if allowed.is_some() || denied.is_some() {
                            continue;
                        }
                        match when {
                            Some(c) if scope.holds(c) != Some(true) => {
                                refused.get_or_insert_with(decider);
                            }
                            _ => allowed = Some(decider()),
                        }
                    }
                }
            }
        }
        match (seen, denied, allowed, refused) {
            (false, ..) => Decision::Hidden(None),
            (true, Some(d), ..) | (true, None, None, Some(d)) => Decision::Denied(d),
            (true, None, Some(a), _) => Decision::Allow(Some(a)),
            (true, None, None, None) => Decision::Hidden(None),
        }
    }

    /// Takes a token from every rate limit of `connection`'s policies that covers
    /// `tool`; the first limit that has none refuses the call.
    pub async fn limit(
        &self,
        caller: &Identity,
        connection: &str,
        tool: &str,
        client_address: Option<&str>,
    ) -> Result<(), Limited> {
        let s = self.current.load_full();
        let Some(indices) = s.by_connection.get(connection) else {
            return Ok(());
        };
        for &i in indices {
            let policy = &s.policies[i];
            for (j, limit) in policy.rate_limits.iter().enumerate() {
                if !matches(&limit.tools, tool) {
                    continue;
                }
                let key = bucket_key(
                    &policy.name,
                    j,
                    &limit.by,
                    caller,
                    connection,
                    tool,
                    client_address,
                );
                if let Err(retry_after) = self.limiter.take(&key, limit.rate, limit.burst).await {
                    return Err(Limited {
                        policy: policy.name.clone(),
                        retry_after,
                    });
                }
            }
        }
        Ok(())
    }

    /// The rules of the policies on `connection` that cover `tool`, in order: who
    /// they let call it, or keep from calling it. Empty when no policy governs it.
    pub fn who_may_call(&self, connection: &str, tool: &str) -> Vec<Grant> {
        let s = self.current.load();
        let Some(indices) = s.by_connection.get(connection) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for &i in indices {
            let policy = &s.policies[i];
            for (j, rule) in policy.rules.iter().enumerate() {
                if !rule.covers_item(Kind::Tool, tool) {
                    continue;
                }
                let about = &rule.about;
                let mut who = Vec::new();
                if !about.subjects.is_empty() {
                    who.push(format!("subjects {}", about.subjects.join(", ")));
                }
                if !about.groups.is_empty() {
                    who.push(format!("groups {}", about.groups.join(", ")));
                }
                out.push(Grant {
                    policy: policy.name.clone(),
                    rule: j,
                    allow: rule.effect == Effect::Allow,
                    who: if who.is_empty() {
                        "everyone".to_owned()
                    } else {
                        who.join("; ")
                    },
                    when: about.when.clone(),
                });
            }
        }
        out
    }

    /// A list `result` for `caller`: the prebuilt one when no policy governs any of
    /// the endpoint's connections, else filtered (cached per distinct caller outcome).
    pub fn list(&self, caller: &Identity, endpoint: &EndpointView, kind: ListKind) -> Bytes {
        let governed = |e: &Entry| self.governs(&e.connection);
        if !endpoint.entries(kind).iter().any(governed) {
            return endpoint.list(kind);
        }
        let s = self.current.load();
        let key = (
            std::ptr::from_ref(endpoint) as usize,
            kind.index(),
            s.generation,
            self.signature(&s, caller),
        );
        if let Ok(views) = self.views.lock()
            && let Some(list) = views.get(&key)
        {
            return list.clone();
        }
        let item = Kind::of_list(kind);
        let list = endpoint.filtered(kind, |e| {
            !self.governs(&e.connection) || self.visible(caller, &e.connection, item, &e.name)
        });
        if let Ok(mut views) = self.views.lock() {
            if views.len() >= VIEW_CACHE {
                views.clear();
            }
            views.insert(key, list.clone());
        }
        list
    }

    /// Which rules' caller parts match `caller`, as bits: callers with equal
    /// signatures see the same lists.
    fn signature(&self, s: &Snapshot, caller: &Identity) -> Vec<u64> {
        let mut bits = Vec::new();
        let mut n = 0usize;
        for p in &s.policies {
            for r in &p.rules {
                if n.is_multiple_of(64) {
                    bits.push(0u64);
                }
                if r.matches_caller(caller)
                    && let Some(last) = bits.last_mut()
                {
                    *last |= 1 << (n % 64);
                }
                n += 1;
            }
        }
        bits
    }

    /// The names of the policies loaded, and of those that failed, for status.
    pub fn names(&self) -> (Vec<String>, Vec<String>) {
        let s = self.current.load();
        let mut broken: Vec<String> = s.broken.values().cloned().collect();
        broken.sort();
        broken.dedup();
        (s.policies.iter().map(|p| p.name.clone()).collect(), broken)
    }
}

/// A hash of the stored policies: names, targets and specs.
fn content_of(stored: &[crate::store::StoredPolicy]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for p in stored {
        p.name.hash(&mut h);
        p.connections.hash(&mut h);
        match &p.spec {
            Ok(spec) => serde_json::to_string(spec).unwrap_or_default().hash(&mut h),
            Err(e) => e.hash(&mut h),
        }
    }
    h.finish()
}

/// The bucket of limit `index` of `policy` for this call: one per distinct value of
/// what the limit counts by.
fn bucket_key(
    policy: &str,
    index: usize,
    by: &[hawser_crds::LimitKey],
    caller: &Identity,
    connection: &str,
    tool: &str,
    client_address: Option<&str>,
) -> String {
    use hawser_crds::LimitKey;
    let mut key = format!("{policy}#{index}");
    for k in by {
        key.push('|');
        match k {
            LimitKey::Subject => key.push_str(&caller.subject),
            LimitKey::Group => {
                let mut groups = caller.groups.clone();
                groups.sort();
                key.push_str(&groups.join(","));
            }
            LimitKey::Connection => key.push_str(connection),
            LimitKey::Tool => key.push_str(tool),
            LimitKey::ClientAddress => key.push_str(client_address.unwrap_or_default()),
        }
    }
    key
}

#[cfg(test)]
mod tests;
