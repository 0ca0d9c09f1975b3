//! Prometheus metrics: names, help texts, and the functions that record them.
//!
//! Recorded through the `metrics` facade; [`install`] sets up the Prometheus
//! exporter whose handle renders `/metrics`, with every metric described
//! (`# HELP`) and present from the start. The migration and provisioning
//! counters count what *this process* did (`--migrate-on-start`, the admin
//! API); the tenant-state gauges show the whole fleet, whoever changed it.
//!
//! ```
//! for (name, help) in tenantgate_http::metrics::DESCRIPTIONS {
//!     assert!(name.starts_with("tenantgate_") && !help.is_empty());
//! }
//! ```

use std::{collections::BTreeMap, time::Duration};

use axum::{
    extract::{MatchedPath, Request},
    middleware::Next,
    response::Response,
};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tenantgate::TenantState;

/// Tenants per state (label `state`), fleet-wide.
pub const TENANTS: &str = "tenantgate_tenants";
/// Tenants this process provisioned.
pub const PROVISIONED: &str = "tenantgate_provisioning_succeeded_total";
/// Provisioning attempts of this process that failed (and rolled back).
pub const PROVISION_FAILED: &str = "tenantgate_provisioning_failed_total";
/// Duration of this process's successful provisioning, in seconds.
pub const PROVISION_SECONDS: &str = "tenantgate_provisioning_duration_seconds";
/// Tenant migrations this process applied.
pub const MIGRATIONS_APPLIED: &str = "tenantgate_migrations_applied_total";
/// Tenant migrations that failed (and rolled back) in this process's runs.
pub const MIGRATIONS_FAILED: &str = "tenantgate_migrations_failed_total";
/// Requests the guard answered itself (label `reason`).
pub const REQUESTS_BLOCKED: &str = "tenantgate_requests_blocked_total";
/// Requests let through under the emergency bypass that the guard would
/// have blocked.
pub const REQUESTS_BYPASSED: &str = "tenantgate_requests_bypassed_total";
/// Seconds since the registry was last confirmed.
pub const SNAPSHOT_AGE: &str = "tenantgate_snapshot_age_seconds";
/// Always 1, labelled with the version (`version`).
pub const BUILD_INFO: &str = "tenantgate_build_info";
/// HTTP requests by route template and status class (`route`, `status`).
pub const HTTP_REQUESTS: &str = "tenantgate_http_requests_total";
/// HTTP request latency by route template (`route`), in seconds.
pub const HTTP_SECONDS: &str = "tenantgate_http_request_duration_seconds";

/// Requests the proxy forwarded to the upstream.
pub const PROXY_FORWARDED: &str = "tenantgate_proxy_forwarded_total";
/// Upstream failures seen by the proxy (`kind`: connect, reset, timeout).
pub const PROXY_UPSTREAM_ERRORS: &str = "tenantgate_proxy_upstream_errors_total";
/// Time until the upstream's response headers, in seconds.
pub const PROXY_UPSTREAM_SECONDS: &str = "tenantgate_proxy_upstream_duration_seconds";
/// Whether each placement's server answered its last check: 1 or 0, labelled by placement name.
pub const PLACEMENT_UP: &str = "tenantgate_placement_up";
/// The guard's periodic full refreshes (`outcome`: reread, or unchanged
/// when the registry's version had not moved and the rebuild was skipped).
pub const REGISTRY_REFRESHES: &str = "tenantgate_registry_refreshes_total";

/// Every metric with its help text, as `/metrics` describes it.
pub const DESCRIPTIONS: [(&str, &str); 17] = [
    (
        TENANTS,
        "Registered tenants by state, fleet-wide (whoever changed them).",
    ),
    (PROVISIONED, "Tenants this process provisioned."),
    (
        PROVISION_FAILED,
        "Provisioning attempts of this process that failed and were rolled back.",
    ),
    (
        PROVISION_SECONDS,
        "Duration of this process's successful provisioning.",
    ),
    (
        MIGRATIONS_APPLIED,
        "Tenant migrations this process applied.",
    ),
    (
        MIGRATIONS_FAILED,
        "Tenant migrations that failed and were rolled back in this process's runs.",
    ),
    (
        REQUESTS_BLOCKED,
        "Requests the guard answered itself, by reason.",
    ),
    (
        REQUESTS_BYPASSED,
        "Requests let through under the emergency bypass that the guard would have blocked.",
    ),
    (
        SNAPSHOT_AGE,
        "Seconds since the registry was last confirmed.",
    ),
    (
        BUILD_INFO,
        "Always 1; the version label says which tenantgate runs.",
    ),
    (
        HTTP_REQUESTS,
        "HTTP requests by route template and status class.",
    ),
    (HTTP_SECONDS, "HTTP request latency by route template."),
    (
        PROXY_FORWARDED,
        "Requests the proxy forwarded to the upstream.",
    ),
    (
        PROXY_UPSTREAM_ERRORS,
        "Upstream failures seen by the proxy, by kind (connect, reset, timeout).",
    ),
    (
        PROXY_UPSTREAM_SECONDS,
        "Time until the upstream's response headers.",
    ),
    (
        PLACEMENT_UP,
        "Whether each placement's server answered its last check (1) or not (0).",
    ),
    (
        REGISTRY_REFRESHES,
        "The guard's periodic full refreshes, by outcome (reread, or unchanged: skipped).",
    ),
];

/// The reasons the guard answers a request itself.
const BLOCK_REASONS: [&str; 7] = [
    "missing",
    "failed",
    "drift",
    "checksum_changed",
    "shared_missing",
    "state_unknown",
    "being_moved",
];

/// How often histogram samples recorded since are folded into their
/// buckets. The exporter holds each sample (one per request timed) until
/// then: without this, a server nobody scrapes grew by 16 to 26 bytes a
/// request, 1.5 MB a second at 60,000 requests a second.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the Prometheus recorder for this process, with every metric
/// described and present from the start (counters at zero, the
/// provisioning histogram empty) so dashboards and alerts see them.
/// Memory stays bounded whether or not `/metrics` is scraped: a thread
/// folds recorded samples into their buckets every few seconds.
pub fn install() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(PROVISION_SECONDS.into()),
            &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(HTTP_SECONDS.into()),
                &[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
                ],
            )
        })
        // Up to the default upstream timeout. A histogram rather than a
        // summary: it adds up across proxies, and folding a sample into a
        // bucket is cheap where a summary's sketch costs a logarithm.
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(PROXY_UPSTREAM_SECONDS.into()),
                &[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0,
                ],
            )
        })
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_INTERVAL);
            upkeep.run_upkeep();
        })
        .map_err(|e| format!("cannot start the metrics upkeep thread: {e}"))?;
    for (name, help) in DESCRIPTIONS {
        match name {
            PROVISION_SECONDS | HTTP_SECONDS | PROXY_UPSTREAM_SECONDS => {
                describe_histogram!(name, metrics::Unit::Seconds, help)
            }
            TENANTS | SNAPSHOT_AGE | BUILD_INFO | PLACEMENT_UP => describe_gauge!(name, help),
            _ => describe_counter!(name, help),
        }
    }
    for name in [
        PROVISIONED,
        PROVISION_FAILED,
        MIGRATIONS_APPLIED,
        MIGRATIONS_FAILED,
        REQUESTS_BYPASSED,
        PROXY_FORWARDED,
    ] {
        counter!(name).increment(0);
    }
    for kind in ["connect", "reset", "timeout"] {
        counter!(PROXY_UPSTREAM_ERRORS, "kind" => kind).increment(0);
    }
    for outcome in ["reread", "unchanged"] {
        counter!(REGISTRY_REFRESHES, "outcome" => outcome).increment(0);
    }
    for reason in BLOCK_REASONS {
        counter!(REQUESTS_BLOCKED, "reason" => reason).increment(0);
    }
    // Registered, so the histograms are rendered before the first observation.
    let _ = histogram!(PROVISION_SECONDS);
    let _ = histogram!(PROXY_UPSTREAM_SECONDS);
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    gauge!(SNAPSHOT_AGE).set(0.0);
    Ok(handle)
}

pub(crate) fn blocked(reason: &'static str) {
    counter!(REQUESTS_BLOCKED, "reason" => reason).increment(1);
}

/// Whether `placement`'s server answered its last check (1) or not (0).
pub(crate) fn placement_up(placement: &str, up: bool) {
    gauge!(PLACEMENT_UP, "placement" => placement.to_owned()).set(if up { 1.0 } else { 0.0 });
}

/// A periodic full refresh: `reread`, or `unchanged` (skipped).
pub(crate) fn registry_refreshed(outcome: &'static str) {
    counter!(REGISTRY_REFRESHES, "outcome" => outcome).increment(1);
}

pub(crate) fn bypassed() {
    counter!(REQUESTS_BYPASSED).increment(1);
}

pub(crate) fn tenant_counts(counts: &BTreeMap<TenantState, usize>) {
    for (state, count) in counts {
        gauge!(TENANTS, "state" => state.as_str()).set(*count as f64);
    }
}

pub(crate) fn snapshot_age(age: Duration) {
    gauge!(SNAPSHOT_AGE).set(age.as_secs_f64());
}

/// Records a provisioning attempt.
pub fn provisioning(duration: Duration, succeeded: bool) {
    if succeeded {
        counter!(PROVISIONED).increment(1);
        histogram!(PROVISION_SECONDS).record(duration.as_secs_f64());
    } else {
        counter!(PROVISION_FAILED).increment(1);
    }
}

/// Records the outcome of a fleet run: the migrations it applied, and the
/// migrations that failed (a tenant interrupted or stuck behind locks had no
/// migration fail).
pub fn fleet_run(report: &tenantgate::fleet::FleetReport) {
    let applied: usize = report.tenants.iter().map(|t| t.applied.len()).sum();
    counter!(MIGRATIONS_APPLIED).increment(applied as u64);
    let failed = report
        .failures()
        .filter_map(|t| t.error.as_ref())
        .filter(|e| e.kind == tenantgate::FailureKind::Migration && e.migration.is_some())
        .count();
    counter!(MIGRATIONS_FAILED).increment(failed as u64);
}

/// Middleware that counts requests and times them by route template (the
/// matched path, so labels stay bounded) and status class. Add it with
/// `Router::route_layer(axum::middleware::from_fn(metrics::track))`.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = match response.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    counter!(HTTP_REQUESTS, "route" => route.clone(), "status" => status).increment(1);
    histogram!(HTTP_SECONDS, "route" => route).record(started.elapsed().as_secs_f64());
    response
}
