//! Who is calling, and from where: DNS-rebinding protection (Host and Origin
//! allow-lists) and client authentication.

use axum::http::{HeaderMap, StatusCode, header};
use sha2::{Digest, Sha256};

use super::reply::{self, Reply};
use crate::config::{ClientAuth, Security};

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
    /// How it was established: `none` or `bearer`.
    pub auth_type: &'static str,
}

/// Rejects requests whose `Host` or `Origin` is not allowed (DNS rebinding).
#[allow(clippy::result_large_err)]
pub fn check_origin(security: &Security, headers: &HeaderMap) -> Result<(), Reply> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !security.host_allowed(host) {
        return Err(reply::http_error(
            StatusCode::FORBIDDEN,
            &format!("Host {host:?} is not allowed (security.allowedHosts)"),
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        if !security.origin_allowed(origin) {
            return Err(reply::http_error(
                StatusCode::FORBIDDEN,
                &format!("Origin {origin:?} is not allowed (security.allowedOrigins)"),
            ));
        }
    }
    Ok(())
}

/// Authenticates the caller.
#[allow(clippy::result_large_err)]
pub fn authenticate(auth: &ClientAuth, headers: &HeaderMap) -> Result<Identity, Reply> {
    match auth {
        ClientAuth::None => Ok(Identity {
            subject: "anonymous".into(),
            auth_type: "none",
        }),
        ClientAuth::Bearer(tokens) => {
            let presented = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(str::trim);
            let Some(token) = presented.filter(|t| !t.is_empty()) else {
                return Err(reply::unauthorized("missing bearer token"));
            };
            let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            // Compare every entry in constant time per entry, so timing does not tell
            // which prefix matched.
            let mut found: Option<&str> = None;
            for (subject, expected) in tokens {
                if constant_time_eq(&digest, expected) {
                    found = Some(subject);
                }
            }
            match found {
                Some(subject) => Ok(Identity {
                    subject: subject.to_owned(),
                    auth_type: "bearer",
                }),
                None => Err(reply::unauthorized("invalid bearer token")),
            }
        }
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
