//! The engine's typed errors.
//!
//! ```
//! use tenantgate::{Error, TenantName};
//!
//! let refused = TenantName::parse("Acme Corp").unwrap_err();
//! assert!(matches!(refused, Error::InvalidTenantName { .. }));
//! assert_eq!(refused.kind(), "invalid_tenant_name");
//! ```

use std::{fmt, path::PathBuf};

use crate::migrations::MigrationRef;

/// An error the database reported, kept backend-neutral.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DbError {
    /// The SQLSTATE code, when the database sent one.
    pub code: Option<String>,
    /// The database's own message, verbatim.
    pub message: String,
    /// True when the connection itself failed or closed.
    pub connection_lost: bool,
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{} (SQLSTATE {code})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for DbError {}

/// Why one tenant's migration run did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureKind {
    /// A migration's SQL failed; its transaction was rolled back.
    Migration,
    /// The tenant stayed locked by other sessions past the lock timeout on every attempt.
    LockTimeout,
    /// An applied migration's file changed since it was applied.
    ChecksumMismatch,
    /// The tenant's schema or ledger is missing although the registry lists it.
    LedgerMissing,
    /// The connection to the database was lost mid-run.
    ConnectionLost,
    /// The run was interrupted; the tenant's transaction was rolled back.
    Interrupted,
    /// The framework's migration command (`migrate --exec`) ran and the
    /// tenant's ledger still lacks required migrations.
    Command,
}

/// One tenant's failure, with everything an operator needs to act on it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TenantFailure {
    /// What kind of failure this is.
    pub kind: FailureKind,
    /// The migration that failed, when one did.
    pub migration: Option<MigrationRef>,
    /// The database's own error text, or the engine's explanation.
    pub message: String,
    /// The step that heals it.
    pub recovery: crate::Recovery,
}

impl fmt::Display for TenantFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(m) = &self.migration {
            write!(f, "migration {} ({}): ", m.key, m.file)?;
        }
        write!(f, "{}; to recover: {}", self.message, self.recovery)
    }
}

/// Everything the engine can fail with.
///
/// Each variant names the tenant, migration and database error it concerns,
/// so its `Display` is a complete message for an operator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tenant name broke the naming rule; nothing was sent to the database.
    #[error(
        "invalid tenant name {name:?}: {reason}; {}",
        crate::tenant_name::TENANT_NAME_RULE
    )]
    InvalidTenantName {
        /// The name as given.
        name: String,
        /// Which part of the rule it broke.
        reason: String,
    },
    /// A domain is not a host name.
    #[error("invalid domain {domain:?}: {reason}")]
    InvalidDomain {
        /// The domain as given.
        domain: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The migration folder cannot be used as it is.
    #[error("migration folder {}: {reason}", path.display())]
    MigrationFolder {
        /// The file or folder at fault.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The database URL or another setting is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// The database could not be reached, or went away.
    #[error("database unavailable while {context}: {source}")]
    DatabaseUnavailable {
        /// What the engine was doing.
        context: String,
        /// The underlying error.
        source: DbError,
    },
    /// The database refused a statement outside any tenant's migrations.
    #[error("database error while {context}: {source}")]
    Database {
        /// What the engine was doing.
        context: String,
        /// The underlying error.
        source: DbError,
    },
    /// A tenant with that name (or its schema) already exists.
    #[error("tenant {tenant} already exists ({detail}); nothing was changed")]
    TenantExists {
        /// The tenant.
        tenant: String,
        /// What exists: the registry row or the schema.
        detail: String,
    },
    /// A domain already routes to a tenant.
    #[error("domain {domain} already belongs to tenant {owner}; nothing was changed")]
    DomainTaken {
        /// The domain.
        domain: String,
        /// The tenant that holds it.
        owner: String,
    },
    /// No tenant by that name is registered.
    #[error("unknown tenant {tenant}: no tenant of that name is registered")]
    UnknownTenant {
        /// The name asked for.
        tenant: String,
    },
    /// No placement by that name exists.
    #[error("unknown placement {placement}: the registry knows {}", known.join(", "))]
    UnknownPlacement {
        /// The name asked for.
        placement: String,
        /// The placements that exist.
        known: Vec<String>,
    },
    /// A placement cannot be removed while tenants live there.
    #[error("placement {placement} still holds {tenants} tenant(s); move or drop them first; nothing was changed")]
    PlacementInUse {
        /// The placement.
        placement: String,
        /// How many tenants live there.
        tenants: usize,
    },
    /// Migrations hold statements Citus refuses in distributed schemas;
    /// refused before any SQL runs on a Citus placement.
    #[error("{} statement(s) Citus refuses in distributed schemas, first: {}:{} ({}): {}; nothing was run (tenantgate lint lists them all)", errors(findings), findings[0].file, findings[0].line, findings[0].rule, findings[0].message)]
    CitusRefuses {
        /// What the linter found, errors first.
        findings: Vec<crate::lint::Finding>,
    },
    /// A move could not be made or did not check out; the tenant stays
    /// where it was.
    #[error("moving tenant {tenant} failed: {reason}; it stays on placement {from}")]
    MoveFailed {
        /// The tenant.
        tenant: String,
        /// The placement it stays on.
        from: String,
        /// What went wrong.
        reason: String,
    },
    /// Provisioning failed; the whole transaction was rolled back and nothing of the tenant exists.
    #[error(
        "provisioning tenant {tenant} failed and was rolled back, nothing of it exists: {failure}"
    )]
    ProvisionFailed {
        /// The tenant.
        tenant: String,
        /// What failed and how to recover.
        failure: Box<TenantFailure>,
    },
    /// Applied migrations whose files changed since; `migrate` refuses to run.
    #[error("{} applied migration(s) changed since they were applied, first: {} in {}; restore the original file (migrations are forward-only: add a new migration for new changes)", changed.len(), changed[0].1.file, changed[0].0)]
    ChecksumChanged {
        /// (tenant or `shared`, migration) pairs.
        changed: Vec<(String, MigrationRef)>,
    },
    /// A shared (public schema) migration failed; its transaction was rolled back.
    #[error("shared migration {} ({}) failed and was rolled back: {}", migration.version, migration.file, source)]
    SharedMigrationFailed {
        /// The migration.
        migration: Box<MigrationRef>,
        /// The database's error.
        source: DbError,
    },
    /// The tenant was created, but a no-transaction migration after the
    /// creating transaction failed; the tenant is `failed` and blocked.
    #[error("tenant {tenant} was created but is not ready: {failure}")]
    TenantLeftFailed {
        /// The tenant.
        tenant: String,
        /// What failed and how to recover.
        failure: Box<TenantFailure>,
    },
    /// A transactional migration ends, commits, rolls back or opens a
    /// transaction at top level, which would commit part of a tenant's
    /// transaction; refused before any SQL runs.
    #[error("{file}:{line}: `{statement}` ends or opens a transaction at top level; every migration runs inside its tenant's own transaction, so it would commit part of it (a file that must control transactions starts with `-- no-transaction`)")]
    TransactionControl {
        /// The migration file.
        file: String,
        /// The line the statement starts on.
        line: u64,
        /// Its leading words (`COMMIT`, `START TRANSACTION`).
        statement: String,
    },
    /// A migration file cannot be read as SQL (an unterminated string or
    /// comment); refused before any SQL runs.
    #[error("{file}:{line}: cannot be read as SQL: {message}")]
    UnreadableSql {
        /// The migration file.
        file: String,
        /// The line the problem was found on.
        line: u64,
        /// The tokenizer's explanation.
        message: String,
    },
    /// An entry of a migration folder looks like a migration but cannot be
    /// read as one; nothing is skipped silently.
    #[error("migration folder entry {}: {problem}", path.display())]
    MigrationEntry {
        /// The entry.
        path: PathBuf,
        /// What is wrong with it.
        problem: crate::migrations::EntryProblem,
    },
    /// Migrations a tenant lacks whose version is lower than one it already
    /// holds; refused unless out-of-order application is allowed.
    #[error("{} migration(s) would apply out of order, first: {} to {} (its version is lower than one already applied there); nothing was applied", out_of_order.len(), out_of_order[0].0.file, out_of_order[0].1.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", "))]
    OutOfOrder {
        /// Each migration with the tenants that hold a higher version but not it.
        out_of_order: Vec<(MigrationRef, Vec<crate::TenantName>)>,
    },
    /// No backfill of that name is in the migration folder.
    #[error("no backfill named {name:?} in the migration folder's backfills/; known: {}", if known.is_empty() { "none".to_owned() } else { known.join(", ") })]
    UnknownBackfill {
        /// The name asked for.
        name: String,
        /// The backfills the folder holds.
        known: Vec<String>,
    },
    /// A tenant's ledger records a migration the folder has no file for, so
    /// the shape it promises cannot be built.
    #[error("applied migration {version} has no file in the migration folder, so the schema it promises cannot be rebuilt")]
    MissingMigrationFile {
        /// The applied version.
        version: i64,
    },
    /// The framework's migration command cannot be started at all (no
    /// such program, not executable): one error for the run, not one
    /// failure per tenant.
    #[error("cannot start {program:?}: {reason}")]
    CommandUnstartable {
        /// The program as given.
        program: String,
        /// Why it cannot start.
        reason: String,
    },
    /// The operation was interrupted before it finished.
    #[error("interrupted")]
    Interrupted,
}

/// How many findings are errors.
fn errors(findings: &[crate::lint::Finding]) -> usize {
    findings
        .iter()
        .filter(|f| f.severity == crate::lint::Severity::Error)
        .count()
}

impl Error {
    /// A stable snake_case name for the kind of error, for JSON and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidTenantName { .. } => "invalid_tenant_name",
            Error::InvalidDomain { .. } => "invalid_domain",
            Error::MigrationFolder { .. } => "migration_folder",
            Error::Config(_) => "config",
            Error::DatabaseUnavailable { .. } => "database_unavailable",
            Error::Database { .. } => "database",
            Error::TenantExists { .. } => "tenant_exists",
            Error::DomainTaken { .. } => "domain_taken",
            Error::UnknownTenant { .. } => "unknown_tenant",
            Error::UnknownPlacement { .. } => "unknown_placement",
            Error::PlacementInUse { .. } => "placement_in_use",
            Error::MoveFailed { .. } => "move_failed",
            Error::CitusRefuses { .. } => "citus_refuses",
            Error::ProvisionFailed { .. } => "provision_failed",
            Error::ChecksumChanged { .. } => "checksum_changed",
            Error::SharedMigrationFailed { .. } => "shared_migration_failed",
            Error::TenantLeftFailed { .. } => "tenant_left_failed",
            Error::TransactionControl { .. } => "transaction_control",
            Error::UnreadableSql { .. } => "unreadable_sql",
            Error::MigrationEntry { .. } => "migration_entry",
            Error::OutOfOrder { .. } => "out_of_order",
            Error::UnknownBackfill { .. } => "unknown_backfill",
            Error::MissingMigrationFile { .. } => "missing_migration_file",
            Error::CommandUnstartable { .. } => "command_unstartable",
            Error::Interrupted => "interrupted",
        }
    }

    /// The tenant failure this error carries, with its recovery.
    pub fn failure(&self) -> Option<&TenantFailure> {
        match self {
            Error::ProvisionFailed { failure, .. } | Error::TenantLeftFailed { failure, .. } => {
                Some(failure)
            }
            _ => None,
        }
    }

    /// True when the database was unreachable or the connection was lost.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::DatabaseUnavailable { .. })
    }
}
