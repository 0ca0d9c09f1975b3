//! Request-time protection for schema-per-tenant applications.
//!
//! [`GuardLayer`] resolves the tenant from each request's authority and lets
//! the request through only when that tenant holds every migration the
//! application requires (see [`tenantgate::readiness`]). Otherwise it answers
//! 503 with a page (or JSON) that says what is missing and how to heal it;
//! an unknown host gets 404; a malformed host 400. The decision is a hash
//! lookup in an in-memory [`Snapshot`], kept fresh by [`watch_registry`]
//! (`LISTEN tenantgate` plus a periodic full refresh); no request queries
//! the database.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! # let dir = tempfile::tempdir().unwrap();
//! # let migrations = dir.path().join("migrations");
//! # std::fs::create_dir_all(migrations.join("tenant")).unwrap();
//! # std::fs::write(migrations.join("tenant/0001_users.sql"), "CREATE TABLE users (id INTEGER PRIMARY KEY);").unwrap();
//! # let url = format!("sqlite://{}", dir.path().join("data").display());
//! use std::sync::Arc;
//! use axum::{routing::get, Router};
//! use tenantgate::{readiness::RequiredSet, MigrationFolder};
//! use tenantgate_http::{watch_registry, GuardConfig, GuardLayer, ResolvedTenant};
//!
//! // `postgres://…` works the same way.
//! let backend: Arc<dyn tenantgate::Backend> = tenantgate::connect(&url).await?.into();
//! backend.prepare().await?;
//! let required = RequiredSet::from_folder(&MigrationFolder::load(&migrations)?);
//! let state = watch_registry(backend, required, GuardConfig::default()).await?;
//! let app: Router = Router::new()
//!     .route("/", get(|tenant: ResolvedTenant| async move { format!("hello {}", tenant.name) }))
//!     .layer(GuardLayer::new(state));
//! # Ok::<(), tenantgate::Error>(())
//! # }).unwrap();
//! ```

mod clock;
mod deadlines;
mod details;
mod drain;
mod gate;
mod guard;
mod host;
pub mod metrics;
mod pages;
pub mod proxy;
mod recovery_text;
mod routes;
mod snapshot;
mod upstream_pool;
mod watcher;

pub use details::{reference_id, DetailPolicy};
pub use gate::{startup_gate, NotServed, StartupPolicy, StartupRefused};
pub use guard::{Guard, GuardLayer, ResolvedTenant, BYPASS_HEADER};
pub use host::{request_host, HostError};
pub use recovery_text::RecoveryText;
pub use routes::{admin_router, health_router, AdminState};
pub use snapshot::{Snapshot, TenantEntry, TenantRef, Unreachable};
pub use watcher::{watch_registry, GuardConfig, GuardState};
