//! How long to wait before retrying a failed reconciliation: exponential per object,
//! starting from a delay that depends on what failed, reset by the next success.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::Error;

/// The longest wait between retries.
pub const MAX_DELAY: Duration = Duration::from_secs(300);
/// An invalid spec (or policy) is fixed only by editing the resource or a Secret,
/// which triggers a reconciliation at once; the requeue is just a safety net.
pub const INVALID_SPEC_DELAY: Duration = Duration::from_secs(600);

/// Consecutive failures per object (`<namespace>/<name>`).
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Records a failure of `key` and returns how long to wait before the next try.
    pub fn failed(&self, key: &str, error: &Error) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let count = failures.entry(key.to_owned()).or_default();
        let attempt = *count;
        *count = count.saturating_add(1);
        delay(error, attempt)
    }

    /// Forgets the failures of `key`.
    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

fn delay(error: &Error, attempt: u32) -> Duration {
    let first = match error.root() {
        Error::InvalidSpec(_) | Error::InvalidPolicy(_) => return INVALID_SPEC_DELAY,
        // Often a Secret created right after the resource: look again soon.
        Error::SecretNotFound(_) => Duration::from_secs(5),
        _ => Duration::from_secs(1),
    };
    first
        .checked_mul(2u32.saturating_pow(attempt.min(16)))
        .map_or(MAX_DELAY, |d| d.min(MAX_DELAY))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Missing;

    #[test]
    fn grows_per_object_and_resets_on_success() {
        let backoff = Backoff::default();
        let missing = Error::SecretNotFound(Missing(Vec::new()));
        let delays: Vec<u64> = (0..8)
            .map(|_| backoff.failed("ns/a", &missing).as_secs())
            .collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff.failed("ns/b", &missing).as_secs(), 5, "per object");
        backoff.succeeded("ns/a");
        assert_eq!(backoff.failed("ns/a", &missing).as_secs(), 5);
        let transient = Error::Incomplete("name");
        assert_eq!(backoff.failed("ns/c", &transient).as_secs(), 1);
        for _ in 0..100 {
            backoff.failed("ns/c", &transient);
        }
        assert_eq!(backoff.failed("ns/c", &transient), MAX_DELAY);
    }
}
