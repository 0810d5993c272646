//! Which protocol revision a request speaks: the revisions Hawser accepts, the one an
//! `initialize` gets, and the check of the `MCP-Protocol-Version` header.

use axum::http::HeaderMap;

use super::error::{Error, Result};
use crate::headers::MCP_PROTOCOL_VERSION;

/// Protocol revisions Hawser accepts from clients, newest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];

/// The version to answer an `initialize` asking for `requested`.
pub fn negotiate(requested: Option<&str>) -> &'static str {
    requested
        .and_then(|r| SUPPORTED_VERSIONS.iter().find(|v| **v == r))
        .copied()
        .unwrap_or(SUPPORTED_VERSIONS[0])
}

/// Refuses a request whose `MCP-Protocol-Version` names a revision Hawser does not
/// speak (a request without the header is taken as the session's revision).
pub fn check_header(headers: &HeaderMap) -> Result<()> {
    let Some(version) = headers.get(MCP_PROTOCOL_VERSION) else {
        return Ok(());
    };
    let version = String::from_utf8_lossy(version.as_bytes());
    if SUPPORTED_VERSIONS.contains(&version.as_ref()) {
        return Ok(());
    }
    Err(Error::UnsupportedVersion {
        version: version.into_owned(),
        supported: SUPPORTED_VERSIONS.join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_keeps_a_supported_version_and_offers_the_newest_otherwise() {
        assert_eq!(negotiate(Some("2025-06-18")), "2025-06-18");
        assert_eq!(negotiate(Some("2024-11-05")), "2025-11-25");
        assert_eq!(negotiate(None), "2025-11-25");
    }

    #[test]
    fn an_unknown_version_header_is_refused_with_the_supported_list() {
        let mut h = HeaderMap::new();
        assert!(check_header(&h).is_ok());
        h.insert(MCP_PROTOCOL_VERSION, "2025-06-18".parse().unwrap());
        assert!(check_header(&h).is_ok());
        h.insert(MCP_PROTOCOL_VERSION, "1999-01-01".parse().unwrap());
        let e = check_header(&h).unwrap_err().to_string();
        assert!(
            e.contains("\"1999-01-01\"") && e.contains("2025-03-26"),
            "{e}"
        );
    }
}
