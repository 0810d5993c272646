//! The `requestState` Hawser issues when it bridges a call: sealed with the keyring
//! (AES-256-GCM, key id in the value), bound to the caller, expiring. A client can
//! neither read it nor make one; a retry from another caller, or after expiry, is
//! refused. It names the replica holding the suspended call, so any replica can pass
//! the retry on.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::crypto::Keyring;

/// What marks a `requestState` as Hawser's (anything else is an upstream's own).
pub const PREFIX: &str = "hawser1:";

/// Authenticated data of the seal; the caller is appended.
const CONTEXT: &str = "hawser/requestState/";

/// A suspended call's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// Replica token of the replica holding the call.
    #[serde(rename = "r")]
    pub replica: String,
    /// Where other replicas reach it (`None`: they cannot).
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The call's key there.
    #[serde(rename = "c")]
    pub call: String,
    /// Method and name of the request it belongs to.
    #[serde(rename = "m")]
    pub method: String,
    #[serde(rename = "n")]
    pub name: String,
    /// When it becomes void.
    #[serde(rename = "e")]
    pub expires: Timestamp,
}

/// Why a `requestState` is not honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Not sealed by this deployment for this caller, or altered.
    Forged,
    Expired,
}

impl Ticket {
    /// The `requestState` text for `subject`.
    pub fn seal(&self, keyring: &Keyring, subject: &str) -> String {
        let plain = serde_json::to_vec(self).unwrap_or_default();
        format!(
            "{PREFIX}{}",
            keyring.seal(&plain, &format!("{CONTEXT}{subject}"))
        )
    }

    /// Opens a `requestState`; `None` when it is not one of Hawser's.
    pub fn open(
        keyring: &Keyring,
        subject: &str,
        state: &str,
        now: Timestamp,
    ) -> Option<Result<Self, Invalid>> {
        let sealed = state.strip_prefix(PREFIX)?;
        let opened = keyring
            .unseal(sealed, &format!("{CONTEXT}{subject}"))
            .ok()
            .and_then(|plain| serde_json::from_slice::<Self>(&plain).ok());
        Some(match opened {
            None => Err(Invalid::Forged),
            Some(t) if t.expires < now => Err(Invalid::Expired),
            Some(t) => Ok(t),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(expires: Timestamp) -> Ticket {
        Ticket {
            replica: "r1".into(),
            address: Some("http://10.0.0.7:8080/".into()),
            call: "call-key-000042".into(),
            method: "tools/call".into(),
            name: "elicit_the_user".into(),
            expires,
        }
    }

    #[test]
    fn a_ticket_opens_for_its_caller_only_and_not_after_expiry() {
        let keys = Keyring::ephemeral();
        let now = Timestamp::now();
        let t = ticket(now.plus(std::time::Duration::from_secs(60)));
        let state = t.seal(&keys, "alice");
        assert!(state.starts_with(PREFIX));
        assert!(
            !state.contains("call-key-000042")
                && !state.contains("elicit_the_user")
                && !state.contains("10.0.0.7"),
            "unreadable: {state}"
        );
        assert_eq!(Ticket::open(&keys, "alice", &state, now), Some(Ok(t)));
        assert_eq!(
            Ticket::open(&keys, "bob", &state, now),
            Some(Err(Invalid::Forged))
        );
        let mut tampered = state.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(
            Ticket::open(&keys, "alice", &tampered, now),
            Some(Err(Invalid::Forged))
        );
        assert_eq!(
            Ticket::open(&Keyring::ephemeral(), "alice", &state, now),
            Some(Err(Invalid::Forged))
        );
        let old = ticket(Timestamp::from_millis(now.millis() - 1)).seal(&keys, "alice");
        assert_eq!(
            Ticket::open(&keys, "alice", &old, now),
            Some(Err(Invalid::Expired))
        );
        assert_eq!(Ticket::open(&keys, "alice", "upstream-state", now), None);
    }
}
