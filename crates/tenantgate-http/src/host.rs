//! Which host a request is for: the URI authority (HTTP/2, absolute-form),
//! else the `Host` header, normalised exactly as domains are on insert.

use axum::http::{header::HOST, Request};
use tenantgate::Domain;

/// The longest host value looked at; longer ones are rejected.
const MAX_HOST_LEN: usize = 1024;

/// Why a request's host cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// Neither an authority nor a `Host` header.
    Missing,
    /// Present but not a host name (or too long, or not text).
    Malformed(String),
}

/// The normalised host a request is addressed to.
pub fn request_host<B>(request: &Request<B>) -> Result<Domain, HostError> {
    let raw = match request.uri().authority() {
        Some(authority) => authority.as_str().to_owned(),
        None => {
            let header = request.headers().get(HOST).ok_or(HostError::Missing)?;
            if header.len() > MAX_HOST_LEN {
                return Err(HostError::Malformed("the Host header is too long".into()));
            }
            header
                .to_str()
                .map_err(|_| HostError::Malformed("the Host header is not ASCII text".into()))?
                .to_owned()
        }
    };
    if raw.contains('@') {
        return Err(HostError::Malformed("a host carries no userinfo".into()));
    }
    Domain::parse(&raw).map_err(|e| HostError::Malformed(e.to_string()))
}
