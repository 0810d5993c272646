//! `McpPolicySpec`: who may see and call which tools, prompts and resources of which
//! connections, and how often. One schema for the `McpPolicy` resource, the admin
//! API's `PUT /api/v1/policies/{name}` and the config file's `policies:` entries.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::Duration;

/// Access rules and rate limits for some connections.
// Two integer printer columns read to clippy as a repeated `type_` attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "hawser.dev",
    version = "v1alpha1",
    kind = "McpPolicy",
    namespaced,
    shortname = "mcpp",
    category = "hawser",
    status = "McpPolicyStatus",
    derive = "PartialEq",
    doc = "Who may see and call which tools of which McpConnections, and how often.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Connections",
        type_ = "integer",
        json_path = ".status.connections"
    ),
    printcolumn(name = "Rules", type_ = "integer", json_path = ".status.rules"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpPolicySpec {
    /// The policy's name. Only the config file's `policies:` entries carry it; the
    /// admin API takes it from the path and the CRD from `metadata.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub name: Option<String>,

    /// The connections this policy governs. Once any policy targets a connection,
    /// only what some rule allows is allowed there.
    #[schemars(length(min = 1))]
    pub target_refs: Vec<TargetRef>,

    /// Rules, in order. An explicit deny wins over any allow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<PolicyRule>,

    /// Request rates, shared by every gateway replica.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rate_limits: Vec<RateLimit>,
}

/// Connections a policy targets: one by name, or every `McpConnection` in the
/// policy's namespace whose labels match.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetRef {
    /// A connection's name (for resources: an `McpConnection` in the same namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `McpConnection`s whose labels include all of these (resources only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<Selector>,
}

/// A label selector (`matchLabels` only).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Selector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// Allow or deny.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Effect {
    #[default]
    Allow,
    Deny,
}

/// One rule: who (subjects, groups), what (tools, prompts, resources, as the upstream
/// names them), the effect, and an optional CEL condition.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyRule {
    /// Subject globs; empty: any subject.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    /// Group globs, any of the caller's groups matching; empty: any groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Tool name globs. With none of tools, prompts and resources the rule covers
    /// everything; otherwise only the kinds it lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
    /// Prompt name globs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts: Option<Vec<String>>,
    /// Resource URI globs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<String>>,
    /// `allow` (default) or `deny`.
    #[serde(default)]
    pub effect: Effect,
    /// A CEL expression over `caller` (subject, groups, method), `tool` (connection,
    /// name, annotations), `args` (the call's arguments) and `request` (time,
    /// clientAddress); the rule applies only when it is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
}

/// What a rate limit counts by.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum LimitKey {
    Subject,
    Group,
    Connection,
    Tool,
    ClientAddress,
}

/// `requests` per `per`, with bursts up to `burst`, counted separately for each
/// distinct value of `by`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    /// What is counted separately: e.g. `[subject]`, `[subject, tool]`; empty: one
    /// bucket for everyone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by: Vec<LimitKey>,
    /// Tool globs the limit applies to; empty: every tool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    #[schemars(range(min = 1))]
    pub requests: u32,
    pub per: Duration,
    /// Most requests at once; default `requests`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

/// Observed state of an `McpPolicy`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct McpPolicyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (accepted and served), with the reason when not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<crate::Condition>,
    /// Connections the policy targets now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<i64>,
    /// Number of rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<i64>,
}
