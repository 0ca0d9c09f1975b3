//! tenantgate: schema-per-tenant migrations that never leave a half-built tenant.
//!
//! The engine provisions tenants atomically, migrates a fleet of tenants with
//! one transaction per tenant, and verifies every tenant's ledger and live
//! catalog against the migration files. It never prints: it returns typed
//! [`Error`]s and reports [`Progress`] events to a caller-supplied sink.
//!
//! ```no_run
//! # async fn example() -> Result<(), tenantgate::Error> {
//! use tenantgate::{connect, fleet, MigrationFolder, TenantName};
//!
//! let folder = MigrationFolder::load("migrations")?;
//! let backend = connect("postgres://app@localhost/app").await?;
//! let acme = TenantName::parse("acme")?;
//! tenantgate::provision::create_tenant(backend.as_ref(), &folder, &acme, &[]).await?;
//! let report = fleet::migrate(
//!     backend.as_ref(),
//!     &folder,
//!     &fleet::FleetOptions::default(),
//!     &|_progress| {},
//!     &tokio_util::sync::CancellationToken::new(),
//! )
//! .await?;
//! assert!(report.all_ready());
//! # Ok(())
//! # }
//! ```

pub mod backend;
pub mod domain;
pub mod error;
pub mod fleet;
pub mod migrations;
pub mod progress;
pub mod provision;
pub mod readiness;
pub mod recovery;
pub mod registry;
pub mod sql;
pub mod tenant_name;
pub mod verify;

pub use backend::{connect, Backend, TenantSession, Watch};
pub use domain::Domain;
pub use error::{DbError, Error, FailureKind, TenantFailure};
pub use migrations::{Migration, MigrationFolder, MigrationSet};
pub use progress::Progress;
pub use recovery::Recovery;
pub use registry::{AppliedMigration, Tenant, TenantState};
pub use tenant_name::TenantName;
