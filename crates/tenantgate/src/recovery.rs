//! What heals a failure, as data: the engine says *what* to do, each edge
//! (the CLI's text and JSON, the HTTP 503 page) spells it in its own terms.
//!
//! ```
//! use tenantgate::{Recovery, TenantName};
//!
//! let heal = Recovery::MigrateTenant { tenant: TenantName::parse("acme").unwrap() };
//! assert_eq!(heal.to_string(), "apply the migrations tenant acme lacks");
//! assert_eq!(
//!     serde_json::to_value(&heal).unwrap(),
//!     serde_json::json!({ "action": "migrate_tenant", "tenant": "acme" })
//! );
//! ```

use std::fmt;

use crate::TenantName;

/// One step that heals a tenant, the shared schema or the migration folder.
///
/// Its `Display` says the step in words, naming no program: a library user
/// shows it as it is; the `tenantgate` binary turns it into the command
/// that runs it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Recovery {
    /// Apply the migrations the tenant lacks (a rerun of its migration).
    MigrateTenant {
        /// The tenant.
        tenant: TenantName,
    },
    /// Apply what the shared schema lacks (a fleet migration).
    MigrateShared,
    /// Find and end the sessions holding locks on the tenant, then apply
    /// what it lacks.
    FindLockHolder {
        /// The tenant.
        tenant: TenantName,
    },
    /// Once the database answers again, apply what the tenant lacks.
    RetryWhenReachable {
        /// The tenant.
        tenant: TenantName,
    },
    /// Fix the migration file (or the object in the tenant it conflicts
    /// with), then apply what the tenant lacks.
    FixMigration {
        /// The tenant.
        tenant: TenantName,
        /// The migration file.
        file: String,
    },
    /// Fix the backfill (or the data it trips on), then run it again for
    /// the tenant.
    FixBackfill {
        /// The tenant.
        tenant: TenantName,
        /// The backfill's name.
        backfill: String,
    },
    /// Put back the migration file as it was applied: migrations are
    /// forward-only, new changes go in a new migration.
    RestoreFile {
        /// The migration file.
        file: String,
    },
    /// A migration is applied but has no file here: deploy the migration
    /// folder that holds it.
    DeployMissingFile {
        /// The applied version.
        version: i64,
    },
    /// The tenant's schema (or file) or its ledger is gone: restore it from
    /// a backup, or drop the tenant and create it again.
    RestoreOrRecreate {
        /// The tenant.
        tenant: TenantName,
    },
    /// Provisioning failed and nothing of it remains: fix the cause (the
    /// file, when one failed) and create the tenant again.
    CreateAgain {
        /// The tenant.
        tenant: TenantName,
        /// The migration file that failed, if one did.
        file: Option<String>,
    },
    /// The live catalog differs from what the ledger promises: restore the
    /// objects from a backup, or delete the ledger rows of the migrations
    /// that made them and apply them again.
    RepairDrift {
        /// The tenant.
        tenant: TenantName,
    },
    /// The registry says the tenant drifted: compare its catalog again.
    VerifyDeep {
        /// The tenant.
        tenant: TenantName,
    },
    /// The tenant is being moved to another placement: wait for the move,
    /// or, if it was interrupted, run it again, which finishes or undoes it.
    FinishMove {
        /// The tenant.
        tenant: TenantName,
        /// Where it is being moved.
        to: String,
    },
    /// A placement holds the tenant, built completely, but its registry row
    /// was never written (the run stopped between the two commits): create
    /// it again on that placement, which registers what is there.
    FinishCreate {
        /// The tenant.
        tenant: TenantName,
        /// The placement holding it.
        placement: String,
    },
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recovery::MigrateTenant { tenant } => {
                write!(f, "apply the migrations tenant {tenant} lacks")
            }
            Recovery::MigrateShared => f.write_str("apply the shared migrations"),
            Recovery::FindLockHolder { tenant } => write!(
                f,
                "end the sessions holding locks on tenant {tenant}, then apply what it lacks"
            ),
            Recovery::RetryWhenReachable { tenant } => write!(
                f,
                "once the database answers, apply the migrations tenant {tenant} lacks"
            ),
            Recovery::FixMigration { tenant, file } => write!(
                f,
                "fix {file} or the object in tenant {tenant} it conflicts with, then apply what the tenant lacks"
            ),
            Recovery::FixBackfill { tenant, backfill } => write!(
                f,
                "fix backfill {backfill} or the data it trips on, then run it again for tenant {tenant}"
            ),
            Recovery::RestoreFile { file } => write!(
                f,
                "restore {file} as it was applied (migrations are forward-only: put new changes in a new migration)"
            ),
            Recovery::DeployMissingFile { version } => write!(
                f,
                "applied migration {version} has no file here: deploy the migration folder that has it"
            ),
            Recovery::RestoreOrRecreate { tenant } => write!(
                f,
                "restore tenant {tenant}'s storage from a backup, or drop the tenant and create it again"
            ),
            Recovery::CreateAgain { tenant, file } => match file {
                Some(file) => write!(f, "fix {file}, then create tenant {tenant} again; nothing of the failed attempt remains"),
                None => write!(f, "create tenant {tenant} again once the database error is resolved; nothing of the failed attempt remains"),
            },
            Recovery::RepairDrift { tenant } => write!(
                f,
                "restore tenant {tenant}'s drifted objects from a backup, or delete the ledger rows of the migrations that created them and apply them again"
            ),
            Recovery::VerifyDeep { tenant } => {
                write!(f, "compare tenant {tenant}'s catalog with its ledger again")
            }
            Recovery::FinishMove { tenant, to } => write!(
                f,
                "tenant {tenant} is being moved to placement {to}: wait for the move, or if it was interrupted, move it again (which finishes or undoes it)"
            ),
            Recovery::FinishCreate { tenant, placement } => write!(
                f,
                "placement {placement} holds tenant {tenant} but the registry does not: create it again on {placement} to register it"
            ),
        }
    }
}
