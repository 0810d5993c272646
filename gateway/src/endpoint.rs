//! [`Endpoint`]: which MCP endpoint a request, a session or a list change is for.

use std::fmt;

/// `/mcp` (every connection, names prefixed) or `/mcp/{connection}` (one
/// connection, names unchanged).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    Aggregated,
    Connection(String),
}

impl Endpoint {
    /// The endpoint a stored session names: `""` is the aggregated endpoint.
    pub fn from_stored(s: &str) -> Self {
        if s.is_empty() {
            Self::Aggregated
        } else {
            Self::Connection(s.to_owned())
        }
    }

    /// How the store writes it (see [`Self::from_stored`]).
    pub fn as_stored(&self) -> &str {
        match self {
            Self::Aggregated => "",
            Self::Connection(name) => name,
        }
    }

    /// The connection of a per-connection endpoint.
    pub fn connection(&self) -> Option<&str> {
        match self {
            Self::Aggregated => None,
            Self::Connection(name) => Some(name),
        }
    }

    pub fn is_aggregated(&self) -> bool {
        matches!(self, Self::Aggregated)
    }
}

/// The path: `/mcp` or `/mcp/{connection}`.
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Aggregated => f.write_str("/mcp"),
            Self::Connection(name) => write!(f, "/mcp/{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_form_round_trips() {
        for e in [Endpoint::Aggregated, Endpoint::Connection("ns/gh".into())] {
            assert_eq!(Endpoint::from_stored(e.as_stored()), e);
        }
        assert_eq!(Endpoint::Connection("gh".into()).to_string(), "/mcp/gh");
    }
}
