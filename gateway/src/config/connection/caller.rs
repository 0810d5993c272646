//! `identity:` and `forwardHeaders:` of a connection, checked: what the upstream
//! learns about the caller, and which of the client's headers it sees.

use std::time::Duration;

use hawser_crds::CallerIdentity;
use http::HeaderName;
use url::Url;

use super::{SpecError, inline};
use crate::crypto::Secret;

/// Headers never passed on, whatever `forwardHeaders` says: credentials, routing,
/// framing, the MCP headers Hawser sets itself.
const NEVER: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "host",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
    "content-length",
    "content-type",
    "accept",
    "x-request-id",
    "traceparent",
    "tracestate",
];

/// What the upstream learns about the caller.
#[derive(Debug, Clone, Default)]
pub struct CallerPolicy {
    /// Client headers passed on.
    pub forward: Vec<HeaderName>,
    pub mode: CallerMode,
}

/// `identity.mode`, resolved.
#[derive(Debug, Clone, Default)]
pub enum CallerMode {
    #[default]
    None,
    Headers {
        subject: HeaderName,
        groups: HeaderName,
    },
    Jwt {
        header: HeaderName,
        audience: String,
        ttl: Duration,
    },
    Exchange(Exchange),
}

/// RFC 8693 token exchange settings.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub token_url: Option<Url>,
    pub client_id: String,
    pub client_secret: Secret,
    pub audience: Option<String>,
    pub resource: Option<String>,
    pub scope: Option<String>,
    pub header: HeaderName,
}

fn header(name: Option<&str>, default: &'static str, field: &str) -> Result<HeaderName, SpecError> {
    let name = name.unwrap_or(default);
    let parsed = HeaderName::try_from(name)
        .map_err(|_| SpecError::new(field, format!("{name:?} is not a header name")))?;
    if NEVER.contains(&parsed.as_str()) && parsed != http::header::AUTHORIZATION {
        return Err(SpecError::new(
            field,
            format!("{name} is set by Hawser itself"),
        ));
    }
    Ok(parsed)
}

/// Checks `identity` and `forwardHeaders` of a connection at `url` (`None`: stdio).
pub fn resolve(
    identity: &CallerIdentity,
    forward: &[String],
    url: Option<&Url>,
) -> Result<CallerPolicy, SpecError> {
    let mut names = Vec::with_capacity(forward.len());
    for (i, name) in forward.iter().enumerate() {
        let field = format!("forwardHeaders[{i}]");
        let parsed = HeaderName::try_from(name.as_str())
            .map_err(|_| SpecError::new(&field, format!("{name:?} is not a header name")))?;
        if NEVER.contains(&parsed.as_str()) || parsed.as_str().starts_with("mcp-") {
            return Err(SpecError::new(
                &field,
                format!(
                    "{name} is never passed to an upstream (credentials, routing and MCP headers stay at the gateway)"
                ),
            ));
        }
        names.push(parsed);
    }
    let needs_http = |mode: &str| {
        url.ok_or_else(|| {
            SpecError::new(
                "identity.mode",
                format!("{mode} needs an HTTP upstream (stdio servers get no headers)"),
            )
        })
    };
    let mode = match identity {
        CallerIdentity::None => CallerMode::None,
        CallerIdentity::Headers {
            subject_header,
            groups_header,
        } => {
            needs_http("headers")?;
            CallerMode::Headers {
                subject: header(
                    subject_header.as_deref(),
                    "x-forwarded-user",
                    "identity.subjectHeader",
                )?,
                groups: header(
                    groups_header.as_deref(),
                    "x-forwarded-groups",
                    "identity.groupsHeader",
                )?,
            }
        }
        CallerIdentity::Jwt {
            header: name,
            audience,
            ttl,
        } => {
            let url = needs_http("jwt")?;
            let ttl = ttl.map_or(Duration::from_secs(300), |d| d.get());
            if ttl < Duration::from_secs(30) || ttl > Duration::from_secs(3600) {
                return Err(SpecError::new("identity.ttl", "between 30s and 1h"));
            }
            CallerMode::Jwt {
                header: header(name.as_deref(), "x-hawser-identity", "identity.header")?,
                audience: audience.clone().unwrap_or_else(|| url.to_string()),
                ttl,
            }
        }
        CallerIdentity::Exchange {
            token_url,
            client_id,
            client_secret,
            audience,
            resource,
            scope,
            header: name,
        } => {
            let url = needs_http("exchange")?;
            let token_url = token_url
                .as_deref()
                .map(|u| {
                    Url::parse(u).map_err(|e| SpecError::new("identity.tokenUrl", e.to_string()))
                })
                .transpose()?;
            if client_id.trim().is_empty() {
                return Err(SpecError::new("identity.clientId", "must not be empty"));
            }
            CallerMode::Exchange(Exchange {
                token_url,
                client_id: client_id.clone(),
                client_secret: Secret::new(inline(client_secret)),
                resource: resource
                    .clone()
                    .or_else(|| audience.is_none().then(|| url.to_string())),
                audience: audience.clone(),
                scope: scope.clone(),
                header: header(name.as_deref(), "authorization", "identity.header")?,
            })
        }
    };
    // A header the identity mode sets would be sent with the mode's value, not the
    // client's: listing it too is a contradiction, refused rather than half honoured.
    let set: &[&HeaderName] = match &mode {
        CallerMode::None => &[],
        CallerMode::Headers { subject, groups } => &[subject, groups],
        CallerMode::Jwt { header, .. } => &[header],
        CallerMode::Exchange(exchange) => &[&exchange.header],
    };
    if let Some(i) = names.iter().position(|n| set.contains(&n)) {
        return Err(SpecError::new(
            format!("forwardHeaders[{i}]"),
            format!(
                "{} is set by identity.mode for the caller; it cannot also be forwarded from the client",
                names[i]
            ),
        ));
    }
    Ok(CallerPolicy {
        forward: names,
        mode,
    })
}
