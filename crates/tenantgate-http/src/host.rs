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

/// The host text a request names: its URI authority, else its `Host`
/// header. Refuses what a front proxy could read differently (RFC 9112
/// §3.2): two `Host` headers, or an absolute-form target whose scheme is
/// not http or https.
fn raw_host<B>(request: &Request<B>) -> Result<&str, HostError> {
    let mut hosts = request.headers().get_all(HOST).iter();
    let header = hosts.next();
    if header.is_some() && hosts.next().is_some() {
        return Err(HostError::Malformed(
            "the request carries more than one Host header".into(),
        ));
    }
    if let Some(scheme) = request.uri().scheme_str() {
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(HostError::Malformed(format!(
                "the request target's scheme {scheme:?} is not http or https"
            )));
        }
    }
    match request.uri().authority() {
        Some(authority) => Ok(authority.as_str()),
        None => {
            let header = header.ok_or(HostError::Missing)?;
            if header.len() > MAX_HOST_LEN {
                return Err(HostError::Malformed("the Host header is too long".into()));
            }
            header
                .to_str()
                .map_err(|_| HostError::Malformed("the Host header is not ASCII text".into()))
        }
    }
}

/// The host as it would be stored, without allocating, when it is already
/// in normal form (lowercase letters, digits, hyphens and dots; an optional
/// numeric port): the common case, which the guard looks up directly.
pub(crate) fn already_normal<B>(request: &Request<B>) -> Option<&str> {
    let raw = raw_host(request).ok()?;
    let host = match raw.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        Some(_) => return None,
        None => raw,
    };
    let plain = !host.is_empty()
        && !host.ends_with('.')
        && host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    plain.then_some(host)
}

/// The normalised host a request is addressed to.
pub fn request_host<B>(request: &Request<B>) -> Result<Domain, HostError> {
    let raw = raw_host(request)?;
    if raw.contains('@') {
        return Err(HostError::Malformed("a host carries no userinfo".into()));
    }
    Domain::parse(raw).map_err(|e| HostError::Malformed(e.to_string()))
}
