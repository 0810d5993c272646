//! Who is calling. The front turns a request into an [`Identity`] or a typed
//! [`Rejection`] through [`authenticate`], and knows nothing of how.

use http::HeaderMap;

use crate::config::ClientAuth;
use crate::crypto::IdHash;

/// How a caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// Client authentication is off: everyone is `anonymous`.
    None,
    /// One of the config file's static bearer tokens.
    StaticToken,
}

impl AuthMethod {
    /// As recorded in audit rows (`auth_type`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::StaticToken => "bearer",
        }
    }
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
    pub method: AuthMethod,
}

/// Why a request was not authenticated (HTTP 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid bearer token")]
    Invalid,
}

impl Rejection {
    /// A short label for metrics and audit rows.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Invalid => "invalid",
        }
    }
}

/// Authenticates the caller of a request.
pub fn authenticate(auth: &ClientAuth, headers: &HeaderMap) -> Result<Identity, Rejection> {
    match auth {
        ClientAuth::None => Ok(Identity {
            subject: "anonymous".into(),
            method: AuthMethod::None,
        }),
        ClientAuth::Bearer(tokens) => {
            let token = crate::headers::bearer(headers).ok_or(Rejection::Missing)?;
            let digest = IdHash::of(token);
            // Compare with every entry, each in constant time, so timing does not
            // tell which one matched.
            let mut found: Option<&str> = None;
            for (subject, expected) in tokens {
                if digest.matches(expected) {
                    found = Some(subject);
                }
            }
            found
                .map(|subject| Identity {
                    subject: subject.to_owned(),
                    method: AuthMethod::StaticToken,
                })
                .ok_or(Rejection::Invalid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[test]
    fn static_tokens_name_their_subject_whatever_the_scheme_case() {
        let auth = ClientAuth::Bearer(vec![
            ("alice".into(), IdHash::of("a-token")),
            ("bob".into(), IdHash::of("b-token")),
        ]);
        for scheme in ["Bearer", "bearer", "BEARER"] {
            let id = authenticate(&auth, &headers(&format!("{scheme} b-token"))).unwrap();
            assert_eq!(id.subject, "bob");
            assert_eq!(id.method, AuthMethod::StaticToken);
        }
        assert_eq!(
            authenticate(&auth, &headers("Bearer nope")),
            Err(Rejection::Invalid)
        );
        assert_eq!(
            authenticate(&auth, &HeaderMap::new()),
            Err(Rejection::Missing)
        );
        assert_eq!(
            authenticate(&ClientAuth::None, &HeaderMap::new()).map(|i| i.subject),
            Ok("anonymous".to_owned())
        );
    }
}
