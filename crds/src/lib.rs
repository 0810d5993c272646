//! The `McpConnection` schema.
//!
//! One set of types describes an upstream MCP server everywhere Hawser reads one:
//! the `McpConnection` custom resource (`spec`), the body of the admin API's
//! `PUT /api/v1/connections/{name}`, and each entry of the config file's
//! `connections:` list. Field names are camelCase and unknown fields are rejected,
//! so a typo is an error rather than a silently ignored setting.
//!
//! These types are the *raw* input; `hawser-gateway` resolves them into validated
//! types (parsed URL, compiled globs, resolved secrets) before use.
#![forbid(unsafe_code)]

mod duration;
mod policy;
mod replica;
mod secret;
mod spec;
mod status;

pub use duration::{Duration, ParseDurationError};
pub use policy::{
    Effect, LimitKey, McpPolicy, McpPolicySpec, McpPolicyStatus, PolicyRule, RateLimit, Selector,
    TargetRef,
};
pub use replica::{AuthState, ConnectionState, Problem, ProblemKind};
pub use secret::{SecretKeySelector, SecretValue};
pub use spec::{
    Auth, CallerIdentity, EndpointAuth, McpConnection, McpConnectionSpec, OAuth2Auth, OAuth2Grant,
    Timeouts, TokenOwnership, ToolFilter, Transport,
};
pub use status::{Condition, McpConnectionStatus, condition_types};

/// The CRD's API group.
pub const GROUP: &str = "hawser.dev";
/// The CRD's served and stored version.
pub const VERSION: &str = "v1alpha1";
