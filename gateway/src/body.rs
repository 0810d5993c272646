//! What can go wrong reading a request body, as handlers see it: the deadline the
//! server's listener puts on bodies (`http.bodyReadTimeout`) and a size limit.

use std::time::Duration;

/// A request body that had to arrive within `http.bodyReadTimeout` and did not.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within {0:?}")]
pub struct BodyTimeout(pub Duration);

/// Whether an error reading a body (as axum reports it) was the body's deadline.
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    caused_by::<BodyTimeout>(error)
}

/// Whether an error reading a body was its size limit.
pub fn is_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    caused_by::<http_body_util::LengthLimitError>(error)
}

fn caused_by<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if e.is::<E>() {
            return true;
        }
        cause = e.source();
    }
    false
}
