//! `McpConnectionStatus`: what the operator reports back on the resource.

use serde::{Deserialize, Serialize};

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// Condition types set on an `McpConnection`.
pub mod condition_types {
    /// The connection is up on the gateway replicas and its tools are served.
    pub const READY: &str = "Ready";
    /// The connection's row in the gateway store matches the resource.
    pub const SYNCED: &str = "Synced";
    /// The upstream credentials are usable (OAuth: a token is held).
    pub const AUTHORIZED: &str = "Authorized";
}

/// Observed state of an `McpConnection`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct McpConnectionStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Synced` and `Authorized`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Tools served from this connection (the most any gateway replica reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<i64>,
    /// Gateway replicas that report the connection ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i64>,
    /// Users who connected their own account (`auth.tokens: perUser` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_users: Option<i64>,
}
