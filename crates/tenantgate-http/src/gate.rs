//! The fail-hard startup gate: a server refuses to start while any tenant
//! is not served, unless told to start degraded.

use std::fmt;

use tenantgate::{
    readiness::{Blocked, RequiredSet},
    Backend, Error, TenantName,
};

/// What the gate does when tenants are not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupPolicy {
    /// Refuse to start.
    FailHard,
    /// Start anyway; the guard blocks those tenants.
    AllowDegraded,
}

/// A tenant the application may not serve, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NotServed {
    /// The tenant.
    pub tenant: TenantName,
    /// Why.
    pub blocked: Blocked,
}

impl NotServed {
    /// The tenant, why it is not served and what it lacks, without the
    /// recovery: `acme: missing [2 (0002_messages.sql)]`.
    pub fn summary(&self) -> String {
        let missing: Vec<String> = self
            .blocked
            .missing
            .iter()
            .chain(&self.blocked.changed)
            .map(|m| format!("{} ({})", m.key, m.file))
            .collect();
        let mut line = format!("{}: {}", self.tenant, self.blocked.reason.as_str());
        if !missing.is_empty() {
            line.push_str(&format!(" [{}]", missing.join(", ")));
        }
        line
    }
}

impl fmt::Display for NotServed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}; to recover: {}",
            self.summary(),
            self.blocked.recovery
        )
    }
}

/// Assesses every tenant against `required`. Under
/// [`StartupPolicy::FailHard`] any tenant not served is an error listing
/// each one; under [`StartupPolicy::AllowDegraded`] they are returned.
pub async fn startup_gate(
    backend: &dyn Backend,
    required: &RequiredSet,
    policy: StartupPolicy,
) -> Result<Vec<NotServed>, StartupRefused> {
    let assess = async {
        backend.prepare().await?;
        let shared_missing = required.shared_missing(&backend.shared_ledger().await?);
        // The ledgers are the truth: correct registry rows that drifted from them.
        let refreshed = tenantgate::ledger::refresh(backend, &required.tenant).await?;
        Ok::<_, Error>(
            refreshed
                .tenants
                .iter()
                .filter_map(|t| {
                    // A placement that does not answer: its tenants' state is unknown.
                    let blocked = match refreshed.unreachable.get(&t.name) {
                        Some(why) => tenantgate::readiness::Blocked::unreachable(t, why),
                        None => required.assess(t, &shared_missing)?,
                    };
                    Some(NotServed {
                        tenant: t.name.clone(),
                        blocked,
                    })
                })
                .collect::<Vec<_>>(),
        )
    };
    let not_served = assess.await.map_err(StartupRefused::Store)?;
    if policy == StartupPolicy::FailHard && !not_served.is_empty() {
        return Err(StartupRefused::NotReady(not_served));
    }
    Ok(not_served)
}

/// Why the gate refused to start.
#[derive(Debug)]
pub enum StartupRefused {
    /// Tenants are not served.
    NotReady(Vec<NotServed>),
    /// The registry could not be read.
    Store(Error),
}

impl fmt::Display for StartupRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartupRefused::NotReady(tenants) => {
                writeln!(f, "refusing to start: {} tenant(s) not ready (start with --migrate-on-start to migrate first, or --allow-degraded to serve the others):", tenants.len())?;
                for t in tenants {
                    writeln!(f, "  {t}")?;
                }
                Ok(())
            }
            StartupRefused::Store(e) => write!(f, "refusing to start: {e}"),
        }
    }
}

impl std::error::Error for StartupRefused {}
