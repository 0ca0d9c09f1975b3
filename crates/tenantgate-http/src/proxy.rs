//! The guard in front of any web app: a reverse proxy that resolves the
//! tenant with the same [`GuardLayer`](crate::GuardLayer) decision `serve` uses, answers
//! 503/404/400 itself, and forwards the rest to the upstream with the
//! tenant in `X-Tenantgate-*` headers.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! # let dir = tempfile::tempdir().unwrap();
//! # let migrations = dir.path().join("migrations");
//! # std::fs::create_dir_all(migrations.join("tenant")).unwrap();
//! # std::fs::write(migrations.join("tenant/0001_users.sql"), "CREATE TABLE users (id INTEGER PRIMARY KEY);").unwrap();
//! # let url = format!("sqlite://{}", dir.path().join("data").display());
//! use std::sync::Arc;
//! use tenantgate::{readiness::RequiredSet, MigrationFolder};
//! use tenantgate_http::{proxy, watch_registry, GuardConfig};
//!
//! let backend: Arc<dyn tenantgate::Backend> = tenantgate::connect(&url).await?.into();
//! backend.prepare().await?;
//! let required = RequiredSet::from_folder(&MigrationFolder::load(&migrations)?);
//! let guard = watch_registry(backend, required, GuardConfig::default()).await?;
//! let upstream = proxy::Upstream::new(proxy::ProxyConfig {
//!     upstream: "http://127.0.0.1:8000".parse().unwrap(),
//!     ..Default::default()
//! });
//! let service = proxy::service(guard, upstream, Vec::new());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! // Serves until the shutdown future resolves (here: at once), then drains.
//! proxy::serve(listener, service, async {}, std::time::Duration::from_secs(1)).await;
//! # Ok::<(), tenantgate::Error>(())
//! # }).unwrap();
//! ```

use std::{
    future::Future,
    net::SocketAddr,
    path::PathBuf,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::Request,
    http::{
        header::{self, HeaderMap, HeaderName, HeaderValue},
        uri::PathAndQuery,
        StatusCode, Uri, Version,
    },
    response::Response,
};
use http_body::{Body as HttpBody, Frame};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ipnet::IpNet;
use metrics::{counter, histogram};
use pin_project_lite::pin_project;
use tenantgate::Domain;

use crate::{
    deadlines::Deadlines,
    drain::Drain,
    guard::{decide, mark_bypass, prefers_json, Decision},
    host::request_host,
    metrics as names, pages,
    snapshot::TenantEntry,
    upstream_pool::{SendError, UpstreamPool},
    watcher::GuardState,
};

/// Where a tenant lives, as the upstream is told in headers.
#[derive(Debug, Clone, Default)]
pub enum TenantLocation {
    /// A PostgreSQL schema named after the tenant: `X-Tenantgate-Schema`.
    #[default]
    Schema,
    /// A SQLite file in this data folder: `X-Tenantgate-Database`.
    File(PathBuf),
}

/// How the proxy forwards.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The app: `http://host:port` (a path prefix is kept in front of
    /// every request's path).
    pub upstream: Uri,
    /// How long the upstream may take to send response headers (then 504,
    /// answered within a tenth of it more, at most a second).
    pub upstream_timeout: Duration,
    /// How long a response body may stall before the client connection is
    /// aborted.
    pub idle_timeout: Duration,
    /// Peers whose `X-Forwarded-*` headers are extended rather than replaced.
    pub trust_forwarded: Vec<IpNet>,
    /// Where tenants live, for the headers the upstream receives.
    pub location: TenantLocation,
    /// Idle keep-alive connections kept to the upstream.
    pub max_idle: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            upstream: Uri::from_static("http://127.0.0.1:8000"),
            upstream_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            trust_forwarded: Vec::new(),
            location: TenantLocation::Schema,
            max_idle: 64,
        }
    }
}

/// The set tenant headers: whatever a client sends under this prefix is
/// removed first, so no client can impersonate a tenant.
const TENANT_HEADER_PREFIX: &str = "x-tenantgate-";

/// Forwards requests to the upstream over a keep-alive pool, streaming
/// bodies both ways. Cloning it is one reference count.
#[derive(Clone)]
pub struct Upstream(Arc<UpstreamParts>);

struct UpstreamParts {
    pool: Arc<UpstreamPool>,
    /// `upstream_timeout` for each request's response headers.
    deadlines: Arc<Deadlines>,
    config: ProxyConfig,
    /// Metric handles, looked up once: a request records without a
    /// registry lookup.
    forwarded: metrics::Counter,
    latency: metrics::Histogram,
    prefix: String,
    /// For tenants in files: their folder as text, ending in a separator,
    /// worked out once rather than per request.
    tenant_files: String,
}

impl Upstream {
    /// A forwarder to `config.upstream` (`http://host:port`), with its own
    /// pool of keep-alive connections: give each runtime its own.
    pub fn new(config: ProxyConfig) -> Self {
        let parts = config.upstream.clone().into_parts();
        let address = parts.authority.as_ref().map_or_else(
            || "127.0.0.1:80".to_owned(),
            |a| format!("{}:{}", a.host(), a.port_u16().unwrap_or(80)),
        );
        Self(Arc::new(UpstreamParts {
            pool: UpstreamPool::new(address, config.max_idle),
            deadlines: Deadlines::new(config.upstream_timeout),
            forwarded: counter!(names::PROXY_FORWARDED),
            latency: histogram!(names::PROXY_UPSTREAM_SECONDS),
            prefix: parts
                .path_and_query
                .map(|p| p.path().trim_end_matches('/').to_owned())
                .unwrap_or_default(),
            tenant_files: match &config.location {
                TenantLocation::Schema => String::new(),
                TenantLocation::File(data) => data.join("tenants").join("").display().to_string(),
            },
            config,
        }))
    }

    /// Forwards `request` from `peer`, for `tenant` (none for a pass-through
    /// host), and returns the upstream's response or the guard's own 502/504.
    async fn forward(
        &self,
        mut request: Request,
        peer: &Peer,
        tenant: Option<&TenantEntry>,
    ) -> Response {
        let this = &self.0;
        // Only an error page needs it: parsed then, not for every request.
        let accept = request.headers().get(header::ACCEPT).cloned();
        let json = || prefers_json(accept.as_ref());
        let upgrading = is_upgrade(request.headers());
        let client_upgrade = upgrading.then(|| hyper::upgrade::on(&mut request));
        let outbound = match this.outbound(request, peer, tenant, upgrading) {
            Ok(outbound) => outbound,
            Err(reason) => return pages::bad_host(&reason, json()),
        };
        let started = Instant::now();
        let answer = this.deadlines.within(this.pool.send(outbound)).await;
        this.latency.record(started.elapsed().as_secs_f64());
        let mut response = match answer {
            Err(_) => {
                counter!(names::PROXY_UPSTREAM_ERRORS, "kind" => "timeout").increment(1);
                return pages::upstream_failed(StatusCode::GATEWAY_TIMEOUT, json());
            }
            Ok(Err(e)) => {
                let kind = match e {
                    SendError::Connect(_) => "connect",
                    SendError::Reset(_) => "reset",
                };
                tracing::warn!(error = %e, kind, "the upstream did not answer");
                counter!(names::PROXY_UPSTREAM_ERRORS, "kind" => kind).increment(1);
                return pages::upstream_failed(StatusCode::BAD_GATEWAY, json());
            }
            Ok(Ok(response)) => response,
        };
        this.forwarded.increment(1);
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                let upstream_upgrade = hyper::upgrade::on(&mut response);
                tokio::spawn(async move {
                    if let (Ok(client), Ok(upstream)) =
                        tokio::join!(client_upgrade, upstream_upgrade)
                    {
                        let _ = tokio::io::copy_bidirectional(
                            &mut TokioIo::new(client),
                            &mut TokioIo::new(upstream),
                        )
                        .await;
                    }
                });
            }
            let (parts, body) = response.into_parts();
            return Response::from_parts(parts, Body::new(body));
        }
        strip_hop_by_hop(response.headers_mut(), false, |_| false);
        let (parts, body) = response.into_parts();
        Response::from_parts(
            parts,
            Body::new(IdleTimeout::new(body, this.config.idle_timeout)),
        )
    }
}

impl UpstreamParts {
    /// The request as the upstream receives it.
    fn outbound(
        &self,
        request: Request,
        peer: &Peer,
        tenant: Option<&TenantEntry>,
        upgrading: bool,
    ) -> Result<hyper::Request<Body>, String> {
        let (mut parts, body) = request.into_parts();
        // The host the guard resolved the tenant from: the target's
        // authority when it has one (HTTP/2, absolute-form), which replaces
        // any Host header (RFC 9112 §3.2.2), so an app that routes by Host
        // sees the tenant that was checked; else Host as sent.
        let host = match parts.uri.authority() {
            Some(authority) => {
                let host = HeaderValue::from_str(authority.as_str())
                    .map_err(|_| "the request's authority is not a header value")?;
                parts.headers.insert(header::HOST, host.clone());
                host
            }
            None => parts
                .headers
                .get(header::HOST)
                .cloned()
                .ok_or("the request names no host")?,
        };
        // Origin-form: the upstream reads the host from `Host`. A request
        // already in origin-form (every HTTP/1.1 one) keeps its target.
        let origin_form = parts.uri.scheme().is_none() && parts.uri.authority().is_none();
        if !(origin_form && self.prefix.is_empty()) {
            let path = parts.uri.path_and_query().map_or("/", PathAndQuery::as_str);
            parts.uri = Uri::try_from(format!("{}{path}", self.prefix))
                .map_err(|e| format!("the request target cannot be forwarded: {e}"))?;
        }
        let headers = &mut parts.headers;
        // A client's own tenant headers go, and so do its `X-Forwarded-*`
        // unless it is trusted: they are set afresh below.
        strip_hop_by_hop(headers, upgrading, |name| {
            name.as_str().starts_with(TENANT_HEADER_PREFIX)
                || (!peer.trusted
                    && [&FORWARDED_FOR, &FORWARDED_PROTO, &FORWARDED_HOST].contains(&name))
        });
        // Room for the five headers set below, grown at most once.
        headers.reserve(5);
        self.forwarded_headers(headers, peer, host);
        if let Some(tenant) = tenant {
            if let Ok(name) = HeaderValue::from_str(tenant.name.as_str()) {
                match &self.config.location {
                    TenantLocation::Schema => {
                        headers.insert(TENANT_SCHEMA.clone(), name.clone());
                    }
                    TenantLocation::File(_) => {
                        let mut file = String::with_capacity(self.tenant_files.len() + 70);
                        file.push_str(&self.tenant_files);
                        file.push_str(tenant.name.as_str());
                        file.push_str(".db");
                        if let Ok(file) = HeaderValue::try_from(file) {
                            headers.insert(TENANT_DATABASE.clone(), file);
                        }
                    }
                }
                headers.insert(TENANT.clone(), name);
            }
        }
        parts.version = Version::HTTP_11;
        Ok(hyper::Request::from_parts(parts, body))
    }

    /// `X-Forwarded-For`, `-Proto` and `-Host`: extended when the peer is
    /// trusted (every `X-Forwarded-For` line it sent, in order, then the
    /// peer), else set afresh (the client's were removed with the
    /// hop-by-hop headers), so a client cannot forge its origin.
    fn forwarded_headers(&self, headers: &mut HeaderMap, peer: &Peer, host: HeaderValue) {
        if !peer.trusted {
            headers.append(FORWARDED_FOR, peer.header.clone());
            headers.append(FORWARDED_PROTO, HeaderValue::from_static("http"));
            headers.append(FORWARDED_HOST, host);
            return;
        }
        let chain: Vec<&str> = headers
            .get_all(FORWARDED_FOR)
            .iter()
            .chain([&peer.header])
            .filter_map(|v| v.to_str().ok())
            .collect();
        if let Ok(value) = HeaderValue::from_str(&chain.join(", ")) {
            headers.insert(FORWARDED_FOR, value);
        }
        if !headers.contains_key(FORWARDED_PROTO) {
            headers.insert(FORWARDED_PROTO, HeaderValue::from_static("http"));
        }
        if !headers.contains_key(FORWARDED_HOST) {
            headers.insert(FORWARDED_HOST, host);
        }
    }
}

const TENANT: HeaderName = HeaderName::from_static("x-tenantgate-tenant");
const TENANT_SCHEMA: HeaderName = HeaderName::from_static("x-tenantgate-schema");
const TENANT_DATABASE: HeaderName = HeaderName::from_static("x-tenantgate-database");
const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The client at the other end of a connection, as the upstream is told:
/// its `X-Forwarded-For` value and trust are worked out once per
/// connection, not per request.
#[derive(Clone)]
pub(crate) struct Peer {
    /// Its address, as `X-Forwarded-For` names it.
    header: HeaderValue,
    /// In `--trust-forwarded`: its `X-Forwarded-*` headers are extended.
    trusted: bool,
}

impl Peer {
    fn new(address: SocketAddr, config: &ProxyConfig) -> Self {
        let address = address.ip();
        Self {
            header: HeaderValue::from_str(&address.to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            trusted: config.trust_forwarded.iter().any(|n| n.contains(&address)),
        }
    }
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// The fixed hop-by-hop set besides `Connection` and `Upgrade`, compared as
/// header names (most are standard names: one byte compared, not text).
fn is_fixed_hop_by_hop(name: &HeaderName) -> bool {
    *name == header::TE
        || *name == header::TRAILER
        || *name == header::TRANSFER_ENCODING
        || *name == header::PROXY_AUTHORIZATION
        || *name == header::PROXY_AUTHENTICATE
        || *name == KEEP_ALIVE
        || *name == PROXY_CONNECTION
}

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Removes the headers that belong to one connection (RFC 9110 §7.6.1):
/// those `Connection` names, and the fixed hop-by-hop set, and any other
/// header `also` names; never `Host`. An upgrade keeps `Connection: upgrade`
/// and `Upgrade`, which the upstream must see. The names are read in one
/// pass: most messages carry none of these and cost no removal.
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrading: bool, also: impl Fn(&HeaderName) -> bool) {
    let (mut connection, mut upgrade) = (false, false);
    let mut doomed: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        if *name == header::CONNECTION {
            connection = true;
        } else if *name == header::UPGRADE {
            upgrade = true;
        } else if is_fixed_hop_by_hop(name) || also(name) {
            doomed.push(name.clone());
        }
    }
    if connection {
        doomed.extend(
            headers
                .get_all(header::CONNECTION)
                .iter()
                .flat_map(|v| v.as_bytes().split(|&b| b == b','))
                .map(<[u8]>::trim_ascii)
                // The usual tokens name no header left to remove, so most
                // messages parse no name: `close`, `keep-alive` (removed
                // above), `upgrade` (kept for an upgrade, removed below
                // otherwise).
                .filter(|token| {
                    !token.eq_ignore_ascii_case(b"close")
                        && !token.eq_ignore_ascii_case(b"keep-alive")
                        && !token.eq_ignore_ascii_case(b"upgrade")
                })
                .filter_map(|token| HeaderName::from_bytes(token).ok())
                // The host is the request's own (the tenant's key), not
                // the connection's, whatever `Connection` lists.
                .filter(|name| *name != header::HOST),
        );
    }
    for name in doomed {
        headers.remove(name);
    }
    if upgrading {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        if connection {
            headers.remove(header::CONNECTION);
        }
        if upgrade {
            headers.remove(header::UPGRADE);
        }
    }
}

pin_project! {
    /// A response body that fails once no frame arrived for `idle`, so a
    /// stalled upstream aborts the client connection instead of hanging it.
    /// The timer starts only when the body first has to wait: a body that
    /// is ready at once (most responses) never arms one.
    struct IdleTimeout<B> {
        #[pin]
        inner: B,
        idle: Duration,
        deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    }
}

impl<B> IdleTimeout<B> {
    fn new(inner: B, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            deadline: None,
        }
    }
}

impl<B> HttpBody for IdleTimeout<B>
where
    B: HttpBody,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(deadline) = this.deadline.as_mut() {
                    deadline
                        .as_mut()
                        .reset(tokio::time::Instant::now() + *this.idle);
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let idle = *this.idle;
                let deadline = this
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err("the upstream's body stalled".into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The proxy as a service: hosts in `pass_hosts` are forwarded without a
/// tenant; every other request gets the same decision as [`GuardLayer`](crate::GuardLayer)
/// makes for `serve`, and only served tenants reach the upstream. It runs
/// on hyper directly (see [`serve`]): a proxy's only route needs no router.
#[derive(Clone)]
pub struct ProxyService {
    state: Arc<GuardState>,
    upstream: Upstream,
    pass_hosts: Arc<Vec<Domain>>,
}

/// The proxy's service for `upstream`, guarded by `state`.
pub fn service(
    state: Arc<GuardState>,
    upstream: Upstream,
    pass_hosts: Vec<Domain>,
) -> ProxyService {
    ProxyService {
        state,
        upstream,
        pass_hosts: Arc::new(pass_hosts),
    }
}

impl ProxyService {
    /// The service for one client connection from `peer`.
    fn connection(&self, peer: SocketAddr) -> Arc<ConnectionService> {
        Arc::new(ConnectionService {
            proxy: self.clone(),
            peer: Peer::new(peer, &self.upstream.0.config),
        })
    }
}

/// [`ProxyService`] for one client connection.
struct ConnectionService {
    proxy: ProxyService,
    peer: Peer,
}

impl ConnectionService {
    /// Answers one request.
    async fn answer(&self, request: Request) -> Response {
        let ProxyService {
            state,
            upstream,
            pass_hosts,
        } = &self.proxy;
        let passes = !pass_hosts.is_empty()
            && request_host(&request).is_ok_and(|host| pass_hosts.contains(&host));
        if passes {
            return upstream.forward(request, &self.peer, None).await;
        }
        let bypass_on = state.config().dangerous_bypass;
        let response = match decide(state, &request) {
            Decision::Respond(response) => response,
            Decision::Pass(entry) | Decision::Bypass(entry) => {
                upstream.forward(request, &self.peer, Some(&entry)).await
            }
        };
        mark_bypass(response, bypass_on)
    }
}

/// Serves `service` on `listener` (HTTP/1.1 and HTTP/2 cleartext, upgrades
/// included) until `shutdown` resolves, then lets requests in flight finish
/// for up to `drain`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: ProxyService,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(crate::upstream_pool::MAX_BUFFER);
    let connections = Drain::default();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = service.connection(peer);
        let answer = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let service = service.clone();
            async move {
                Ok::<_, std::convert::Infallible>(service.answer(request.map(Body::new)).await)
            }
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), answer)
            .into_owned();
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    tokio::select! {
        () = connections.shutdown() => {}
        () = tokio::time::sleep(drain) => {
            tracing::warn!("requests still in flight after the drain timeout; stopping");
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    #[test]
    fn hop_by_hop_headers_never_cross() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("te", HeaderValue::from_static("trailers"));
        headers.insert("accept", HeaderValue::from_static("*/*"));
        super::strip_hop_by_hop(&mut headers, false, |_| false);
        assert_eq!(
            headers.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            ["accept"]
        );
        let mut listed = HeaderMap::new();
        listed.insert("connection", HeaderValue::from_static("Host, TE, upgrade"));
        listed.insert("host", HeaderValue::from_static("acme.localhost"));
        listed.insert("te", HeaderValue::from_static("trailers"));
        listed.insert("upgrade", HeaderValue::from_static("websocket"));
        listed.insert("x-tenantgate-tenant", HeaderValue::from_static("globex"));
        super::strip_hop_by_hop(&mut listed, false, |name| {
            name.as_str().starts_with(super::TENANT_HEADER_PREFIX)
        });
        assert_eq!(
            listed.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            ["host"],
            "Connection cannot take the host away"
        );
        let mut upgrade = HeaderMap::new();
        upgrade.insert("connection", HeaderValue::from_static("Upgrade"));
        upgrade.insert("upgrade", HeaderValue::from_static("websocket"));
        assert!(super::is_upgrade(&upgrade));
        super::strip_hop_by_hop(&mut upgrade, true, |_| false);
        assert_eq!(upgrade["connection"], "upgrade");
        assert_eq!(upgrade["upgrade"], "websocket");
    }
}
