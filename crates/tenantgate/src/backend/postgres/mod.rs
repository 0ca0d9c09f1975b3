//! PostgreSQL: one schema per tenant, the registry in schema `tenantgate`.
//!
//! Every tenant operation runs in a transaction that takes a
//! transaction-scoped advisory lock keyed on the tenant's name and sets
//! `search_path` with `SET LOCAL`, so commit or rollback releases both and
//! no connection ever carries one tenant's search path into other work.

mod adopt;
mod apply;
mod backfill;
mod changes;
mod connect;
mod conninfo;
mod fingerprint;
mod ledger;
mod poll;
mod provision;
mod registry;
mod sql;
mod watch;

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::atomic::{AtomicBool, Ordering},
};

use async_trait::async_trait;
use tokio_postgres::Client;

pub use self::conninfo::{settings, ConnectionSettings, APPLICATION_NAME};

use self::{
    apply::{apply_set, ApplyFailure, Target},
    connect::Connector,
    ledger::LedgerScope,
    sql::error_while,
};
use crate::{
    adopt::{AdoptSource, Adoptee, Candidate},
    backend::{
        failure::{backfill_failure, tenant_failure},
        Backend, BackfillMode, BackfillOutcome, ChangeTracking, Ledgers, Limits, StateChange,
        TenantSession, Watch, WatchMode,
    },
    migrations::Backfill,
    AppliedMigration, Domain, Error, LedgerKind, MigrationSet, Tenant, TenantFailure, TenantName,
};

/// The `NOTIFY tenantgate` payload asking servers to re-read their required set.
const RELOAD_PAYLOAD: &str = "*reload";

/// A PostgreSQL database holding the registry and the tenant schemas.
pub struct PgBackend {
    connector: Connector,
    /// How [`Backend::watch`] learns of changes.
    watch: WatchMode,
    /// Set once this process saw the registry installed at its version.
    prepared: AtomicBool,
    /// Which ledger the tenant schemas hold, and (Django) whose rows count.
    ledger: LedgerScope,
}

/// Runs `$op` with `$client` bound to a pooled connection, which goes back
/// to the pool only when the operation succeeded.
macro_rules! pooled {
    ($self:ident, |$client:ident| $op:expr) => {{
        let mut $client = $self.connector.checkout().await?;
        let result = $op;
        $client.keep(result.is_ok());
        result
    }};
}

impl PgBackend {
    /// Prepares to connect to the database a libpq-style URL names; connects lazily.
    pub fn new(url: &str) -> Result<Self, Error> {
        Ok(Self {
            connector: Connector::new(url)?,
            watch: WatchMode::Listen,
            prepared: AtomicBool::new(false),
            ledger: LedgerScope::default(),
        })
    }

    /// The same store, reading (and, for sqlx, writing) `kind` ledgers; of
    /// a Django ledger, only the rows of `apps`.
    pub fn with_ledger(mut self, kind: LedgerKind, apps: Vec<String>) -> Self {
        self.ledger = LedgerScope { kind, apps };
        self
    }

    /// The same store, learning of registry changes as `mode` says.
    pub fn watching(mut self, mode: WatchMode) -> Self {
        self.watch = mode;
        self
    }
}

#[async_trait]
impl Backend for PgBackend {
    fn describe(&self) -> String {
        self.connector.describe()
    }

    fn container(&self, tenant: &TenantName) -> String {
        container(tenant)
    }

    fn dialect(&self) -> crate::sql::Dialect {
        crate::sql::Dialect::Postgres
    }

    fn ledger_kind(&self) -> LedgerKind {
        self.ledger.kind
    }

    async fn prepare(&self) -> Result<(), Error> {
        if self.prepared.load(Ordering::Relaxed) {
            return Ok(());
        }
        pooled!(self, |client| registry::prepare(&mut client).await)?;
        self.prepared.store(true, Ordering::Relaxed);
        Ok(())
    }

    async fn apply_shared_now(
        &self,
        set: &MigrationSet,
        limits: &Limits,
    ) -> Result<Vec<i64>, Error> {
        pooled!(self, |client| apply_set(
            &client,
            &Target::shared(),
            set,
            limits
        )
        .await)
        .map_err(ApplyFailure::into_shared_error)
    }

    async fn shared_ledger(&self) -> Result<Vec<AppliedMigration>, Error> {
        let rows = pooled!(self, |client| {
            client
            .query_typed(
                "SELECT version, description, checksum FROM tenantgate._shared_migrations WHERE success ORDER BY version",
                &[],
            )
            .await
            .map_err(|e| error_while("reading the shared ledger", &e))
        })?;
        Ok(rows
            .iter()
            .map(|r| AppliedMigration {
                version: r.get(0),
                description: r.get(1),
                checksum: r.get(2),
            })
            .collect())
    }

    async fn tenants(&self) -> Result<Vec<Tenant>, Error> {
        pooled!(self, |client| registry::tenants(&client, None).await)
    }

    async fn tenants_named(&self, names: &[TenantName]) -> Result<Vec<Tenant>, Error> {
        pooled!(self, |client| registry::tenants(&client, Some(names)).await)
    }

    async fn watch(&self) -> Result<Box<dyn Watch>, Error> {
        Ok(match &self.watch {
            WatchMode::Listen => Box::new(watch::PgWatch::open(&self.connector).await?),
            WatchMode::ListenAt(url) => {
                Box::new(watch::PgWatch::open(&Connector::new(url)?).await?)
            }
            WatchMode::Poll(interval) => {
                Box::new(poll::PgPollWatch::open(&self.connector, *interval).await?)
            }
        })
    }

    async fn create_tenant(
        &self,
        tenant: &TenantName,
        domains: &[Domain],
        set: &MigrationSet,
        limits: &Limits,
    ) -> Result<Vec<i64>, Error> {
        pooled!(self, |client| provision::create_tenant(
            &client, tenant, domains, set, limits
        )
        .await)
    }

    async fn drop_tenant(&self, tenant: &TenantName) -> Result<(), Error> {
        pooled!(self, |client| provision::drop_tenant(
            &client,
            tenant,
            &Limits::default()
        )
        .await)
    }

    async fn read_ledgers(&self, tenants: &[TenantName]) -> Result<Ledgers, Error> {
        ledger::read_ledgers(&self.connector, tenants, &self.ledger).await
    }

    async fn catalog_drift(
        &self,
        set: &MigrationSet,
        tenants: &[(TenantName, Vec<i64>)],
    ) -> Result<HashMap<TenantName, Vec<String>>, Error> {
        fingerprint::catalog_drift(&self.connector, set, tenants).await
    }

    async fn catalog_tracking(
        &self,
        tenants: &[(TenantName, Vec<i64>)],
    ) -> Result<ChangeTracking, Error> {
        pooled!(self, |client| changes::tracking(&mut client, tenants).await)
    }

    async fn record_verdicts(
        &self,
        verdicts: &[(TenantName, Vec<i64>, bool)],
        tracking: &ChangeTracking,
    ) -> Result<(), Error> {
        let ChangeTracking::Tracked { since, tracker, .. } = tracking else {
            return Ok(());
        };
        pooled!(self, |client| changes::record(
            &mut client,
            verdicts,
            since,
            *tracker
        )
        .await)
    }

    async fn sync_registry(&self, tenants: &[TenantName]) -> Result<(), Error> {
        if tenants.is_empty() {
            return Ok(());
        }
        if self.ledger.kind == LedgerKind::Django {
            let ledgers = self.read_ledgers(tenants).await?;
            return pooled!(self, |client| registry::write_ledgers(
                &mut client,
                &ledgers
            )
            .await);
        }
        pooled!(self, |client| registry::sync_registry(
            &mut client,
            tenants,
            self.ledger.kind
        )
        .await)
    }

    async fn record_states(&self, changes: &[StateChange]) -> Result<(), Error> {
        if changes.is_empty() {
            return Ok(());
        }
        pooled!(self, |client| registry::record_states(&mut client, changes)
            .await)
    }

    async fn catalog_digests(
        &self,
        tenants: &[TenantName],
    ) -> Result<HashMap<TenantName, String>, Error> {
        pooled!(self, |client| fingerprint::digests(&client, tenants).await)
    }

    async fn catalog_lines(
        &self,
        tenants: &[TenantName],
    ) -> Result<HashMap<TenantName, BTreeSet<String>>, Error> {
        pooled!(self, |client| fingerprint::lines(&client, tenants).await)
    }

    async fn adoption_candidates(&self, source: &AdoptSource) -> Result<Vec<Candidate>, Error> {
        pooled!(self, |client| adopt::candidates(&client, source).await)
    }

    async fn existing_schemas(&self, schemas: &[String]) -> Result<HashSet<String>, Error> {
        pooled!(self, |client| adopt::existing_schemas(&client, schemas)
            .await)
    }

    async fn domain_owners(&self) -> Result<HashMap<String, String>, Error> {
        pooled!(self, |client| adopt::domain_owners(&client).await)
    }

    async fn register_existing(
        &self,
        adoptees: &[Adoptee],
        baseline: Option<&MigrationSet>,
    ) -> Result<(), Error> {
        pooled!(self, |client| adopt::register(
            &mut client,
            adoptees,
            baseline
        )
        .await)
    }

    async fn announce_reload(&self) -> Result<(), Error> {
        pooled!(self, |client| registry::notify(&*client, RELOAD_PAYLOAD)
            .await
            .map_err(|e| error_while("announcing the reload", &e)))
    }

    async fn open_session(&self) -> Result<Box<dyn TenantSession>, Error> {
        Ok(Box::new(PgSession {
            client: self.connector.connect().await?,
            ledger: self.ledger.kind,
        }))
    }
}

/// One dedicated connection migrating tenants one after another.
struct PgSession {
    client: Client,
    ledger: LedgerKind,
}

#[async_trait]
impl TenantSession for PgSession {
    async fn migrate_tenant(
        &mut self,
        tenant: &TenantName,
        set: &MigrationSet,
        limits: &Limits,
    ) -> Result<Vec<i64>, TenantFailure> {
        apply_set(
            &self.client,
            &Target::tenant(tenant, self.ledger),
            set,
            limits,
        )
        .await
        .map_err(|f| tenant_failure(tenant, f))
    }

    async fn record_failure(
        &mut self,
        tenant: &TenantName,
        failure: &TenantFailure,
    ) -> Result<(), Error> {
        registry::record_failure(&mut self.client, tenant, failure).await
    }

    async fn run_backfill(
        &mut self,
        tenant: &TenantName,
        backfill: &Backfill,
        mode: BackfillMode,
        limits: &Limits,
    ) -> Result<BackfillOutcome, TenantFailure> {
        backfill::run_backfill(
            &self.client,
            &Target::tenant(tenant, self.ledger),
            backfill,
            mode,
            limits,
        )
        .await
        .map_err(|f| backfill_failure(tenant, backfill, f))
    }
}

/// Where a tenant lives, for messages.
fn container(tenant: &TenantName) -> String {
    format!("schema {}", tenant.quoted())
}
