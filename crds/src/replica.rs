//! What a gateway replica reports about a connection (its `connection_status` row):
//! the vocabulary the gateway writes and the operator reads, defined once so neither
//! side has to recognise the other's strings or messages.

use serde::{Deserialize, Serialize};

/// A connection's state on one gateway replica.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// Dialling and discovering.
    Connecting,
    /// Serving its tools.
    Ready,
    /// Unreachable or failing; the replica re-dials with back-off.
    Down,
    /// Needs an OAuth authorization nobody has given yet.
    AwaitingAuthorization,
    /// The stored spec cannot run on this replica (e.g. sealed with an unknown key).
    Invalid,
    /// Deleted: the replica no longer serves it.
    Removed,
}

impl ConnectionState {
    pub const ALL: [Self; 6] = [
        Self::Connecting,
        Self::Ready,
        Self::Down,
        Self::AwaitingAuthorization,
        Self::Invalid,
        Self::Removed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Ready => "ready",
            Self::Down => "down",
            Self::AwaitingAuthorization => "awaiting_authorization",
            Self::Invalid => "invalid",
            Self::Removed => "removed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an OAuth connection's upstream authorization stands on one replica.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum AuthState {
    /// A usable token is held.
    Authorized,
    /// An administrator must authorize the upstream.
    AwaitingAuthorization,
}

impl AuthState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorized => "authorized",
            Self::AwaitingAuthorization => "awaiting_authorization",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Authorized, Self::AwaitingAuthorization]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// What kind of problem a replica found with a connection's names.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// Two connections expose the same name on the aggregated endpoint; one keeps it.
    NameCollision,
    /// A prefixed name is longer than MCP allows; it is not exposed on `/mcp`.
    NameTooLong,
}

/// A problem with a connection that does not stop it from serving.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Problem {
    pub kind: ProblemKind,
    /// For people: what happened and how to fix it.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_stored_names() {
        for s in ConnectionState::ALL {
            assert_eq!(ConnectionState::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
        }
        assert_eq!(ConnectionState::parse("nonsense"), None);
        assert_eq!(AuthState::parse("authorized"), Some(AuthState::Authorized));
    }
}
