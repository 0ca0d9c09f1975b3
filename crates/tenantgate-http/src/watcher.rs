//! Keeping the snapshot fresh: `LISTEN tenantgate`, heartbeats, periodic
//! full refreshes, and a full resynchronisation after every reconnect.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use tenantgate::{
    backend::RegistryChange, readiness::RequiredSet, Backend, Error, TenantName, Watch,
};

use crate::{
    clock,
    details::DetailPolicy,
    metrics,
    recovery_text::RecoveryText,
    snapshot::{Snapshot, Unreachable},
};

/// How the guard behaves.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// How often the whole registry is re-read, notifications or not.
    pub refresh_interval: Duration,
    /// How long the registry may go unconfirmed before the guard fails
    /// closed with 503 "migration state unknown". The watcher fails closed
    /// at once when a read or heartbeat fails; this bound is the second line
    /// of defence, for a watcher that stops without noticing.
    pub staleness_bound: Duration,
    /// How often the watch connection is checked.
    pub heartbeat_interval: Duration,
    /// The `Retry-After` of a 503, in seconds.
    pub retry_after: Duration,
    /// Who may read the database's own error text on the 503 page and JSON.
    pub details: DetailPolicy,
    /// How the 503 page spells the step that heals a tenant.
    pub recovery_text: RecoveryText,
    /// Emergency bypass: let requests through to tenants that are not ready,
    /// each one logged as a warning and counted.
    ///
    /// # Warning
    ///
    /// Requests then reach schemas that lack migrations the code needs,
    /// which is the failure this library exists to prevent. Use it only to
    /// restore service while the fleet is healed.
    pub dangerous_bypass: bool,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            refresh_interval: Duration::from_secs(60),
            staleness_bound: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(2),
            retry_after: Duration::from_secs(30),
            details: DetailPolicy::default(),
            recovery_text: RecoveryText::default(),
            dangerous_bypass: false,
        }
    }
}

/// The guard's shared state: the current snapshot and how fresh it is.
pub struct GuardState {
    snapshot: ArcSwap<Snapshot>,
    /// When the registry was last confirmed, on [`clock::monotonic_ms`].
    confirmed_ms: AtomicU64,
    /// Set by the watcher's first failed read or heartbeat; cleared by the
    /// next successful one.
    store_lost: AtomicBool,
    config: GuardConfig,
    required: ArcSwap<RequiredSet>,
    /// Wakes the watcher for a full re-read (the required set changed).
    reread: tokio::sync::Notify,
    /// Set when the store announced a deploy (`tenantgate notify`).
    reload: tokio::sync::Notify,
    container: Container,
    /// What did not answer the last check, with why.
    unreachable: std::sync::Mutex<Unreachable>,
}

/// Names where a tenant lives, for the 503 page.
type Container = Box<dyn Fn(&TenantName) -> String + Send + Sync>;

impl GuardState {
    /// A state around a fixed snapshot, confirmed now (for tests and for
    /// callers that refresh it themselves with [`GuardState::replace`]).
    pub fn new(snapshot: Snapshot, required: RequiredSet, config: GuardConfig) -> Self {
        let state = Self {
            snapshot: ArcSwap::from_pointee(snapshot),
            confirmed_ms: AtomicU64::new(clock::monotonic_ms()),
            store_lost: AtomicBool::new(false),
            config,
            required: ArcSwap::from_pointee(required),
            reread: tokio::sync::Notify::new(),
            reload: tokio::sync::Notify::new(),
            container: Box::new(|name| format!("schema \"{name}\"")),
            unreachable: std::sync::Mutex::new(Unreachable::default()),
        };
        state.publish_counts();
        state
    }

    /// Names tenants' storage with `backend`'s words (`file tenants/acme.db`
    /// on SQLite) on the 503 page; the default says `schema "acme"`.
    pub fn describing_storage_with(mut self, backend: Arc<dyn Backend>) -> Self {
        self.container = Box::new(move |name| backend.container(name));
        self
    }

    /// Where the tenant named `name` lives, for messages.
    pub(crate) fn container(&self, name: &TenantName) -> String {
        (self.container)(name)
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    /// Swaps in a new snapshot and marks the registry confirmed.
    pub fn replace(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
        self.confirm();
        self.publish_counts();
    }

    fn publish_counts(&self) {
        metrics::tenant_counts(&self.snapshot.load().counts_by_state());
    }

    /// Marks the registry confirmed now: the state is known again.
    pub fn confirm(&self) {
        self.confirmed_ms
            .store(clock::monotonic_ms(), Ordering::Relaxed);
        if self.store_lost.swap(false, Ordering::Relaxed) {
            tracing::info!("the registry answers again; the guard decides from it");
        }
    }

    /// Marks the registry unreachable now: until the next [`Self::confirm`],
    /// the state is unknown and guarded requests answer 503.
    pub fn lose_store(&self) {
        if !self.store_lost.swap(true, Ordering::Relaxed) {
            tracing::error!(
                "the registry cannot be read; guarded requests answer 503 until it can"
            );
        }
    }

    /// How long since the registry was last confirmed.
    pub fn age(&self) -> Duration {
        let confirmed = self.confirmed_ms.load(Ordering::Relaxed);
        Duration::from_millis(clock::monotonic_ms().saturating_sub(confirmed))
    }

    /// True when the guard cannot tell which tenants are ready: the last
    /// read or heartbeat of the registry failed, or none succeeded within
    /// the staleness bound.
    pub fn state_unknown(&self) -> bool {
        self.store_lost.load(Ordering::Relaxed) || self.age() > self.config.staleness_bound
    }

    /// The guard's configuration.
    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    /// The application's required set.
    pub fn required(&self) -> Arc<RequiredSet> {
        self.required.load_full()
    }

    /// Resolves when the store announces a deploy (`tenantgate notify`), or
    /// after the watcher (re)subscribed, since an announcement may have been
    /// missed: whoever knows where the required set comes from re-reads it
    /// and calls [`Self::set_required`] if it changed.
    pub async fn reload_requested(&self) {
        self.reload.notified().await;
    }

    /// Replaces the required set (a deploy added a migration the code
    /// needs) and has the watcher re-read the registry, so every tenant is
    /// assessed against it; until then tenants keep their last decision.
    pub fn set_required(&self, required: RequiredSet) {
        self.required.store(Arc::new(required));
        self.reread.notify_one();
    }
}

/// Reads the registry once (failing if it cannot), then keeps the snapshot
/// fresh in a background task for as long as the runtime runs.
pub async fn watch_registry(
    backend: Arc<dyn Backend>,
    required: RequiredSet,
    config: GuardConfig,
) -> Result<Arc<GuardState>, Error> {
    let unreachable = check_placements(backend.as_ref(), config.heartbeat_interval).await?;
    let tenants = backend.tenants().await?;
    let shared = backend.shared_ledger().await?;
    let snapshot = Snapshot::build_placed(tenants, &shared, &required, unreachable.clone());
    let state = Arc::new(
        GuardState::new(snapshot, required, config).describing_storage_with(backend.clone()),
    );
    *state.unreachable.lock().expect("placements lock") = unreachable;
    state.confirm();
    tokio::spawn(watch_loop(backend.clone(), state.clone()));
    tokio::spawn(placement_loop(backend, state.clone()));
    Ok(state)
}

async fn full_snapshot(backend: &dyn Backend, state: &GuardState) -> Result<Snapshot, Error> {
    let tenants = backend.tenants().await?;
    let shared = backend.shared_ledger().await?;
    let unreachable = state.unreachable.lock().expect("placements lock").clone();
    Ok(Snapshot::build_placed(
        tenants,
        &shared,
        &state.required(),
        unreachable,
    ))
}

/// Which placements (and, on Citus, which tenants' workers) do not answer
/// within `timeout`, with why; each placement's state is published as a
/// metric.
async fn check_placements(backend: &dyn Backend, timeout: Duration) -> Result<Unreachable, Error> {
    // Reading the placements is a query on the registry's own server.
    let health = backend.placement_health(timeout).await;
    metrics::placement_up(tenantgate::placement::DEFAULT_PLACEMENT, health.is_ok());
    let health = health?;
    for (placement, error) in &health {
        metrics::placement_up(placement, error.is_none());
    }
    let tenants = match backend.cut_off_tenants(timeout).await {
        Ok(cut_off) => cut_off
            .into_iter()
            .map(|(tenant, why)| (tenant.to_string(), why))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "could not check which tenants' servers answer");
            Default::default()
        }
    };
    Ok(Unreachable {
        placements: health
            .into_iter()
            .filter_map(|(placement, error)| Some((placement, error?)))
            .collect(),
        tenants,
    })
}

/// Checks every placement at each heartbeat; when the set that does not
/// answer changes, has the watcher re-read the registry, so only the
/// tenants of a placement that went down are blocked ("state unknown") and
/// they are served again once it answers.
async fn placement_loop(backend: Arc<dyn Backend>, state: Arc<GuardState>) {
    let interval = state.config.heartbeat_interval;
    loop {
        tokio::time::sleep(interval).await;
        let Ok(now) = check_placements(backend.as_ref(), interval).await else {
            // The registry itself does not answer: the watcher fails closed.
            continue;
        };
        let changed = {
            let mut known = state.unreachable.lock().expect("placements lock");
            let changed = *known != now;
            if changed {
                for (placement, why) in &now.placements {
                    if !known.placements.contains_key(placement) {
                        tracing::error!(placement = %placement, error = %why, "a placement does not answer; its tenants answer 503 until it does");
                    }
                }
                for (tenant, why) in &now.tenants {
                    if !known.tenants.contains_key(tenant) {
                        tracing::error!(tenant = %tenant, error = %why, "a tenant's server does not answer; it answers 503 until it does");
                    }
                }
                *known = now;
            }
            changed
        };
        if changed {
            state.reread.notify_one();
        }
    }
}

async fn watch_loop(backend: Arc<dyn Backend>, state: Arc<GuardState>) {
    let config = state.config.clone();
    let mut watch: Option<Box<dyn Watch>> = None;
    let mut last_full = Instant::now();
    // The registry's version read before the last periodic full read, while
    // nothing else has replaced the snapshot since.
    let mut unchanged_since: Option<String> = None;
    loop {
        let active = match watch.as_mut() {
            Some(active) => active,
            None => match subscribe(backend.as_ref(), &state).await {
                Some(subscribed) => {
                    last_full = Instant::now();
                    unchanged_since = None;
                    watch.insert(subscribed)
                }
                None => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
            },
        };
        let next = tokio::select! {
            next = active.next(config.heartbeat_interval) => next,
            () = state.reread.notified() => Ok(Some(RegistryChange::Everything)),
        };
        let healthy = match next {
            Ok(Some(first)) => {
                unchanged_since = None;
                apply_changes(backend.as_ref(), &state, active.as_mut(), first).await
            }
            Ok(None) => active.heartbeat(config.heartbeat_interval).await.is_ok(),
            Err(_) => false,
        };
        if !healthy {
            state.lose_store();
            watch = None;
            continue;
        }
        state.confirm();
        if last_full.elapsed() >= config.refresh_interval {
            let refreshed = periodic_refresh(
                backend.as_ref(),
                &state,
                active.as_mut(),
                &mut unchanged_since,
            )
            .await;
            if let Err(e) = refreshed {
                tracing::warn!(error = %e, "periodic registry refresh failed");
                state.lose_store();
            }
            last_full = Instant::now();
        }
    }
}

/// The periodic full read, the safety net under notifications: skipped
/// (the registry confirmed) when the registry's version equals the one read
/// before the last periodic full read and nothing replaced the snapshot
/// since, so an idle registry is not re-read and rebuilt every interval
/// (about 0.2 s of CPU at 100,000 tenants, on the cores serving requests).
/// The version is read before the rows: a change between the two makes
/// the next refresh rebuild again, never skip a change.
async fn periodic_refresh(
    backend: &dyn Backend,
    state: &GuardState,
    watch: &mut dyn Watch,
    unchanged_since: &mut Option<String>,
) -> Result<(), Error> {
    let version = watch.registry_version().await?;
    if version.is_some() && version == *unchanged_since {
        state.confirm();
        metrics::registry_refreshed("unchanged");
        return Ok(());
    }
    *unchanged_since = None;
    state.replace(full_snapshot(backend, state).await?);
    *unchanged_since = version;
    metrics::registry_refreshed("reread");
    Ok(())
}

/// Subscribes, then re-reads everything (changes may have been missed while
/// unsubscribed).
async fn subscribe(backend: &dyn Backend, state: &GuardState) -> Option<Box<dyn Watch>> {
    let subscribed = match backend.watch().await {
        Ok(watch) => full_snapshot(backend, state)
            .await
            .map(|snapshot| (watch, snapshot)),
        Err(e) => Err(e),
    };
    match subscribed {
        Ok((watch, snapshot)) => {
            state.replace(snapshot);
            // A deploy announced while unsubscribed was missed with the
            // other notifications: whoever knows the required set re-reads it.
            state.reload.notify_one();
            Some(watch)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the registry; retrying");
            state.lose_store();
            None
        }
    }
}

/// Gathers notifications arriving together, then re-reads those tenants
/// (or everything, for a shared change). Returns false when the store failed.
async fn apply_changes(
    backend: &dyn Backend,
    state: &GuardState,
    watch: &mut dyn Watch,
    first: RegistryChange,
) -> bool {
    let mut changes = vec![first];
    while let Ok(Some(more)) = watch.next(Duration::from_millis(5)).await {
        if !changes.contains(&more) {
            changes.push(more);
        }
    }
    let names: Option<Vec<TenantName>> = changes
        .into_iter()
        .map(|change| match change {
            RegistryChange::Tenant(name) => Some(name),
            RegistryChange::Everything => None,
            RegistryChange::Reload => {
                state.reload.notify_one();
                None
            }
        })
        .collect();
    let Some(names) = names else {
        return match full_snapshot(backend, state).await {
            Ok(snapshot) => {
                state.replace(snapshot);
                true
            }
            Err(_) => false,
        };
    };
    match backend.tenants_named(&names).await {
        Ok(fresh) => {
            let next = state.snapshot().updated(&names, fresh, &state.required());
            state.replace(next);
            true
        }
        Err(_) => false,
    }
}
