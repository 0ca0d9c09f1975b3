//! The registry's view of tenants: names, placements, states, domains.
//!
//! On PostgreSQL the registry lives in schema `tenantgate` beside the tenant
//! schemas, so a tenant's migrations and its registry row commit together.
//!
//! ```
//! use tenantgate::TenantState;
//!
//! assert_eq!(TenantState::parse("ready"), Some(TenantState::Ready));
//! assert_eq!(format!("[{:<8}]", TenantState::Drift), "[drift   ]");
//! ```

use std::fmt;

use crate::{migrations::MigrationSet, Domain, TenantName};

/// The placement every tenant has until scale-out assigns others.
pub const DEFAULT_PLACEMENT: &str = "default";

/// A tenant's state as the registry records it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum TenantState {
    /// Its ledger holds every migration known when it was last written.
    Ready,
    /// Migrations are missing (or a no-transaction migration has yet to run).
    Pending,
    /// The last attempt to migrate it failed; the error is kept.
    Failed,
    /// The live catalog disagrees with what its ledger promises.
    Drift,
}

impl TenantState {
    /// The state's name as stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            TenantState::Ready => "ready",
            TenantState::Pending => "pending",
            TenantState::Failed => "failed",
            TenantState::Drift => "drift",
        }
    }

    /// Parses a stored state name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ready" => TenantState::Ready,
            "pending" => TenantState::Pending,
            "failed" => TenantState::Failed,
            "drift" => TenantState::Drift,
            _ => return None,
        })
    }
}

impl fmt::Display for TenantState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// One row of a tenant's ledger.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppliedMigration {
    /// The migration's version.
    pub version: i64,
    /// The description recorded when it was applied.
    pub description: String,
    /// SHA-384 of the file as it was applied.
    #[serde(with = "hex_bytes")]
    pub checksum: Vec<u8>,
}

/// A registered tenant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Tenant {
    /// The tenant's name, which is also its schema's name.
    pub name: TenantName,
    /// Which database server holds it.
    pub placement: String,
    /// The placement it is being moved to, while a move is under way (or
    /// was interrupted): it is not served until the move is finished or undone.
    pub moving_to: Option<String>,
    /// The state the registry records.
    pub state: TenantState,
    /// Versions its ledger held when the registry row was last written.
    pub applied_versions: Vec<i64>,
    /// The checksums of `applied_versions`, in the same order.
    #[serde(skip)]
    pub applied_checksums: Vec<Vec<u8>>,
    /// Domains that route to it.
    pub domains: Vec<Domain>,
    /// The error of the last failed attempt, or the drift found.
    pub last_error: Option<String>,
    /// When the tenant was created (RFC 3339).
    pub created_at: String,
    /// When its registry row last changed (RFC 3339).
    pub updated_at: String,
}

impl Tenant {
    /// The state as seen against `set`: a `ready` tenant whose recorded
    /// versions lack a migration of the set is `pending`.
    pub fn effective_state(&self, set: &MigrationSet) -> TenantState {
        match self.state {
            TenantState::Ready
                if set
                    .iter()
                    .any(|m| !set.holds(m, |v| self.applied_versions.contains(&v))) =>
            {
                TenantState::Pending
            }
            state => state,
        }
    }
}

mod hex_bytes {
    pub(super) fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }
}

/// A registry row's text read back as what it must be; a row that is not
/// (edited by hand) is an error naming it, never silently dropped.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) fn read_back<T, E: fmt::Display>(
    what: &str,
    text: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, crate::Error> {
    parse(text).map_err(|e| crate::Error::Database {
        context: "reading the registry".into(),
        source: crate::DbError {
            code: None,
            message: format!("a row holds {what} {text:?}, which is not valid: {e}"),
            connection_lost: false,
        },
    })
}
