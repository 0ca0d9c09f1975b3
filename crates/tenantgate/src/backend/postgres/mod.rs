//! PostgreSQL: one schema per tenant, the registry in schema `tenantgate`.
//!
//! Every tenant operation runs in a transaction that takes a
//! transaction-scoped advisory lock keyed on the tenant's name and sets
//! `search_path` with `SET LOCAL`, so commit or rollback releases both and
//! no connection ever carries one tenant's search path into other work.

mod adopt;
mod announce;
mod apply;
mod backfill;
mod changes;
mod citus;
mod connect;
mod conninfo;
mod fingerprint;
mod ledger;
mod mover;
mod pgpass;
mod placed;
mod placements;
mod poll;
mod provision;
mod registry;
mod spki;
mod sql;
mod watch;

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    future::Future,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use async_trait::async_trait;
use tokio_postgres::Client;

pub use self::conninfo::{settings, ConnectionSettings, APPLICATION_NAME};

use self::{
    announce::Announcer,
    apply::{apply_set, ApplyFailure, Target},
    connect::{Connector, ServerKind},
    ledger::LedgerScope,
    placements::{in_placement, Placements},
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
    moves::{MoveOptions, MoveReport, Settled},
    placement::{Placement, DEFAULT_PLACEMENT},
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
    /// The other placements, read from the registry on first use.
    placements: tokio::sync::RwLock<Option<Arc<Placements>>>,
    /// Placements whose shared migrations could not be applied this run
    /// (unreachable), with why: no tenant work runs there.
    shared_behind: Mutex<HashMap<String, String>>,
    /// Announces the tenants sessions on `default` commit, started by the
    /// first such session (again if the runtime it ran on has ended).
    announcer: Mutex<Option<Announcer>>,
}

/// Tenants of one placement, with the way to reach it.
struct Group {
    placement: String,
    connector: Connector,
    tenants: Vec<TenantName>,
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
            placements: tokio::sync::RwLock::new(None),
            shared_behind: Mutex::new(HashMap::new()),
            announcer: Mutex::new(None),
        })
    }

    /// The placements other than `default`, read once per process (again
    /// with `fresh`).
    async fn placements_now(&self, fresh: bool) -> Result<Arc<Placements>, Error> {
        if !fresh {
            if let Some(loaded) = self.placements.read().await.clone() {
                return Ok(loaded);
            }
        }
        let loaded = Arc::new(pooled!(self, |client| Placements::load(&*client).await)?);
        *self.placements.write().await = Some(loaded.clone());
        Ok(loaded)
    }

    /// How to reach `placement`.
    async fn connector_of(&self, placement: &str) -> Result<Connector, Error> {
        if placement == DEFAULT_PLACEMENT {
            return Ok(self.connector.clone());
        }
        for fresh in [false, true] {
            if let Some(connector) = self.placements_now(fresh).await?.get(placement) {
                return Ok(connector.clone());
            }
        }
        Err(self.placements_now(false).await?.unknown(placement))
    }

    /// `tenants` grouped by the placement they live on.
    async fn route(&self, tenants: &[TenantName]) -> Result<Vec<Group>, Error> {
        let local = |tenants: Vec<TenantName>| Group {
            placement: DEFAULT_PLACEMENT.to_owned(),
            connector: self.connector.clone(),
            tenants,
        };
        if self.placements_now(false).await?.is_empty() {
            return Ok(vec![local(tenants.to_vec())]);
        }
        let located = pooled!(self, |client| placements::locate(&client, tenants).await)?;
        let mut groups: HashMap<&str, Vec<TenantName>> = HashMap::new();
        for tenant in tenants {
            let placement = located
                .get(tenant)
                .map_or(DEFAULT_PLACEMENT, String::as_str);
            groups.entry(placement).or_default().push(tenant.clone());
        }
        let mut routed = Vec::with_capacity(groups.len());
        for (placement, tenants) in groups {
            routed.push(Group {
                placement: placement.to_owned(),
                connector: self.connector_of(placement).await?,
                tenants,
            });
        }
        Ok(routed)
    }

    /// Runs `work` on each placement's share of `tenants`, in parallel,
    /// naming the placement in its errors.
    async fn on_each<T, W, F>(&self, tenants: &[TenantName], work: W) -> Result<Vec<T>, Error>
    where
        W: Fn(Connector, Vec<TenantName>) -> F,
        F: Future<Output = Result<T, Error>>,
    {
        let groups = self.route(tenants).await?;
        futures::future::try_join_all(groups.into_iter().map(|group| {
            let done = work(group.connector, group.tenants);
            async move { done.await.map_err(|e| in_placement(&group.placement, e)) }
        }))
        .await
    }

    /// Like [`Self::on_each`], merging each placement's map into one.
    async fn merged<K, V, W, F>(
        &self,
        tenants: &[TenantName],
        work: W,
    ) -> Result<HashMap<K, V>, Error>
    where
        K: std::hash::Hash + Eq,
        W: Fn(Connector, Vec<TenantName>) -> F,
        F: Future<Output = Result<HashMap<K, V>, Error>>,
    {
        Ok(self
            .on_each(tenants, work)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }

    /// Brings one placement's registry and shared set up.
    async fn bring_shared_up(
        &self,
        connector: &Connector,
        set: &MigrationSet,
        limits: &Limits,
    ) -> Result<Vec<i64>, Error> {
        let mut client = connector.checkout().await?;
        let result = async {
            registry::prepare(&mut client).await?;
            if connector.kind().await? == ServerKind::Citus {
                citus::workers_answer(&client).await?;
            }
            if crate::backend::plan::holds_all(set, &shared_ledger(&client).await?) {
                return Ok(Vec::new());
            }
            apply_set(&client, &Target::shared(), set, limits)
                .await
                .map_err(ApplyFailure::into_shared_error)
        }
        .await;
        client.keep(result.is_ok());
        result
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

    async fn apply_shared(&self, set: &MigrationSet, limits: &Limits) -> Result<Vec<i64>, Error> {
        let mut applied = self.bring_shared_up(&self.connector, set, limits).await?;
        let placements = self.placements_now(true).await?;
        let results =
            futures::future::join_all(placements.iter().map(|(name, connector)| async move {
                (name, self.bring_shared_up(connector, set, limits).await)
            }))
            .await;
        let mut behind = self.shared_behind.lock().expect("shared lock");
        for (name, result) in results {
            match result {
                Ok(versions) => {
                    behind.remove(name);
                    applied.extend(versions);
                }
                // Its tenants fail with this reason; the others go on.
                Err(e) if e.is_unavailable() => {
                    behind.insert(name.clone(), in_placement(name, e).to_string());
                }
                Err(e) => return Err(in_placement(name, e)),
            }
        }
        applied.sort_unstable();
        applied.dedup();
        Ok(applied)
    }

    async fn shared_ledger(&self) -> Result<Vec<AppliedMigration>, Error> {
        pooled!(self, |client| shared_ledger(&client).await)
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
        let kind = self.connector.kind().await?;
        pooled!(self, |client| provision::create_tenant(
            &client, tenant, domains, set, limits, kind
        )
        .await)
    }

    async fn create_tenant_on(
        &self,
        placement: Option<&str>,
        tenant: &TenantName,
        domains: &[Domain],
        set: &MigrationSet,
        limits: &Limits,
    ) -> Result<(String, Vec<i64>), Error> {
        let placement = match placement {
            Some(placement) => placement.to_owned(),
            None if self.placements_now(false).await?.is_empty() => DEFAULT_PLACEMENT.to_owned(),
            None => pooled!(self, |client| placements::least_used(&client).await)?,
        };
        if placement == DEFAULT_PLACEMENT {
            return Ok((
                placement,
                self.create_tenant(tenant, domains, set, limits).await?,
            ));
        }
        let remote = self.connector_of(&placement).await?;
        let applied = placed::create_tenant(
            &self.connector,
            &placement,
            &remote,
            tenant,
            domains,
            set,
            limits,
        )
        .await
        .map_err(|e| in_placement(&placement, e))?;
        Ok((placement, applied))
    }

    async fn drop_tenant(&self, tenant: &TenantName) -> Result<(), Error> {
        let group = self.route(std::slice::from_ref(tenant)).await?.remove(0);
        if group.placement != DEFAULT_PLACEMENT {
            return placed::drop_tenant(&self.connector, &group.connector, tenant)
                .await
                .map_err(|e| in_placement(&group.placement, e));
        }
        pooled!(self, |client| provision::drop_tenant(
            &client,
            tenant,
            &Limits::default()
        )
        .await)
    }

    async fn read_ledgers(&self, tenants: &[TenantName]) -> Result<Ledgers, Error> {
        let scope = &self.ledger;
        self.merged(tenants, |connector, tenants| async move {
            ledger::read_ledgers(&connector, &tenants, scope).await
        })
        .await
    }

    async fn catalog_drift(
        &self,
        set: &MigrationSet,
        tenants: &[(TenantName, Vec<i64>)],
    ) -> Result<HashMap<TenantName, Vec<String>>, Error> {
        let applied: HashMap<&TenantName, &Vec<i64>> =
            tenants.iter().map(|(t, a)| (t, a)).collect();
        let names: Vec<TenantName> = tenants.iter().map(|(t, _)| t.clone()).collect();
        let applied = &applied;
        self.merged(&names, |connector, names| async move {
            let share: Vec<(TenantName, Vec<i64>)> = names
                .iter()
                .map(|t| (t.clone(), applied[t].clone()))
                .collect();
            // On Citus the shards are read on the workers while the
            // coordinator's catalog is compared: neither waits for the other.
            let shards = async {
                if connector.kind().await? != ServerKind::Citus {
                    return Ok(HashMap::new());
                }
                let started = std::time::Instant::now();
                let drift = citus::shard_drift(&connector, &names).await?;
                tracing::debug!(
                    tenants = names.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "shards compared on the Citus workers"
                );
                Ok::<_, Error>(drift)
            };
            let (mut drift, shards) =
                futures::try_join!(fingerprint::catalog_drift(&connector, set, &share), shards)?;
            for (tenant, differences) in shards {
                drift.entry(tenant).or_default().extend(differences);
            }
            Ok(drift)
        })
        .await
    }

    async fn catalog_tracking(
        &self,
        tenants: &[(TenantName, Vec<i64>)],
    ) -> Result<ChangeTracking, Error> {
        let names: Vec<TenantName> = tenants.iter().map(|(t, _)| t.clone()).collect();
        let mut groups = self.route(&names).await?;
        if groups.len() > 1 {
            return Ok(ChangeTracking::Unavailable(
                "the tenants live on several placements; each placement's changes are tracked on its own server".into(),
            ));
        }
        let Some(group) = groups.pop() else {
            return Ok(ChangeTracking::Unavailable("no tenants".into()));
        };
        if group.connector.kind().await? == ServerKind::Citus {
            return Ok(ChangeTracking::Unavailable(citus::UNTRACKED.into()));
        }
        let mut client = group.connector.checkout().await?;
        let tracking = changes::tracking(&mut client, tenants).await;
        client.keep(tracking.is_ok());
        tracking.map_err(|e| in_placement(&group.placement, e))
    }

    async fn record_verdicts(
        &self,
        verdicts: &[(TenantName, Vec<i64>, bool)],
        tracking: &ChangeTracking,
    ) -> Result<(), Error> {
        let ChangeTracking::Tracked { since, tracker, .. } = tracking else {
            return Ok(());
        };
        let names: Vec<TenantName> = verdicts.iter().map(|(t, _, _)| t.clone()).collect();
        self.on_each(&names, |connector, _| async move {
            let mut client = connector.checkout().await?;
            let recorded = changes::record(&mut client, verdicts, since, *tracker).await;
            client.keep(recorded.is_ok());
            recorded
        })
        .await
        .map(drop)
    }

    async fn sync_registry(&self, tenants: &[TenantName]) -> Result<(), Error> {
        if tenants.is_empty() {
            return Ok(());
        }
        let groups = self.route(tenants).await?;
        let (local, placed): (Vec<Group>, Vec<Group>) = groups
            .into_iter()
            .partition(|g| g.placement == DEFAULT_PLACEMENT);
        for group in placed {
            let ledgers = ledger::read_ledgers(&group.connector, &group.tenants, &self.ledger)
                .await
                .map_err(|e| in_placement(&group.placement, e))?;
            pooled!(self, |client| registry::write_ledgers(
                &mut client,
                &ledgers
            )
            .await)?;
        }
        let Some(Group { tenants, .. }) = local.into_iter().next() else {
            return Ok(());
        };
        let tenants = tenants.as_slice();
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
        self.merged(tenants, |connector, tenants| async move {
            let mut client = connector.checkout().await?;
            let digests = fingerprint::digests(&client, &tenants).await;
            client.keep(digests.is_ok());
            digests
        })
        .await
    }

    async fn catalog_lines(
        &self,
        tenants: &[TenantName],
    ) -> Result<HashMap<TenantName, BTreeSet<String>>, Error> {
        self.merged(tenants, |connector, tenants| async move {
            let mut client = connector.checkout().await?;
            let lines = fingerprint::lines(&client, &tenants).await;
            client.keep(lines.is_ok());
            lines
        })
        .await
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
        let announcer = {
            let mut running = self.announcer.lock().expect("announcer lock");
            match running.as_ref().filter(|a| a.is_running()) {
                Some(announcer) => announcer.clone(),
                None => running
                    .insert(Announcer::start(self.connector.clone()))
                    .clone(),
            }
        };
        Ok(Box::new(PgSession {
            client: self.connector.connect().await?,
            ledger: self.ledger.kind,
            server: self.connector.kind().await?,
            registry: None,
            announcer: Some(announcer),
        }))
    }

    async fn open_session_on(&self, placement: &str) -> Result<Box<dyn TenantSession>, Error> {
        if placement == DEFAULT_PLACEMENT {
            return self.open_session().await;
        }
        let behind = self
            .shared_behind
            .lock()
            .expect("shared lock")
            .get(placement)
            .cloned();
        if let Some(reason) = behind {
            return Err(Error::DatabaseUnavailable {
                context: format!("opening a session on placement {placement}, whose shared migrations could not be applied"),
                source: crate::DbError {
                    code: None,
                    message: reason,
                    connection_lost: true,
                },
            });
        }
        let connector = self.connector_of(placement).await?;
        let client = connector
            .connect()
            .await
            .map_err(|e| in_placement(placement, e))?;
        Ok(Box::new(PgSession {
            client,
            ledger: self.ledger.kind,
            server: connector
                .kind()
                .await
                .map_err(|e| in_placement(placement, e))?,
            registry: Some((placement.to_owned(), self.connector.connect().await?)),
            // Its commits are announced on the registry as they are copied there.
            announcer: None,
        }))
    }

    async fn placements(&self) -> Result<Vec<Placement>, Error> {
        let here = self.connector.describe();
        pooled!(self, |client| placements::list(&client, &here).await)
    }

    async fn add_placement(&self, name: &str, url: &str) -> Result<(), Error> {
        crate::placement::check_name(name)?;
        crate::placement::check_url(url)?;
        let connector = Connector::new(url)?;
        let mut client = connector
            .checkout()
            .await
            .map_err(|e| in_placement(name, e))?;
        let prepared = registry::prepare(&mut client).await;
        client.keep(prepared.is_ok());
        prepared.map_err(|e| in_placement(name, e))?;
        pooled!(self, |client| placements::add(&mut client, name, url).await)?;
        self.placements_now(true).await.map(drop)
    }

    async fn remove_placement(&self, name: &str) -> Result<(), Error> {
        pooled!(self, |client| placements::remove(&mut client, name).await)?;
        self.placements_now(true).await.map(drop)
    }

    async fn placement_health(
        &self,
        timeout: Duration,
    ) -> Result<Vec<(String, Option<String>)>, Error> {
        let placements = self.placements_now(true).await?;
        Ok(
            futures::future::join_all(placements.iter().map(|(name, connector)| async move {
                let answer = placements::heartbeat(connector, timeout).await;
                (name.clone(), answer.err().map(|e| e.to_string()))
            }))
            .await,
        )
    }

    async fn move_tenant(
        &self,
        tenant: &TenantName,
        to: &str,
        set: &MigrationSet,
        options: MoveOptions,
        limits: &Limits,
    ) -> Result<MoveReport, Error> {
        self.move_now(tenant, to, set, options, limits).await
    }

    async fn move_to_node(&self, tenant: &TenantName, host: &str, port: u16) -> Result<(), Error> {
        let group = self.route(std::slice::from_ref(tenant)).await?.remove(0);
        if group.connector.kind().await? != ServerKind::Citus {
            return Err(Error::Config(format!(
                "--to-node moves a tenant between the workers of a Citus placement; placement {} is a plain PostgreSQL server (use --to PLACEMENT)",
                group.placement
            )));
        }
        // Its own connection: the move runs outside a transaction, bounded
        // by a session statement timeout that no other work inherits.
        let client = group.connector.connect().await?;
        citus::move_schema(&client, tenant, host, i32::from(port), &Limits::default())
            .await
            .map_err(|e| in_placement(&group.placement, e))
    }

    async fn nodes(&self, tenants: &[TenantName]) -> Result<HashMap<TenantName, String>, Error> {
        self.merged(tenants, |connector, tenants| async move {
            if connector.kind().await? != ServerKind::Citus {
                return Ok(HashMap::new());
            }
            let mut client = connector.checkout().await?;
            let nodes = citus::nodes_of(&client, &tenants).await;
            client.keep(nodes.is_ok());
            nodes
        })
        .await
    }

    async fn has_citus(&self) -> Result<bool, Error> {
        if self.connector.kind().await? == ServerKind::Citus {
            return Ok(true);
        }
        for (name, connector) in self.placements_now(false).await?.iter() {
            match connector.kind().await {
                Ok(ServerKind::Citus) => return Ok(true),
                Ok(ServerKind::Plain) => {}
                // Its tenants fail when the run reaches for them.
                Err(e) if e.is_unavailable() => {
                    tracing::debug!(placement = %name, error = %e, "placement unreachable while asking for Citus");
                }
                Err(e) => return Err(in_placement(name, e)),
            }
        }
        Ok(false)
    }

    async fn settle_moves(&self) -> Result<Vec<Settled>, Error> {
        self.settle_all().await
    }

    async fn cut_off_tenants(
        &self,
        timeout: Duration,
    ) -> Result<HashMap<TenantName, String>, Error> {
        let placements = self.placements_now(false).await?;
        let connectors = std::iter::once(&self.connector).chain(placements.iter().map(|(_, c)| c));
        let found = futures::future::join_all(connectors.map(|connector| async move {
            let check = async {
                if connector.kind().await? != ServerKind::Citus {
                    return Ok(HashMap::new());
                }
                let mut client = connector.checkout().await?;
                let cut_off = citus::cut_off(&client).await;
                client.keep(cut_off.is_ok());
                cut_off
            };
            // A placement that does not answer is the placements' check's to report.
            tokio::time::timeout(timeout, check)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default()
        }))
        .await;
        Ok(found.into_iter().flatten().collect())
    }

    async fn unregistered(&self) -> Result<Vec<(String, TenantName)>, Error> {
        let placements = self.placements_now(false).await?;
        let found =
            futures::future::join_all(placements.iter().map(|(name, connector)| async move {
                let mut client = connector.checkout().await.ok()?;
                let mut registry = self.connector.checkout().await.ok()?;
                let names = placed::unregistered(&client, &registry).await.ok()?;
                client.keep(true);
                registry.keep(true);
                Some(
                    names
                        .into_iter()
                        .map(|t| (name.clone(), t))
                        .collect::<Vec<_>>(),
                )
            }))
            .await;
        let mut found: Vec<(String, TenantName)> = found.into_iter().flatten().flatten().collect();
        found.sort();
        Ok(found)
    }
}

/// One dedicated connection migrating tenants one after another; on a
/// placement other than `default`, with a connection to the registry that
/// records each tenant after its commit there.
struct PgSession {
    client: Client,
    ledger: LedgerKind,
    /// Whether the server is a Citus coordinator.
    server: ServerKind,
    registry: Option<(String, Client)>,
    /// On `default`: announces the tenants this session committed, several
    /// to a notification.
    announcer: Option<Announcer>,
}

#[async_trait]
impl TenantSession for PgSession {
    async fn migrate_tenant(
        &mut self,
        tenant: &TenantName,
        set: &MigrationSet,
        limits: &Limits,
    ) -> Result<Vec<i64>, TenantFailure> {
        let mut target = Target::tenant(tenant, self.ledger).on(self.server);
        if self.announcer.is_some() {
            target = target.announced_by_caller();
        }
        let applied = apply_set(&self.client, &target, set, limits).await;
        if let Some(announcer) = &self.announcer {
            // Failed or not, a run may have committed part of the set.
            announcer.announce(tenant);
        }
        let applied = applied.map_err(|f| tenant_failure(tenant, f))?;
        if let Some((placement, registry)) = &self.registry {
            placed::copy_to_registry(&self.client, registry, placement, tenant).await?;
        }
        Ok(applied)
    }

    async fn record_failure(
        &mut self,
        tenant: &TenantName,
        failure: &TenantFailure,
    ) -> Result<(), Error> {
        let registry = match &mut self.registry {
            Some((_, registry)) => registry,
            None => &mut self.client,
        };
        registry::record_failure(registry, tenant, failure).await
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
            &Target::tenant(tenant, self.ledger).on(self.server),
            backfill,
            mode,
            limits,
        )
        .await
        .map_err(|f| backfill_failure(tenant, backfill, f))
    }

    async fn close(self: Box<Self>) {
        if let Some(announcer) = &self.announcer {
            announcer.flush().await;
        }
    }
}

/// The shared ledger of the server `client` is connected to.
async fn shared_ledger(client: &Client) -> Result<Vec<AppliedMigration>, Error> {
    let rows = client
        .query_typed(
            "SELECT version, description, checksum FROM tenantgate._shared_migrations WHERE success ORDER BY version",
            &[],
        )
        .await
        .map_err(|e| error_while("reading the shared ledger", &e))?;
    Ok(rows
        .iter()
        .map(|r| AppliedMigration {
            version: r.get(0),
            description: r.get(1),
            checksum: r.get(2),
        })
        .collect())
}

/// Where a tenant lives, for messages.
fn container(tenant: &TenantName) -> String {
    format!("schema {}", tenant.quoted())
}
