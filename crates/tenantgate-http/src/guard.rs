//! The tower layer: resolve the tenant, decide from the snapshot, pass or answer.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    body::Body,
    extract::FromRequestParts,
    http::{header::ACCEPT, request::Parts, HeaderValue, Request, StatusCode},
    response::Response,
};
use tower::{Layer, Service};

use pin_project_lite::pin_project;

use crate::{
    details::reference_id,
    host::{already_normal, request_host, HostError},
    metrics,
    pages::{self, BlockedPage},
    snapshot::{TenantEntry, TenantRef},
    watcher::GuardState,
};

/// Set on every response while the emergency bypass is on.
pub const BYPASS_HEADER: &str = "x-tenantgate-migration-check";

/// Wraps services in a [`Guard`].
#[derive(Clone)]
pub struct GuardLayer {
    state: Arc<GuardState>,
}

impl GuardLayer {
    /// A layer deciding from `state`.
    pub fn new(state: Arc<GuardState>) -> Self {
        Self { state }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Guard {
            inner,
            state: self.state.clone(),
        }
    }
}

/// Lets a request reach the inner service only when its tenant is served.
#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    state: Arc<GuardState>,
}

/// The tenant a request was resolved to, in the request's extensions; also
/// an extractor for handlers behind the guard. It holds the entry the
/// request was decided by, whatever snapshots replace it meanwhile.
#[derive(Debug, Clone)]
pub struct ResolvedTenant(pub TenantRef);

impl std::ops::Deref for ResolvedTenant {
    type Target = TenantEntry;

    fn deref(&self) -> &TenantEntry {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ResolvedTenant {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<ResolvedTenant>().cloned().ok_or((
            StatusCode::INTERNAL_SERVER_ERROR,
            "this route is not behind tenantgate's GuardLayer",
        ))
    }
}

/// What to do with a request.
pub(crate) enum Decision {
    /// A served tenant: the request goes on.
    Pass(TenantRef),
    /// A tenant not known to be ready, served because the check is off.
    Bypass(TenantRef),
    /// The guard's own answer (400, 404, 503); the request goes no further.
    Respond(Response),
}

/// Whether the client prefers JSON to HTML, by its `Accept` header's
/// quality values (RFC 9110 §12.5.1): `application/json` (or
/// `application/*`) must rank above `text/html` (or `text/*`); without an
/// `Accept` header, or on a tie, the answer is HTML.
pub(crate) fn wants_json(request: &Request<Body>) -> bool {
    prefers_json(request.headers().get(ACCEPT))
}

/// [`wants_json`] from an `Accept` header value alone.
pub(crate) fn prefers_json(accept: Option<&HeaderValue>) -> bool {
    let Some(accept) = accept.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let (mut json, mut html) = (0.0_f32, 0.0_f32);
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let quality = parts
            .find_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
            .and_then(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0)
            .clamp(0.0, 1.0);
        match media.as_str() {
            "application/json" | "application/*" => json = json.max(quality),
            "text/html" | "text/*" => html = html.max(quality),
            "*/*" => {
                json = json.max(quality);
                html = html.max(quality);
            }
            _ => {}
        }
    }
    json > html
}

/// What the guard decides for `request` against `state`'s snapshot: the
/// same decision whether a tower service or the proxy asks.
pub(crate) fn decide(state: &GuardState, request: &Request<Body>) -> Decision {
    let config = state.config();
    let unknown = state.state_unknown();
    if !unknown {
        // The hot path: a host already in normal form that routes to a
        // served tenant, decided without allocating.
        if let Some(entry) = already_normal(request).and_then(|host| state.snapshot().served(host))
        {
            return Decision::Pass(entry);
        }
    }
    let wants_json = wants_json(request);
    let host = match request_host(request) {
        Ok(host) => host,
        Err(HostError::Missing) => {
            return Decision::Respond(pages::bad_host("the request names no host", wants_json))
        }
        Err(HostError::Malformed(reason)) => {
            return Decision::Respond(pages::bad_host(&reason, wants_json))
        }
    };
    let snapshot = state.snapshot();
    let found = snapshot.lookup(host.as_str());
    let entry = found.as_ref();
    let blocked_reason = match (unknown, entry) {
        (true, _) => "state_unknown",
        (false, None) => return Decision::Respond(pages::unknown_host(host.as_str(), wants_json)),
        (false, Some(entry)) => match &entry.blocked {
            None => return Decision::Pass(entry.clone()),
            Some(blocked) => blocked.reason.as_str(),
        },
    };
    if let (true, Some(entry)) = (config.dangerous_bypass, entry) {
        metrics::bypassed();
        tracing::warn!(tenant = %entry.name, reason = blocked_reason, "migration check bypassed: serving a tenant that is not known to be ready");
        return Decision::Bypass(entry.clone());
    }
    let reference = reference_id();
    metrics::blocked(blocked_reason);
    let retry_after = config.retry_after.as_secs();
    let Some(entry) = entry.filter(|_| !unknown) else {
        tracing::error!(host = %host, reason = blocked_reason, reference = %reference, "request blocked: migration state unknown");
        return Decision::Respond(pages::state_unknown(&reference, retry_after, wants_json));
    };
    tracing::error!(
        tenant = %entry.name,
        host = %host,
        reason = blocked_reason,
        reference = %reference,
        "request blocked: tenant not ready"
    );
    Decision::Respond(pages::blocked(
        &BlockedPage {
            entry,
            container: &state.container(&entry.name),
            host: host.as_str(),
            reference: &reference,
            show_details: config.details.reveals(request.headers()),
            retry_after,
            recovery_text: &config.recovery_text,
        },
        wants_json,
    ))
}

impl<S> Service<Request<Body>> for Guard<S>
where
    S: Service<Request<Body>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let bypass_on = self.state.config().dangerous_bypass;
        let entry = match decide(&self.state, &request) {
            Decision::Respond(response) => {
                return ResponseFuture {
                    kind: Kind::Respond {
                        response: Some(mark_bypass(response, bypass_on)),
                    },
                }
            }
            Decision::Pass(entry) | Decision::Bypass(entry) => entry,
        };
        request.extensions_mut().insert(ResolvedTenant(entry));
        ResponseFuture {
            kind: Kind::Inner {
                future: self.inner.call(request),
                bypass_on,
            },
        }
    }
}

pin_project! {
    /// The response future of [`Guard`]: the inner service's, or the
    /// guard's own answer.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F, bypass_on: bool },
        Respond { response: Option<Response> },
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future, bypass_on } => {
                let bypass_on = *bypass_on;
                future
                    .poll(cx)
                    .map(|result| result.map(|response| mark_bypass(response, bypass_on)))
            }
            KindProj::Respond { response } => Poll::Ready(Ok(response
                .take()
                .expect("a guard response future is polled to completion once"))),
        }
    }
}

/// `response`, marked as served with the migration check off when it is.
pub(crate) fn mark_bypass(mut response: Response, bypass_on: bool) -> Response {
    if bypass_on {
        response
            .headers_mut()
            .insert(BYPASS_HEADER, HeaderValue::from_static("disabled"));
    }
    response
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, http::Request};

    fn accepts(accept: &str) -> bool {
        let request = Request::builder()
            .header("accept", accept)
            .body(Body::empty())
            .unwrap();
        super::wants_json(&request)
    }

    #[test]
    fn accept_is_negotiated_by_quality() {
        assert!(accepts("application/json"));
        assert!(accepts("application/json, text/html;q=0.9"));
        assert!(accepts("text/html;q=0.1, application/json"));
        assert!(accepts("application/*"));
        assert!(!accepts("text/html, application/json;q=0.5"));
        assert!(!accepts("application/json;q=0, text/html"));
        assert!(!accepts(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ));
        assert!(!accepts("*/*"));
        assert!(
            !accepts("application/json;q=0.5, text/html;q=0.5"),
            "a tie is HTML"
        );
        assert!(!accepts(""));
    }
}
