//! Who is signed in to the console: a cookie (`hawser_ui`) sealed with the gateway's
//! keyring (AES-256-GCM, bound to its own context), holding the subject, groups,
//! admin flag and expiry. Any replica with the keyring reads it; signing out
//! overwrites it and revokes it on every replica (see [`super::revocations`]), so a
//! copied cookie stops working too. State-changing forms carry a CSRF token derived
//! from the session's random nonce, which only the sealed cookie holds.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use super::{Console, Error};
use crate::clock::Timestamp;
use crate::crypto::{IdHash, constant_time_eq};

/// The session cookie.
pub const COOKIE: &str = "hawser_ui";
/// How long a sign-in lasts.
pub const TTL: Duration = Duration::from_secs(8 * 3600);
/// Authenticated data of the seal.
const CONTEXT: &str = "hawser/console-session";

/// A signed-in person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    #[serde(rename = "s")]
    pub subject: String,
    #[serde(rename = "g", default)]
    pub groups: Vec<String>,
    #[serde(rename = "a")]
    pub admin: bool,
    #[serde(rename = "e")]
    pub expires: Timestamp,
    /// Random; the CSRF token is derived from it.
    #[serde(rename = "n")]
    nonce: String,
}

impl Session {
    pub fn new(subject: String, groups: Vec<String>, admin: bool) -> Self {
        Self {
            subject,
            groups,
            admin,
            expires: Timestamp::now().plus(TTL),
            nonce: crate::crypto::random_hex::<16>(),
        }
    }

    /// The sign-in's id, as revocations name it.
    pub fn id(&self) -> IdHash {
        IdHash::of(&format!("hawser/console-session:{}", self.nonce))
    }

    /// When the person signed in.
    pub fn issued(&self) -> Timestamp {
        Timestamp::from_millis(self.expires.millis() - TTL.as_millis() as i64)
    }

    /// The token state-changing forms must send back.
    pub fn csrf(&self) -> String {
        IdHash::of(&format!("hawser/console-csrf:{}", self.nonce)).to_hex()
    }

    /// Whether `presented` is this session's CSRF token.
    pub fn check_csrf(&self, presented: &str) -> Result<(), Error> {
        if constant_time_eq(presented.as_bytes(), self.csrf().as_bytes()) {
            Ok(())
        } else {
            Err(Error::Csrf)
        }
    }

    /// Refuses anyone but an admin.
    pub fn require_admin(&self) -> Result<(), Error> {
        if self.admin {
            Ok(())
        } else {
            Err(Error::Forbidden)
        }
    }
}

/// The `Set-Cookie` value that signs `session` in.
pub fn cookie(console: &Console, session: &Session) -> String {
    let plain = serde_json::to_vec(session).unwrap_or_default();
    let sealed = console.keyring.seal(&plain, CONTEXT);
    set_cookie(console, COOKIE, &sealed, "/ui", TTL)
}

/// The `Set-Cookie` value that signs out.
pub fn cleared(console: &Console) -> String {
    set_cookie(console, COOKIE, "", "/ui", Duration::ZERO)
}

/// A `Set-Cookie` value of the console: see [`crate::headers::set_cookie`].
pub fn set_cookie(console: &Console, name: &str, value: &str, path: &str, age: Duration) -> String {
    crate::headers::set_cookie(name, value, path, age, console.secure_cookies())
}

pub use crate::headers::cookie_value;

/// The session a request's cookie carries, if it is valid, current and not revoked.
pub fn read(console: &Console, headers: &HeaderMap) -> Option<Session> {
    let sealed = cookie_value(headers, COOKIE)?;
    let plain = console.keyring.unseal(sealed, CONTEXT).ok()?;
    let session: Session = serde_json::from_slice(&plain).ok()?;
    (session.expires > Timestamp::now() && !console.revocations.revoked(&session))
        .then_some(session)
}

impl FromRequestParts<Arc<Console>> for Session {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Self, Self::Rejection> {
        read(console, &parts.headers).ok_or(Error::SignIn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csrf_token_is_the_sessions_own() {
        let a = Session::new("alice".into(), vec![], false);
        let b = Session::new("alice".into(), vec![], false);
        assert!(a.check_csrf(&a.csrf()).is_ok());
        assert!(a.check_csrf(&b.csrf()).is_err());
        assert!(a.check_csrf("").is_err());
    }
}
