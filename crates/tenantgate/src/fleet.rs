//! Migrating a fleet of tenants: planning, bounded parallelism, per-tenant
//! transactions, retries on lock timeouts, fail-fast, interruption.
//!
//! Every run ends with a per-tenant report (state, duration, versions
//! applied, error) and a rerun picks up exactly the tenants that are not
//! ready: tenants whose ledger already holds the whole set and whose
//! registry row says `ready` are not touched.
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
//! let backend = connect(&url).await?;
//! let v1 = MigrationFolder::load(&migrations)?;
//! for name in ["acme", "globex"] {
//!     provision::create_tenant(backend.as_ref(), &v1, &TenantName::parse(name)?, &[], &Default::default()).await?;
//! }
//! std::fs::write(migrations.join("tenant/0002_notes.sql"), "CREATE TABLE notes (body TEXT);").unwrap();
//! let v2 = MigrationFolder::load(&migrations)?;
//! let report = fleet::migrate(backend.as_ref(), &v2, &Default::default(), &|_| {}, &CancellationToken::new()).await?;
//! assert!(report.tenants.iter().all(|t| t.applied == [2]));
//! # Ok::<(), tenantgate::Error>(())
//! # }).unwrap();
//! ```

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;

use crate::{
    backend::{BackfillMode, BackfillOutcome, Ledgers, Limits},
    migrations::{Backfill, MigrationRef},
    placement::DEFAULT_PLACEMENT,
    progress::ProgressSink,
    Backend, Error, FailureKind, MigrationFolder, MigrationSet, Progress, Tenant, TenantFailure,
    TenantName, TenantSession, TenantState,
};

/// How a fleet run is carried out.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Only these tenants; empty means every registered tenant.
    pub tenants: Vec<TenantName>,
    /// Tenants migrated in parallel, each on its own connection.
    pub jobs: usize,
    /// Stop scheduling tenants after the first failure.
    pub fail_fast: bool,
    /// Plan only: report what each tenant lacks, change nothing.
    pub dry_run: bool,
    /// Per-tenant lock and statement timeouts.
    pub limits: Limits,
    /// Attempts per tenant when it stays locked past the lock timeout.
    pub lock_attempts: u32,
    /// Tenants a connection migrates before it is replaced, bounding the
    /// catalog cache each server process accumulates.
    pub recycle_after: usize,
    /// Apply a migration a tenant lacks although it holds a higher version;
    /// refused with [`Error::OutOfOrder`] otherwise.
    pub allow_out_of_order: bool,
}

impl Default for FleetOptions {
    fn default() -> Self {
        Self {
            tenants: Vec::new(),
            jobs: 4,
            fail_fast: false,
            dry_run: false,
            limits: Limits::default(),
            lock_attempts: 3,
            recycle_after: 250,
            allow_out_of_order: false,
        }
    }
}

/// What happened to one tenant in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// This run applied migrations (or brought its registry row in step).
    Migrated,
    /// Migrations were due when the run planned, but another run applied
    /// them before this one took the tenant's lock: this run applied none.
    FinishedElsewhere,
    /// Nothing to do.
    UpToDate,
    /// Dry run: what would be applied.
    Planned,
    /// The attempt failed and was rolled back.
    Failed,
    /// The run was interrupted while this tenant was in flight; rolled back.
    Interrupted,
    /// A backfill ran and committed.
    Backfilled,
}

/// One tenant's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TenantReport {
    /// The tenant.
    pub tenant: TenantName,
    /// The placement it lives on.
    pub placement: String,
    /// What happened.
    pub outcome: Outcome,
    /// Its state afterwards.
    pub state: TenantState,
    /// Versions applied in this run (planned, for a dry run).
    pub applied: Vec<i64>,
    /// Attempts made (more than one after lock timeouts).
    pub attempts: u32,
    /// Time spent on it.
    #[serde(rename = "duration_ms", serialize_with = "millis")]
    pub duration: Duration,
    /// Why it failed.
    pub error: Option<TenantFailure>,
    /// Rows a backfill changed (or would change, in a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_changed: Option<u64>,
    /// The framework's migration command, when it did the work (`migrate --exec`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<crate::exec::CommandRun>,
}

/// The result of a fleet run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FleetReport {
    /// Shared migrations applied (planned, for a dry run).
    pub shared_applied: Vec<i64>,
    /// Per tenant, ordered by name.
    pub tenants: Vec<TenantReport>,
    /// Tenants that were due but never started (interruption, fail-fast, outage).
    pub not_started: Vec<TenantName>,
    /// True when the run was interrupted.
    pub interrupted: bool,
    /// Set when the database became unreachable mid-run.
    pub database_error: Option<String>,
    /// True for a dry run.
    pub dry_run: bool,
    /// Wall time of the run.
    #[serde(rename = "duration_ms", serialize_with = "millis")]
    pub duration: Duration,
}

impl FleetReport {
    /// Reports of tenants that failed or were interrupted.
    pub fn failures(&self) -> impl Iterator<Item = &TenantReport> {
        self.tenants
            .iter()
            .filter(|t| matches!(t.outcome, Outcome::Failed | Outcome::Interrupted))
    }

    /// Completes a run's report: interruption, order, wall time.
    pub(crate) fn finish(&mut self, cancel: &CancellationToken, started: Instant) {
        self.interrupted = cancel.is_cancelled();
        self.tenants.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        self.duration = started.elapsed();
    }

    /// True when every tenant considered ended ready.
    pub fn all_ready(&self) -> bool {
        self.not_started.is_empty()
            && self.database_error.is_none()
            && self.tenants.iter().all(|t| t.state == TenantState::Ready)
    }
}

/// Serialises a duration as fractional milliseconds.
pub(crate) fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
}

/// Applies pending shared migrations, then brings every tenant (or those in
/// `options.tenants`) to the full tenant set.
///
/// Refuses to start, with [`Error::ChecksumChanged`], when an applied
/// migration's file changed. A tenant that fails is rolled back, marked
/// `failed` with its error, and the others proceed (unless `fail_fast`).
/// Cancelling `cancel` stops scheduling and rolls back tenants in flight.
pub async fn migrate(
    backend: &dyn Backend,
    folder: &MigrationFolder,
    options: &FleetOptions,
    progress: ProgressSink<'_>,
    cancel: &CancellationToken,
) -> Result<FleetReport, Error> {
    let started = Instant::now();
    folder.refuse_transaction_control(backend.dialect())?;
    backend.prepare().await?;
    if backend.has_citus().await? {
        crate::lint::refuse_for_citus(folder)?;
    }
    let shared_applied = if options.dry_run {
        let ledger = backend.shared_ledger().await?;
        folder
            .shared
            .iter()
            .filter(|m| !ledger.iter().any(|a| a.version == m.version))
            .map(|m| m.version)
            .collect()
    } else {
        backend
            .apply_shared(&folder.shared, &options.limits)
            .await?
    };
    if !shared_applied.is_empty() {
        progress(Progress::SharedApplied {
            versions: shared_applied.clone(),
        });
    }
    let tenants = select_tenants(backend.tenants().await?, &options.tenants)?;
    let ledgers = plan_ledgers(backend, &folder.tenant, &tenants, options.dry_run).await?;
    refuse_changed(&folder.tenant, &ledgers)?;
    if !options.allow_out_of_order {
        refuse_out_of_order(&folder.tenant, &ledgers)?;
    }

    let mut report = FleetReport {
        shared_applied,
        dry_run: options.dry_run,
        ..Default::default()
    };
    let mut due = Vec::new();
    for tenant in &tenants {
        let pending = pending_versions(
            &folder.tenant,
            ledgers.get(&tenant.name).and_then(Option::as_ref),
        );
        let in_step = matches!(tenant.state, TenantState::Ready | TenantState::Drift);
        if pending.as_ref().is_some_and(Vec::is_empty) && in_step {
            report
                .tenants
                .push(quick_report(tenant, Outcome::UpToDate, Vec::new()));
        } else if options.dry_run {
            let mut planned = quick_report(tenant, Outcome::Planned, pending.unwrap_or_default());
            if planned.state == TenantState::Ready {
                planned.state = TenantState::Pending;
            }
            report.tenants.push(planned);
        } else {
            let expects_work = pending.as_ref().is_none_or(|p| !p.is_empty());
            due.push(Due {
                tenant: tenant.name.clone(),
                placement: tenant.placement.clone(),
                state: tenant.state,
                expects_work,
            });
        }
    }
    progress(Progress::Planned {
        total: tenants.len(),
        to_migrate: due.len(),
    });
    let job = Job::Migrate(&folder.tenant);
    execute(backend, job, due, options, progress, cancel, &mut report).await;
    report.finish(cancel, started);
    Ok(report)
}

/// Runs the backfill `name` across every tenant (or those in
/// `options.tenants`) with the same scheduling, locks, per-tenant
/// transactions and report as [`migrate`]. A tenant whose backfill ledger
/// already holds it is skipped unless `mode.force`; `mode.dry_run` runs each
/// tenant's transaction, counts the rows and rolls back.
pub async fn backfill(
    backend: &dyn Backend,
    folder: &MigrationFolder,
    name: &str,
    mode: BackfillMode,
    options: &FleetOptions,
    progress: ProgressSink<'_>,
    cancel: &CancellationToken,
) -> Result<FleetReport, Error> {
    let started = Instant::now();
    let backfill = folder
        .backfills
        .get(name)
        .ok_or_else(|| Error::UnknownBackfill {
            name: name.to_owned(),
            known: folder.backfills.keys().cloned().collect(),
        })?;
    backend.prepare().await?;
    let tenants = select_tenants(backend.tenants().await?, &options.tenants)?;
    let due: Vec<Due> = tenants
        .iter()
        .map(|t| Due {
            tenant: t.name.clone(),
            placement: t.placement.clone(),
            state: t.state,
            expects_work: true,
        })
        .collect();
    progress(Progress::Planned {
        total: due.len(),
        to_migrate: due.len(),
    });
    let mut report = FleetReport {
        dry_run: mode.dry_run,
        ..Default::default()
    };
    let job = Job::Backfill(backfill, mode);
    execute(backend, job, due, options, progress, cancel, &mut report).await;
    report.finish(cancel, started);
    Ok(report)
}

/// Runs `job` on the `due` tenants with up to `options.jobs` workers per
/// placement (the placements in parallel), adding their reports.
async fn execute(
    backend: &dyn Backend,
    job: Job<'_>,
    due: Vec<Due>,
    options: &FleetOptions,
    progress: ProgressSink<'_>,
    cancel: &CancellationToken,
    report: &mut FleetReport,
) {
    if due.is_empty() {
        return;
    }
    let mut queues: BTreeMap<String, VecDeque<Due>> = BTreeMap::new();
    for tenant in due {
        queues
            .entry(tenant.placement.clone())
            .or_default()
            .push_back(tenant);
    }
    let workers: Vec<(String, usize)> = queues
        .iter()
        .map(|(placement, queue)| (placement.clone(), options.jobs.max(1).min(queue.len())))
        .collect();
    let run = Run {
        backend,
        job,
        options,
        progress,
        cancel,
        stop: cancel.child_token(),
        queues: queues
            .into_iter()
            .map(|(placement, queue)| (placement, Mutex::new(queue)))
            .collect(),
        reports: Mutex::new(Vec::new()),
        database_error: Mutex::new(None),
    };
    futures::future::join_all(
        workers
            .iter()
            .flat_map(|(placement, count)| (0..*count).map(|_| run.worker(placement))),
    )
    .await;
    report
        .tenants
        .extend(run.reports.into_inner().expect("reports lock"));
    report.not_started = run
        .queues
        .into_values()
        .flat_map(|queue| queue.into_inner().expect("queue lock"))
        .map(|due| due.tenant)
        .collect();
    report.not_started.sort();
    report.database_error = run.database_error.into_inner().expect("error lock");
}

/// The registered tenants, or only those asked for (each must exist).
pub(crate) fn select_tenants(
    all: Vec<Tenant>,
    wanted: &[TenantName],
) -> Result<Vec<Tenant>, Error> {
    if wanted.is_empty() {
        return Ok(all);
    }
    let mut by_name: HashMap<TenantName, Tenant> =
        all.into_iter().map(|t| (t.name.clone(), t)).collect();
    let mut selected = Vec::new();
    for name in wanted {
        match by_name.remove(name) {
            Some(t) => selected.push(t),
            None if selected.iter().any(|t: &Tenant| &t.name == name) => {}
            None => {
                return Err(Error::UnknownTenant {
                    tenant: name.to_string(),
                })
            }
        }
    }
    selected.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(selected)
}

/// Versions of `set` the ledger lacks; `None` when the ledger is missing.
pub(crate) fn pending_versions(
    set: &MigrationSet,
    ledger: Option<&Vec<crate::AppliedMigration>>,
) -> Option<Vec<i64>> {
    Some(
        set.compare(ledger?)
            .missing
            .iter()
            .map(|m| m.version)
            .collect(),
    )
}

/// The ledgers a run plans from. A tenant whose registry row already lacks
/// a migration of `set` is due whatever its ledger says (the row is a cache
/// that may lag the ledger, and the run re-reads the ledger under the
/// tenant's lock), so only tenants whose row claims the whole set are read,
/// to catch a ledger that lost rows; the others are planned from the row's
/// copy, which also serves the changed-checksum refusal. A dry run reads
/// every ledger, to print the exact plan.
async fn plan_ledgers(
    backend: &dyn Backend,
    set: &MigrationSet,
    tenants: &[Tenant],
    exact: bool,
) -> Result<Ledgers, Error> {
    let claims_all = |t: &Tenant| set.iter().all(|m| t.applied_versions.contains(&m.version));
    let to_read: Vec<&Tenant> = tenants.iter().filter(|t| exact || claims_all(t)).collect();
    let (mut ledgers, unread) = read_ledgers_by_placement(backend, &to_read).await?;
    // A ledger that cannot be read is planned from the registry's copy too:
    // its tenant fails when the run reaches for it.
    let from_copy = |t: &&Tenant| !(exact || claims_all(t)) || unread.contains_key(&t.name);
    for tenant in tenants.iter().filter(from_copy) {
        let copy = tenant
            .applied_versions
            .iter()
            .zip(&tenant.applied_checksums)
            .map(|(version, checksum)| crate::AppliedMigration {
                version: *version,
                description: String::new(),
                checksum: checksum.clone(),
            })
            .collect();
        ledgers.insert(tenant.name.clone(), Some(copy));
    }
    Ok(ledgers)
}

/// Tenants whose ledgers could not be read, with why.
pub(crate) type Unread = HashMap<TenantName, String>;

/// Reads the ledgers of `tenants`, each placement's in parallel. A
/// placement other than `default` that cannot be reached leaves its
/// tenants unread, with why, so the others' work goes on; so does a tenant
/// the store reports cut off (on Citus: its worker down). The registry's
/// own server failing fails the whole read.
pub(crate) async fn read_ledgers_by_placement(
    backend: &dyn Backend,
    tenants: &[&Tenant],
) -> Result<(Ledgers, Unread), Error> {
    let mut groups: BTreeMap<&str, Vec<TenantName>> = BTreeMap::new();
    for tenant in tenants {
        groups
            .entry(tenant.placement.as_str())
            .or_default()
            .push(tenant.name.clone());
    }
    let reads =
        futures::future::join_all(groups.into_iter().map(|(placement, names)| async move {
            let read = backend.read_ledgers(&names).await;
            (placement, names, read)
        }))
        .await;
    let mut ledgers = Ledgers::new();
    let mut unread = Unread::new();
    for (placement, names, read) in reads {
        let error = match read {
            Ok(read) => {
                ledgers.extend(read);
                continue;
            }
            Err(e) if e.is_unavailable() => e,
            Err(e) => return Err(e),
        };
        // Some of its tenants may be cut off while the placement answers.
        let cut_off = backend
            .cut_off_tenants(Duration::from_secs(5))
            .await
            .unwrap_or_default();
        let (lost, rest): (Vec<TenantName>, Vec<TenantName>) =
            names.into_iter().partition(|t| cut_off.contains_key(t));
        let reread = if lost.is_empty() {
            Err(error)
        } else {
            backend.read_ledgers(&rest).await
        };
        match reread {
            Ok(read) => ledgers.extend(read),
            Err(e) if e.is_unavailable() && placement != DEFAULT_PLACEMENT => {
                unread.extend(rest.into_iter().map(|t| (t, e.to_string())));
            }
            Err(e) => return Err(e),
        }
        for tenant in lost {
            let why = cut_off[&tenant].clone();
            unread.insert(tenant, why);
        }
    }
    Ok((ledgers, unread))
}

/// Applied migrations whose file changed, across all ledgers.
pub(crate) fn changed_migrations(
    set: &MigrationSet,
    ledgers: &Ledgers,
) -> Vec<(String, MigrationRef)> {
    let mut changed: Vec<(String, MigrationRef)> = ledgers
        .iter()
        .filter_map(|(tenant, ledger)| Some((tenant, ledger.as_ref()?)))
        .flat_map(|(tenant, ledger)| {
            set.compare(ledger)
                .changed
                .into_iter()
                .map(move |m| (tenant.to_string(), m.reference()))
        })
        .collect();
    changed.sort_by(|a, b| (&a.0, a.1.version).cmp(&(&b.0, b.1.version)));
    changed
}

fn refuse_changed(set: &MigrationSet, ledgers: &Ledgers) -> Result<(), Error> {
    let changed = changed_migrations(set, ledgers);
    if changed.is_empty() {
        Ok(())
    } else {
        Err(Error::ChecksumChanged { changed })
    }
}

/// Refuses migrations a tenant lacks below the highest version it holds:
/// applying them would run them after migrations written later.
fn refuse_out_of_order(set: &MigrationSet, ledgers: &Ledgers) -> Result<(), Error> {
    let mut late: BTreeMap<i64, Vec<TenantName>> = BTreeMap::new();
    for (tenant, ledger) in ledgers {
        let Some(highest) = ledger
            .as_ref()
            .and_then(|l| l.iter().map(|a| a.version).max())
        else {
            continue;
        };
        for missing in set.compare(ledger.as_deref().unwrap_or_default()).missing {
            if missing.version < highest {
                late.entry(missing.version)
                    .or_default()
                    .push(tenant.clone());
            }
        }
    }
    if late.is_empty() {
        return Ok(());
    }
    Err(Error::OutOfOrder {
        out_of_order: late
            .into_iter()
            .map(|(version, mut tenants)| {
                tenants.sort();
                let migration = set.get(version).expect("a missing migration is in the set");
                (migration.reference(), tenants)
            })
            .collect(),
    })
}

pub(crate) fn quick_report(tenant: &Tenant, outcome: Outcome, applied: Vec<i64>) -> TenantReport {
    TenantReport {
        tenant: tenant.name.clone(),
        placement: tenant.placement.clone(),
        outcome,
        state: tenant.state,
        applied,
        attempts: 0,
        duration: Duration::ZERO,
        error: None,
        rows_changed: None,
        command: None,
    }
}

/// What a run does to each tenant.
enum Job<'a> {
    /// Bring it to the whole set.
    Migrate(&'a MigrationSet),
    /// Run a backfill.
    Backfill(&'a Backfill, BackfillMode),
}

/// A successful attempt.
enum Success {
    Migrated(Vec<i64>),
    AlreadyDone,
    Backfilled { rows: u64, dry_run: bool },
}

impl Job<'_> {
    async fn run(
        &self,
        session: &mut dyn TenantSession,
        tenant: &TenantName,
        limits: &Limits,
    ) -> Result<Success, TenantFailure> {
        match self {
            Job::Migrate(set) => session
                .migrate_tenant(tenant, set, limits)
                .await
                .map(Success::Migrated),
            Job::Backfill(backfill, mode) => Ok(
                match session
                    .run_backfill(tenant, backfill, *mode, limits)
                    .await?
                {
                    BackfillOutcome::AlreadyDone => Success::AlreadyDone,
                    BackfillOutcome::Ran { rows } => Success::Backfilled {
                        rows,
                        dry_run: mode.dry_run,
                    },
                },
            ),
        }
    }
}

/// A tenant a run will work on.
struct Due {
    tenant: TenantName,
    /// Where it lives.
    placement: String,
    /// Its registry state when planned.
    state: TenantState,
    /// Whether migrations were missing when planned (false when only its
    /// registry row is out of step).
    expects_work: bool,
}

/// Shared state of one run's workers.
struct Run<'a> {
    backend: &'a dyn Backend,
    job: Job<'a>,
    options: &'a FleetOptions,
    progress: ProgressSink<'a>,
    cancel: &'a CancellationToken,
    /// Stops scheduling: interruption, fail-fast, or the database gone.
    stop: CancellationToken,
    /// Tenants yet to start, by placement.
    queues: BTreeMap<String, Mutex<VecDeque<Due>>>,
    reports: Mutex<Vec<TenantReport>>,
    database_error: Mutex<Option<String>>,
}

impl Run<'_> {
    /// Takes `placement`'s tenants from its queue until it is empty or the
    /// run stops, replacing its connection every `recycle_after` tenants;
    /// closes its session, so what it committed is announced, before it
    /// returns.
    async fn worker(&self, placement: &str) {
        let mut session = None;
        self.work(placement, &mut session).await;
        if let Some(session) = session {
            session.close().await;
        }
    }

    /// The body of [`Self::worker`], leaving the session it ends with in
    /// `session`.
    async fn work(&self, placement: &str, session: &mut Option<Box<dyn TenantSession>>) {
        let queue = &self.queues[placement];
        let mut used = 0;
        while !self.stop.is_cancelled() {
            if session.is_none() || used >= self.options.recycle_after {
                if let Some(replaced) = session.take() {
                    replaced.close().await;
                }
                match self.backend.open_session_on(placement).await {
                    Ok(s) => (*session, used) = (Some(s), 0),
                    Err(e) if placement == DEFAULT_PLACEMENT => {
                        return self.database_gone(e.to_string())
                    }
                    Err(e) => return self.placement_gone(queue, &e),
                }
            }
            let Some(due) = queue.lock().expect("queue lock").pop_front() else {
                return;
            };
            let active = session.as_mut().expect("a session was just opened");
            let report = self.run_one(active.as_mut(), &due).await;
            used += 1;
            match report.error.as_ref().map(|e| e.kind) {
                // Its connection is in an unknown state: closed (what it
                // committed is still announced), never reused.
                Some(FailureKind::Interrupted) => {
                    if let Some(interrupted) = session.take() {
                        interrupted.close().await;
                    }
                }
                // The database is gone: nothing to announce through it.
                Some(FailureKind::ConnectionLost) => *session = None,
                Some(_) if self.options.fail_fast => self.stop.cancel(),
                _ => {}
            }
            (self.progress)(Progress::TenantFinished(Box::new(report.clone())));
            self.reports.lock().expect("reports lock").push(report);
        }
    }

    /// Runs the job on one tenant, retrying lock timeouts, and reports.
    async fn run_one(&self, session: &mut dyn TenantSession, due: &Due) -> TenantReport {
        let (tenant, state) = (&due.tenant, due.state);
        (self.progress)(Progress::TenantStarted {
            tenant: tenant.clone(),
        });
        let started = Instant::now();
        let mut attempts = 0;
        let result = loop {
            attempts += 1;
            let attempt = tokio::select! {
                result = self.job.run(session, tenant, &self.options.limits) => result,
                () = self.cancel.cancelled() => Err(interrupted(tenant)),
            };
            match attempt {
                Err(f)
                    if f.kind == FailureKind::LockTimeout
                        && attempts < self.options.lock_attempts =>
                {
                    (self.progress)(Progress::TenantRetrying {
                        tenant: tenant.clone(),
                        attempt: attempts + 1,
                    });
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempts))).await;
                }
                other => break other,
            }
        };
        let mut report = TenantReport {
            tenant: tenant.clone(),
            placement: due.placement.clone(),
            outcome: Outcome::Failed,
            state,
            applied: Vec::new(),
            attempts,
            duration: Duration::ZERO,
            error: None,
            rows_changed: None,
            command: None,
        };
        match result {
            Ok(Success::Migrated(applied)) => {
                let outcome = if applied.is_empty() && due.expects_work {
                    Outcome::FinishedElsewhere
                } else {
                    Outcome::Migrated
                };
                (report.outcome, report.state, report.applied) =
                    (outcome, TenantState::Ready, applied);
            }
            Ok(Success::AlreadyDone) => report.outcome = Outcome::UpToDate,
            Ok(Success::Backfilled { rows, dry_run }) => {
                report.outcome = if dry_run {
                    Outcome::Planned
                } else {
                    Outcome::Backfilled
                };
                report.rows_changed = Some(rows);
            }
            Err(failure) => {
                match failure.kind {
                    FailureKind::Interrupted => report.outcome = Outcome::Interrupted,
                    FailureKind::ConnectionLost => {}
                    // A failed backfill leaves the schema as it was: no registry change.
                    _ if matches!(self.job, Job::Migrate(_)) => {
                        if let Err(e) = session.record_failure(tenant, &failure).await {
                            tracing::warn!(tenant = %tenant, error = %e, "could not record the failure");
                        }
                        report.state = TenantState::Failed;
                    }
                    _ => {}
                }
                report.error = Some(failure);
            }
        }
        report.duration = started.elapsed();
        report
    }

    /// Fails every tenant left in a placement's queue: its server cannot
    /// be reached. The other placements go on.
    fn placement_gone(&self, queue: &Mutex<VecDeque<Due>>, error: &Error) {
        let left: Vec<Due> = queue.lock().expect("queue lock").drain(..).collect();
        for due in left {
            let failure = TenantFailure {
                kind: FailureKind::ConnectionLost,
                migration: None,
                message: error.to_string(),
                recovery: crate::Recovery::RetryWhenReachable {
                    tenant: due.tenant.clone(),
                },
            };
            let report = TenantReport {
                tenant: due.tenant,
                placement: due.placement,
                outcome: Outcome::Failed,
                state: due.state,
                applied: Vec::new(),
                attempts: 1,
                duration: Duration::ZERO,
                error: Some(failure),
                rows_changed: None,
                command: None,
            };
            (self.progress)(Progress::TenantFinished(Box::new(report.clone())));
            self.reports.lock().expect("reports lock").push(report);
        }
    }

    fn database_gone(&self, message: String) {
        self.database_error
            .lock()
            .expect("error lock")
            .get_or_insert(message);
        self.stop.cancel();
    }
}

fn interrupted(tenant: &TenantName) -> TenantFailure {
    TenantFailure {
        kind: FailureKind::Interrupted,
        migration: None,
        message: "interrupted; the tenant's transaction was rolled back".into(),
        recovery: crate::Recovery::MigrateTenant {
            tenant: tenant.clone(),
        },
    }
}
