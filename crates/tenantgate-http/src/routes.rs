//! Routes that bypass tenant resolution: the probes `/livez` and
//! `/readyz`, `/health/migrations`, `/metrics` and the admin API.

use std::{sync::Arc, time::Instant};

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tenantgate::{backend::Limits, provision, Backend, Domain, Error, MigrationFolder, TenantName};

use crate::{details::bearer_matches, guard::BYPASS_HEADER, metrics, watcher::GuardState};

/// What the health, metrics and admin routes need.
#[derive(Clone)]
pub struct AdminState {
    /// The guard's state.
    pub guard: Arc<GuardState>,
    /// The store, for provisioning.
    pub backend: Arc<dyn Backend>,
    /// The migration folder tenants are provisioned from.
    pub folder: Arc<MigrationFolder>,
    /// `TENANTGATE_ADMIN_TOKEN`; admin routes are off when `None`.
    pub token: Option<String>,
    /// Renders `/metrics`; the route is absent when `None`.
    pub metrics: Option<PrometheusHandle>,
}

/// The probes and the fleet view:
///
/// - `GET /livez`: 200 while the process serves requests (a liveness probe);
/// - `GET /readyz`: 503 exactly while the guard cannot tell which tenants
///   are ready (the registry is unreachable), else 200 (a readiness probe);
/// - `GET /health/migrations`: the fleet, 503 while any tenant is not
///   served (a monitoring check, not a probe: one tenant behind would pull
///   every replica out of rotation);
/// - `GET /metrics`, when a recorder is installed.
///
/// While the emergency bypass is on, every response says so in
/// [`BYPASS_HEADER`].
pub fn health_router(state: AdminState) -> Router {
    let mut router = Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/health/migrations", get(health));
    if state.metrics.is_some() {
        router = router.route("/metrics", get(render_metrics));
    }
    marked(router.with_state(state.clone()), &state)
}

/// `POST /admin/tenants`, behind `Authorization: Bearer <token>`; every
/// admin route answers 404 when no token is configured.
pub fn admin_router(state: AdminState) -> Router {
    marked(
        Router::new()
            .route("/admin/tenants", post(create_tenant))
            .with_state(state.clone()),
        &state,
    )
}

/// Adds [`BYPASS_HEADER`] to every response of `router` while the bypass is on.
fn marked(router: Router, state: &AdminState) -> Router {
    if !state.guard.config().dangerous_bypass {
        return router;
    }
    router.layer(axum::middleware::map_response(
        |mut response: Response| async move {
            response
                .headers_mut()
                .insert(BYPASS_HEADER, HeaderValue::from_static("disabled"));
            response
        },
    ))
}

/// Whether the request carries the admin token (false when none is set).
fn authorized(state: &AdminState, headers: &HeaderMap) -> bool {
    bearer_matches(headers, state.token.as_deref())
}

async fn ready(State(state): State<AdminState>) -> Response {
    if state.guard.state_unknown() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the migration state is unknown (the registry cannot be read)\n",
        )
            .into_response()
    } else {
        "ready\n".into_response()
    }
}

async fn health(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let guard = &state.guard;
    let snapshot = guard.snapshot();
    let required = guard.required();
    let not_served: Vec<_> = snapshot.tenants().filter(|t| t.blocked.is_some()).collect();
    let stale = guard.state_unknown();
    let bypass = guard.config().dangerous_bypass;
    let healthy = not_served.is_empty() && !stale;
    let counts: serde_json::Map<String, serde_json::Value> = snapshot
        .counts_by_state()
        .into_iter()
        .map(|(state, n)| (state.as_str().to_owned(), json!(n)))
        .collect();
    let mut body = json!({
        "status": if healthy { "ok" } else if stale { "unknown" } else { "degraded" },
        "required": {
            "tenant_versions": required.tenant.iter().map(|m| m.version).collect::<Vec<_>>(),
            "shared_versions": required.shared.iter().map(|m| m.version).collect::<Vec<_>>(),
            "tenant_keys": required.tenant.iter().map(|m| m.key.as_str()).collect::<Vec<_>>(),
            "digest": required.digest(),
        },
        "tenants": snapshot.tenants().count(),
        "counts": counts,
        "served": snapshot.tenants().count() - not_served.len(),
        "not_served": not_served.len(),
        "shared_missing": snapshot.shared_missing(),
        "last_refresh_unix": snapshot.refreshed_at().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs()),
        "snapshot_age_seconds": guard.age().as_secs_f64(),
        "migration_check": if bypass { "disabled" } else { "enabled" },
    });
    let unreachable = snapshot.unreachable();
    if !unreachable.tenants.is_empty() {
        body["tenants_unreachable"] = json!(unreachable.tenants.len());
    }
    if !unreachable.placements.is_empty() {
        let mut down: Vec<_> = unreachable.placements.iter().collect();
        down.sort();
        body["placements_unreachable"] = json!(down
            .into_iter()
            .map(|(placement, why)| json!({ "placement": placement, "error": why }))
            .collect::<Vec<_>>());
    }
    if authorized(&state, &headers) {
        body["tenants_not_served"] = json!(not_served
            .iter()
            .map(|t| json!({ "tenant": t.name, "state": t.state, "blocked": t.blocked }))
            .collect::<Vec<_>>());
    }
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn render_metrics(State(state): State<AdminState>) -> Response {
    metrics::snapshot_age(state.guard.age());
    let text = state
        .metrics
        .as_ref()
        .map(PrometheusHandle::render)
        .unwrap_or_default();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct NewTenant {
    name: String,
    #[serde(default)]
    domains: Vec<String>,
}

async fn create_tenant(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if state.token.is_none() {
        return StatusCode::NOT_FOUND.into_response();
    }
    if !authorized(&state, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "unauthorized" })),
        )
            .into_response();
    }
    let request: NewTenant = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": format!("invalid JSON body: {e}") })),
            )
                .into_response()
        }
    };
    let parsed = TenantName::parse(&request.name).and_then(|name| {
        let domains = request
            .domains
            .iter()
            .map(|d| Domain::parse(d))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((name, domains))
    });
    let (name, domains) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return error_response(&e),
    };
    let started = Instant::now();
    let result = provision::create_tenant(
        state.backend.as_ref(),
        &state.folder,
        &name,
        &domains,
        &Limits::default(),
    )
    .await;
    metrics::provisioning(started.elapsed(), result.is_ok());
    match result {
        Ok(created) => (StatusCode::CREATED, Json(json!(created))).into_response(),
        Err(e) => error_response(&e),
    }
}

fn error_response(error: &Error) -> Response {
    let status = match error {
        Error::InvalidTenantName { .. } | Error::InvalidDomain { .. } => StatusCode::BAD_REQUEST,
        Error::TenantExists { .. } | Error::DomainTaken { .. } => StatusCode::CONFLICT,
        Error::DatabaseUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        Error::ProvisionFailed { .. } | Error::TenantLeftFailed { .. } => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (
        status,
        Json(json!({ "error": error.to_string(), "failure": error.failure() })),
    )
        .into_response()
}
