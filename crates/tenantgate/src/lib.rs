//! tenantgate: schema-per-tenant migrations that never leave a half-built tenant.
//!
//! The engine provisions tenants atomically, migrates a fleet of tenants with
//! one transaction per tenant, and verifies every tenant's ledger and live
//! catalog against the migration files. It never prints: it returns typed
//! [`Error`]s and reports [`Progress`] events to a caller-supplied sink.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! # let dir = tempfile::tempdir().unwrap();
//! # let (migrations, data) = (dir.path().join("migrations"), dir.path().join("data"));
//! # std::fs::create_dir_all(migrations.join("tenant")).unwrap();
//! # std::fs::write(migrations.join("tenant/0001_users.sql"), "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);").unwrap();
//! # let url = format!("sqlite://{}", data.display());
//! use tenantgate::{connect, fleet, provision, MigrationFolder, TenantName};
//! use tokio_util::sync::CancellationToken;
//!
//! // The embedded store (a data folder); `postgres://…` works the same way.
//! let backend = connect(&url).await?;
//! let folder = MigrationFolder::load(&migrations)?;
//! let acme = TenantName::parse("acme")?;
//! provision::create_tenant(backend.as_ref(), &folder, &acme, &[], &Default::default()).await?;
//!
//! let report = fleet::migrate(
//!     backend.as_ref(),
//!     &folder,
//!     &fleet::FleetOptions::default(),
//!     &|_progress| {},
//!     &CancellationToken::new(),
//! )
//! .await?;
//! assert!(report.all_ready());
//! # Ok::<(), tenantgate::Error>(())
//! # }).unwrap();
//! ```

pub mod adopt;
pub mod backend;
pub mod django;
pub mod domain;
pub mod error;
pub mod exec;
pub mod fleet;
pub mod ledger;
pub mod lint;
pub mod migrations;
pub mod moves;
pub mod peers;
pub mod placement;
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
pub use ledger::LedgerKind;
pub use migrations::{FolderLayout, Migration, MigrationFolder, MigrationSet};
pub use progress::Progress;
pub use recovery::Recovery;
pub use registry::{AppliedMigration, Tenant, TenantState};
pub use tenant_name::TenantName;
