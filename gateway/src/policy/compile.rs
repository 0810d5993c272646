//! A policy spec checked and compiled: globs built, CEL conditions parsed and their
//! variables checked, so evaluating a rule costs a few glob matches and, for a
//! condition, one CEL evaluation.

use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock};

use cel::IdedExpr;
use cel::common::ast::{EntryExpr, Expr, IdedEntryExpr};

use hawser_crds::{Effect, LimitKey, McpPolicySpec, PolicyRule};

use super::patterns::Patterns;

/// A policy that cannot be loaded: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PolicyError {
    pub field: String,
    pub message: String,
}

fn error(field: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError {
        field: field.into(),
        message: message.into(),
    }
}

/// The variables a condition may use.
pub const VARIABLES: [&str; 4] = ["caller", "tool", "args", "request"];

/// The CEL environment every condition is compiled and run in (the standard one).
pub static ENV: LazyLock<Arc<cel::Env>> = LazyLock::new(|| Arc::new(cel::Env::stdlib()));

/// A compiled `when:`.
pub struct Condition {
    pub program: cel::Program,
    /// Which of [`VARIABLES`] it reads: only those are converted for it.
    pub reads: [bool; 4],
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Condition").finish_non_exhaustive()
    }
}

/// A compiled rule.
#[derive(Debug)]
pub struct Rule {
    pub subjects: Option<Patterns>,
    pub groups: Option<Patterns>,
    pub tools: Option<Patterns>,
    pub prompts: Option<Patterns>,
    pub resources: Option<Patterns>,
    pub effect: Effect,
    pub when: Option<Condition>,
    /// Who the rule is for and its condition, as written (to show people).
    pub about: About,
}

/// A rule's caller parts and condition as the policy spells them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct About {
    pub subjects: Vec<String>,
    pub groups: Vec<String>,
    pub when: Option<String>,
}

/// A compiled rate limit.
#[derive(Debug)]
pub struct Limit {
    pub by: Vec<LimitKey>,
    pub tools: Option<Patterns>,
    /// Tokens per second.
    pub rate: f64,
    pub burst: f64,
    /// `requests`/`per`, for messages.
    pub label: String,
}

/// A compiled policy.
#[derive(Debug)]
pub struct Compiled {
    pub name: String,
    /// The connections it targets.
    pub connections: Vec<String>,
    pub rules: Vec<Rule>,
    pub rate_limits: Vec<Limit>,
}

fn globs(patterns: &[String], field: &str) -> Result<Patterns, PolicyError> {
    Patterns::new(patterns).map_err(|(at, why)| match at {
        Some(i) => {
            let pattern = patterns.get(i).map_or("", String::as_str);
            error(
                format!("{field}[{i}]"),
                format!("invalid glob {pattern:?}: {why}"),
            )
        }
        None => error(field, format!("invalid globs: {why}")),
    })
}

fn optional(patterns: &[String], field: &str) -> Result<Option<Patterns>, PolicyError> {
    if patterns.is_empty() {
        Ok(None)
    } else {
        globs(patterns, field).map(Some)
    }
}

/// Compiles a CEL condition, refusing unknown variables (a typo such as `arg.env`
/// would otherwise only fail when a call comes).
pub fn condition(source: &str, field: &str) -> Result<Condition, PolicyError> {
    if source.len() > 4096 {
        return Err(error(field, "longer than 4096 characters"));
    }
    let program = ENV.compile(source).map_err(|e| {
        let first = e.errors.first();
        let at = first.map_or(String::new(), |p| {
            format!(" at line {}, column {}", p.pos.0.max(1), p.pos.1 + 1)
        });
        let what = first.map_or_else(|| e.to_string(), |p| p.msg.clone());
        error(field, format!("invalid CEL{at}: {what}"))
    })?;
    let mut free = BTreeSet::new();
    free_variables(program.expression(), &mut Vec::new(), &mut free);
    if let Some(variable) = free.iter().find(|v| !VARIABLES.contains(v)) {
        return Err(error(
            field,
            format!("unknown variable {variable:?} (known: caller, tool, args, request)"),
        ));
    }
    let reads = VARIABLES.map(|v| free.contains(v));
    Ok(Condition { program, reads })
}

/// The variables `e` reads from the context: its identifiers, less those a macro's
/// comprehension binds where it binds them (`r` in `args.repos.all(r, r != '')`).
fn free_variables<'e>(e: &'e IdedExpr, bound: &mut Vec<&'e str>, free: &mut BTreeSet<&'e str>) {
    let entries =
        |entries: &'e [IdedEntryExpr], bound: &mut Vec<&'e str>, free: &mut BTreeSet<&'e str>| {
            for entry in entries {
                match &entry.expr {
                    EntryExpr::StructField(f) => free_variables(&f.value, bound, free),
                    EntryExpr::MapEntry(m) => {
                        free_variables(&m.key, bound, free);
                        free_variables(&m.value, bound, free);
                    }
                }
            }
        };
    match &e.expr {
        // Names starting with `@` are the macros' own accumulators.
        Expr::Ident(name) => {
            if !name.starts_with('@') && !bound.contains(&name.as_str()) {
                free.insert(name);
            }
        }
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                free_variables(target, bound, free);
            }
            for arg in &call.args {
                free_variables(arg, bound, free);
            }
        }
        Expr::Comprehension(c) => {
            free_variables(&c.iter_range, bound, free);
            free_variables(&c.accu_init, bound, free);
            let outer = bound.len();
            bound.push(&c.iter_var);
            bound.extend(c.iter_var2.as_deref());
            bound.push(&c.accu_var);
            for inner in [&c.loop_cond, &c.loop_step, &c.result] {
                free_variables(inner, bound, free);
            }
            bound.truncate(outer);
        }
        Expr::List(list) => {
            for element in &list.elements {
                free_variables(element, bound, free);
            }
        }
        Expr::Map(map) => entries(&map.entries, bound, free),
        Expr::Struct(st) => entries(&st.entries, bound, free),
        Expr::Select(select) => free_variables(&select.operand, bound, free),
        Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn rule(r: &PolicyRule, field: &str) -> Result<Rule, PolicyError> {
    let kinds = |list: &Option<Vec<String>>, name: &str| match list {
        Some(patterns) => globs(patterns, &format!("{field}.{name}")).map(Some),
        None => Ok(None),
    };
    Ok(Rule {
        subjects: optional(&r.subjects, &format!("{field}.subjects"))?,
        groups: optional(&r.groups, &format!("{field}.groups"))?,
        tools: kinds(&r.tools, "tools")?,
        prompts: kinds(&r.prompts, "prompts")?,
        resources: kinds(&r.resources, "resources")?,
        effect: r.effect,
        when: r
            .when
            .as_deref()
            .map(|w| condition(w, &format!("{field}.when")))
            .transpose()?,
        about: About {
            subjects: r.subjects.clone(),
            groups: r.groups.clone(),
            when: r.when.clone(),
        },
    })
}

/// Checks a spec on its own (what the admin API and the operator refuse).
pub fn check(spec: &McpPolicySpec) -> Result<(), PolicyError> {
    compile("", spec, Vec::new()).map(|_| ())
}

/// Compiles policy `name` targeting `connections`.
pub fn compile(
    name: &str,
    spec: &McpPolicySpec,
    connections: Vec<String>,
) -> Result<Compiled, PolicyError> {
    if spec.target_refs.is_empty() {
        return Err(error("targetRefs", "name at least one connection"));
    }
    for (i, t) in spec.target_refs.iter().enumerate() {
        if t.name.is_some() == t.selector.is_some() {
            return Err(error(
                format!("targetRefs[{i}]"),
                "give exactly one of name and selector",
            ));
        }
    }
    if spec.rules.len() > 1000 {
        return Err(error("rules", "at most 1000 rules"));
    }
    let rules = spec
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| rule(r, &format!("rules[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut rate_limits = Vec::with_capacity(spec.rate_limits.len());
    for (i, limit) in spec.rate_limits.iter().enumerate() {
        if limit.requests == 0 {
            return Err(error(format!("rateLimits[{i}].requests"), "at least 1"));
        }
        let per = limit.per.get().as_secs_f64();
        if per <= 0.0 {
            return Err(error(format!("rateLimits[{i}].per"), "must be positive"));
        }
        let burst = limit.burst.unwrap_or(limit.requests);
        if burst == 0 {
            return Err(error(format!("rateLimits[{i}].burst"), "at least 1"));
        }
        rate_limits.push(Limit {
            by: limit.by.clone(),
            tools: optional(&limit.tools, &format!("rateLimits[{i}].tools"))?,
            rate: f64::from(limit.requests) / per,
            burst: f64::from(burst),
            label: format!("{} per {}", limit.requests, limit.per),
        });
    }
    Ok(Compiled {
        name: name.to_owned(),
        connections,
        rules,
        rate_limits,
    })
}
