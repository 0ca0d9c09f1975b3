//! Prometheus metrics: names, and the functions that record them.
//!
//! Recorded through the `metrics` facade; [`install`] sets up the Prometheus
//! exporter whose handle renders `/metrics`.

use std::{collections::BTreeMap, time::Duration};

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tenantgate::TenantState;

/// Tenants per state (label `state`).
pub const TENANTS: &str = "tenantgate_tenants";
/// Tenants provisioned by this process.
pub const PROVISIONED: &str = "tenantgate_tenants_provisioned_total";
/// Failed provisioning attempts by this process.
pub const PROVISION_FAILURES: &str = "tenantgate_provisioning_failures_total";
/// Provisioning duration in seconds.
pub const PROVISION_SECONDS: &str = "tenantgate_provisioning_duration_seconds";
/// Migrations applied by this process.
pub const MIGRATIONS_APPLIED: &str = "tenantgate_migrations_applied_total";
/// Tenant migration runs that failed in this process.
pub const MIGRATIONS_FAILED: &str = "tenantgate_migrations_failed_total";
/// Requests blocked by the guard (label `reason`).
pub const REQUESTS_BLOCKED: &str = "tenantgate_requests_blocked_total";
/// Requests that would have been blocked but passed under the emergency bypass.
pub const REQUESTS_BYPASSED: &str = "tenantgate_requests_bypassed_total";
/// Seconds since the registry was last confirmed.
pub const SNAPSHOT_AGE: &str = "tenantgate_snapshot_age_seconds";

/// Installs the Prometheus recorder for this process, with every counter
/// present from the start (at zero) so dashboards and alerts see them.
pub fn install() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(PROVISION_SECONDS.into()),
            &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
        )
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    for name in [
        PROVISIONED,
        PROVISION_FAILURES,
        MIGRATIONS_APPLIED,
        MIGRATIONS_FAILED,
        REQUESTS_BYPASSED,
    ] {
        counter!(name).increment(0);
    }
    for reason in [
        "missing",
        "failed",
        "drift",
        "checksum_changed",
        "shared_missing",
        "state_unknown",
    ] {
        counter!(REQUESTS_BLOCKED, "reason" => reason).increment(0);
    }
    Ok(handle)
}

pub(crate) fn blocked(reason: &'static str) {
    counter!(REQUESTS_BLOCKED, "reason" => reason).increment(1);
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
        counter!(PROVISION_FAILURES).increment(1);
    }
}

/// Records the outcome of a fleet run.
pub fn fleet_run(report: &tenantgate::fleet::FleetReport) {
    let applied: usize = report.tenants.iter().map(|t| t.applied.len()).sum();
    counter!(MIGRATIONS_APPLIED).increment(applied as u64);
    counter!(MIGRATIONS_FAILED).increment(report.failures().count() as u64);
}
