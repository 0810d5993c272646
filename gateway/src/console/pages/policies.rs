//! `/ui/policies` (admins): the stored policies with their rules, and the explain
//! form: may this caller call this tool, and which policy and rule decided.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use crate::admin::policies::{Explained, explain_call};
use crate::console::layout::{Nav, badge, page};
use crate::console::session::Session;
use crate::console::{Console, Error};

#[derive(Debug, Default, Deserialize)]
pub struct Ask {
    #[serde(default)]
    subject: String,
    #[serde(default)]
    groups: String,
    #[serde(default)]
    tool: String,
    #[serde(default)]
    connection: String,
}

fn globs(list: &[String]) -> String {
    if list.is_empty() {
        "any".to_owned()
    } else {
        list.join(", ")
    }
}

pub async fn show(
    State(console): State<Arc<Console>>,
    session: Session,
    Query(ask): Query<Ask>,
) -> Result<Response, Error> {
    session.require_admin()?;
    let admin = &console.admin;
    let (loaded, _) = admin.policies.names();
    let mut all = admin.store.list_policies().await?;
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let answer = (!ask.subject.trim().is_empty() && !ask.tool.trim().is_empty()).then(|| {
        let groups = ask
            .groups
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect();
        explain_call(
            admin,
            ask.subject.trim(),
            groups,
            ask.tool.trim(),
            Some(ask.connection.trim().to_owned()),
            None,
        )
    });
    let content = html! {
        h2 #explain { "Explain a decision" }
        form.filters method="get" action="/ui/policies" aria-labelledby="explain" {
            label { "Subject" input type="text" name="subject" required value=(ask.subject); }
            label { "Groups (comma-separated)" input type="text" name="groups" value=(ask.groups); }
            label { "Tool (prefix__tool, or the tool's own name)" input type="text" name="tool" required value=(ask.tool); }
            label { "Connection (optional)" input type="text" name="connection" value=(ask.connection); }
            div.actions { button type="submit" { "Explain" } }
        }
        @if let Some(a) = &answer {
            div.notice role="status" #verdict { (verdict(&ask, a)) }
        }
        h2 { "Policies (" (all.len()) ")" }
        @if all.is_empty() {
            p.muted { "No policy: connections follow policy.defaultAction." }
        }
        @for p in &all {
            section.card {
                h2 { (p.name) " "
                    @if loaded.contains(&p.name) { (badge("in force", "ok")) } @else { (badge("not loaded", "bad")) } }
                p.muted { "Source " (p.source.as_str()) "; targets " (globs(&p.connections)) }
                @match &p.spec {
                    Err(e) => p.error-text { (e) },
                    Ok(spec) => {
                        @if spec.rules.is_empty() { p { "No rule: nothing is allowed." } }
                        @else {
                            div.table-wrap { table {
                                thead { tr { th scope="col" .num { "Rule" } th scope="col" { "Effect" } th scope="col" { "Subjects" } th scope="col" { "Groups" } th scope="col" { "Tools" } th scope="col" { "When" } } }
                                tbody { @for (i, r) in spec.rules.iter().enumerate() { tr {
                                    td.num { (i) }
                                    td { (format!("{:?}", r.effect).to_lowercase()) }
                                    td { (globs(&r.subjects)) }
                                    td { (globs(&r.groups)) }
                                    td { (r.tools.as_deref().map_or_else(|| "any".to_owned(), globs)) }
                                    td { @if let Some(w) = &r.when { code { (w) } } }
                                } } }
                            } }
                        }
                    }
                }
            }
        }
    };
    Ok(page(&session, Nav::Policies, "Policies", content))
}

fn verdict(ask: &Ask, answer: &Result<Explained, crate::admin::Error>) -> Markup {
    match answer {
        Err(e) => html! { span.error-text { (e.to_string()) } },
        Ok(e) => {
            let why = match (&e.decider, e.governed) {
                (_, false) => "no policy targets this connection".to_owned(),
                (Some((policy, Some(rule))), _) => format!("policy {policy}, rule {rule}"),
                (Some((policy, None)), _) => format!("policy {policy}: no rule allows it"),
                (None, true) => "no rule allows it".to_owned(),
            };
            html! {
                "May " strong { (ask.subject.trim()) } " call " code { (e.connection) "__" (e.tool) } "? "
                @if e.allowed { (badge("yes", "ok")) } @else { (badge("no", "bad")) }
                ": " (why)
            }
        }
    }
}
