//! Synthetic registry rows shaped like real ones, for the guard benchmarks
//! (shared by the `tenantgate-bench` binary and the divan benchmark).

use std::{sync::Arc, time::Duration};

use tenantgate::{readiness::RequiredSet, Domain, MigrationSet, Tenant, TenantState};
use tenantgate_http::{GuardConfig, GuardState, Snapshot};

/// `n` ready tenants holding `set`, every other one with a second domain.
pub(crate) fn tenants(n: usize, set: &MigrationSet) -> Vec<Tenant> {
    (0..n)
        .map(|i| {
            let mut domains = vec![Domain::parse(&format!("t{i}.example.com")).expect("valid")];
            if i % 2 == 0 {
                domains.push(Domain::parse(&format!("t{i}.customer-domain.com")).expect("valid"));
            }
            Tenant {
                name: tenantgate::TenantName::parse(&format!("t{i:06}")).expect("a valid name"),
                placement: "default".into(),
                moving_to: None,
                state: TenantState::Ready,
                applied_versions: set.iter().map(|m| m.version).collect(),
                applied_checksums: set.iter().map(|m| m.checksum.clone()).collect(),
                domains,
                last_error: None,
                created_at: String::new(),
                updated_at: String::new(),
            }
        })
        .collect()
}

/// A guard state over `n` such tenants that never goes stale.
pub(crate) fn state(n: usize, set: &MigrationSet) -> Arc<GuardState> {
    let required = RequiredSet {
        tenant: set.clone(),
        shared: MigrationSet::default(),
    };
    let snapshot = Snapshot::build(tenants(n, set), &[], &required);
    let config = GuardConfig {
        staleness_bound: Duration::from_secs(86_400),
        ..Default::default()
    };
    Arc::new(GuardState::new(snapshot, required, config))
}

/// Hosts spread over the first `n` tenants' domains.
pub(crate) fn hosts(n: usize) -> Vec<String> {
    (0..n.min(10_000))
        .map(|i| format!("t{}.example.com", (i * 7919) % n))
        .collect()
}
