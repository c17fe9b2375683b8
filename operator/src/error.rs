//! Errors of the reconcile loop.

use crate::apiclient;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(kube::Error),
    #[error("{0}")]
    Timeout(kube::Error),
    #[error("not ready: {0}")]
    NotReady(String),
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        if apiclient::is_kube_timeout(&e) {
            Error::Timeout(e)
        } else {
            Error::Kube(e)
        }
    }
}

impl Error {
    /// Label for the error metric and the Degraded condition's reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "ApiError",
            Error::Timeout(_) => "ApiTimeout",
            Error::NotReady(_) => "NotReady",
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::Json(_) => "SerializationError",
        }
    }
}
