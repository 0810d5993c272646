//! The reconciler's error. `Display` is safe to log and to put in a status message:
//! no variant carries secret material.

use hawser_gateway::config::SpecError;
use hawser_gateway::policy::PolicyError;
use kube::runtime::finalizer;

use crate::secrets::Missing;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a reconciliation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),

    /// A referenced Secret could not be read for a reason other than "not found"
    /// (RBAC, undecodable object). The API's own message is kept; the payload never is.
    #[error("reading Secret {name:?}: {reason}")]
    SecretRead { name: String, reason: String },

    /// The gateway store failed.
    #[error("gateway store: {0}")]
    Store(#[from] hawser_gateway::store::Error),

    /// A referenced Secret or key does not exist.
    #[error("{0}")]
    SecretNotFound(Missing),

    /// The spec does not resolve into a connection.
    #[error("invalid spec: {0}")]
    InvalidSpec(#[from] SpecError),

    /// The `McpPolicy` spec would not load in the gateway.
    #[error("invalid policy: {0}")]
    InvalidPolicy(#[source] PolicyError),

    /// The object lacks a field the API server always sets.
    #[error("resource has no {0}")]
    Incomplete(&'static str),

    /// Adding or removing the finalizer failed, or the work inside it did.
    #[error("{0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
}

impl Error {
    /// Short label for the failures metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::SecretRead { .. } => "secret_read",
            Self::Store(_) => "store",
            Self::SecretNotFound(_) => "secret_not_found",
            Self::InvalidSpec(_) => "invalid_spec",
            Self::InvalidPolicy(_) => "invalid_policy",
            Self::Incomplete(_) => "incomplete",
            Self::Finalizer(e) => match e.as_ref() {
                finalizer::Error::ApplyFailed(inner) | finalizer::Error::CleanupFailed(inner) => {
                    inner.metric_label()
                }
                _ => "finalizer",
            },
        }
    }

    /// The error the reconciler itself raised, looking through the finalizer wrapper.
    pub fn root(&self) -> &Error {
        match self {
            Self::Finalizer(e) => match e.as_ref() {
                finalizer::Error::ApplyFailed(inner) | finalizer::Error::CleanupFailed(inner) => {
                    inner.root()
                }
                _ => self,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_look_through_the_finalizer() {
        let inner = Error::InvalidSpec(SpecError {
            field: "url".into(),
            message: "bad".into(),
        });
        let wrapped = Error::Finalizer(Box::new(finalizer::Error::ApplyFailed(inner)));
        assert_eq!(wrapped.metric_label(), "invalid_spec");
        assert!(matches!(wrapped.root(), Error::InvalidSpec(_)));
        let unnamed = Error::Finalizer(Box::new(finalizer::Error::UnnamedObject));
        assert_eq!(unnamed.metric_label(), "finalizer");
    }
}
