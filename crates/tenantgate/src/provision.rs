//! Creating and dropping tenants, all or nothing.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! # let dir = tempfile::tempdir().unwrap();
//! # let (migrations, data) = (dir.path().join("migrations"), dir.path().join("data"));
//! # std::fs::create_dir_all(migrations.join("tenant")).unwrap();
//! # std::fs::write(migrations.join("tenant/0001_users.sql"), "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);").unwrap();
//! # let url = format!("sqlite://{}", data.display());
//! use tenantgate::{connect, provision, Domain, MigrationFolder, TenantName};
//!
//! let backend = connect(&url).await?;
//! let folder = MigrationFolder::load(&migrations)?;
//! let acme = TenantName::parse("acme")?;
//! let created = provision::create_tenant(
//!     backend.as_ref(),
//!     &folder,
//!     &acme,
//!     &[Domain::parse("acme.example.com")?],
//!     &Default::default(),
//! )
//! .await?;
//! assert_eq!(created.applied, [1]);
//! provision::drop_tenant(backend.as_ref(), &acme).await?;
//! assert!(backend.tenants().await?.is_empty());
//! # Ok::<(), tenantgate::Error>(())
//! # }).unwrap();
//! ```

use std::time::{Duration, Instant};

use crate::{backend::Limits, Backend, Domain, Error, MigrationFolder, TenantName, TenantState};

/// What a successful `create_tenant` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Provisioned {
    /// The tenant, which is also its schema's name.
    pub tenant: TenantName,
    /// Domains that now route to it.
    pub domains: Vec<Domain>,
    /// The placement it lives on.
    pub placement: String,
    /// Versions applied, in order.
    pub applied: Vec<i64>,
    /// Its state afterwards (always `ready`).
    pub state: TenantState,
    /// How long provisioning took.
    #[serde(rename = "duration_ms", serialize_with = "crate::fleet::millis")]
    pub duration: Duration,
}

/// Provisions `tenant` atomically: shared migrations first, then one
/// transaction that creates the schema, applies every tenant migration (up
/// to the first `-- no-transaction` one), writes their ledger rows, the
/// registry row and the domains. When that transaction fails, nothing of the
/// tenant exists and the failure is recorded as an event.
///
/// No-transaction migrations run right after the commit; until they
/// succeed the tenant is `pending`, and if one fails it is `failed` and
/// [`Error::TenantLeftFailed`] is returned.
pub async fn create_tenant(
    backend: &dyn Backend,
    folder: &MigrationFolder,
    tenant: &TenantName,
    domains: &[Domain],
    limits: &Limits,
) -> Result<Provisioned, Error> {
    create_tenant_on(backend, folder, None, tenant, domains, limits).await
}

/// [`create_tenant`] on `placement` (`None`: the placement holding the
/// fewest tenants; see [`crate::placement`]).
pub async fn create_tenant_on(
    backend: &dyn Backend,
    folder: &MigrationFolder,
    placement: Option<&str>,
    tenant: &TenantName,
    domains: &[Domain],
    limits: &Limits,
) -> Result<Provisioned, Error> {
    let started = Instant::now();
    let mut domains = domains.to_vec();
    domains.sort();
    domains.dedup();
    folder.refuse_transaction_control(backend.dialect())?;
    backend.prepare().await?;
    if backend.has_citus().await? {
        crate::lint::refuse_for_citus(folder)?;
    }
    backend.apply_shared(&folder.shared, limits).await?;
    let (placement, mut applied) = backend
        .create_tenant_on(placement, tenant, &domains, &folder.tenant, limits)
        .await?;
    if applied.len() < folder.tenant.len() {
        let mut session = backend.open_session_on(&placement).await?;
        let migrated = session.migrate_tenant(tenant, &folder.tenant, limits).await;
        let recorded = match &migrated {
            Err(failure) => session.record_failure(tenant, failure).await,
            Ok(_) => Ok(()),
        };
        session.close().await;
        recorded?;
        applied.extend(migrated.map_err(|failure| Error::TenantLeftFailed {
            tenant: tenant.to_string(),
            failure: Box::new(failure),
        })?);
    }
    Ok(Provisioned {
        tenant: tenant.clone(),
        domains,
        placement,
        applied,
        state: TenantState::Ready,
        duration: started.elapsed(),
    })
}

/// Removes `tenant`: schema, ledger, registry row and domains, in one transaction.
pub async fn drop_tenant(backend: &dyn Backend, tenant: &TenantName) -> Result<(), Error> {
    backend.prepare().await?;
    backend.drop_tenant(tenant).await
}
