//! One trait, one implementation per store.
//!
//! [`Backend`] is everything the engine asks of a store; [`connect`] picks
//! the implementation from the URL. The PostgreSQL store keeps one schema per
//! tenant with the registry in schema `tenantgate` of the same database; the
//! SQLite store keeps one database file per tenant in a data folder.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! # let dir = tempfile::tempdir().unwrap();
//! # let (migrations, data) = (dir.path().join("migrations"), dir.path().join("data"));
//! # std::fs::create_dir_all(migrations.join("tenant")).unwrap();
//! # std::fs::write(migrations.join("tenant/0001_users.sql"), "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);").unwrap();
//! # let url = format!("sqlite://{}", data.display());
//! let backend = tenantgate::connect(&url).await?;
//! backend.prepare().await?;
//! assert!(backend.tenants().await?.is_empty());
//! assert!(tenantgate::backend::is_postgres("host=db.example.com dbname=app"));
//! # Ok::<(), tenantgate::Error>(())
//! # }).unwrap();
//! ```

#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod failure;
mod plan;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    time::Duration,
};

use async_trait::async_trait;

use crate::{
    adopt::{AdoptSource, Adoptee, Candidate},
    migrations::Backfill,
    moves::{MoveOptions, MoveReport, Settled},
    placement::{Placement, DEFAULT_PLACEMENT},
    AppliedMigration, Domain, Error, LedgerKind, MigrationSet, Tenant, TenantFailure, TenantName,
    TenantState,
};

/// Per-tenant time limits, so one tenant stuck behind application locks is
/// reported rather than waited on forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a statement waits for a lock before the attempt fails.
    pub lock_timeout: Duration,
    /// How long one statement may run; `None` for no limit.
    pub statement_timeout: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            lock_timeout: Duration::from_secs(5),
            statement_timeout: Some(Duration::from_secs(600)),
        }
    }
}

/// A tenant's ledger as read from its own schema; `None` when the schema or
/// its ledger table does not exist.
pub type Ledgers = HashMap<TenantName, Option<Vec<AppliedMigration>>>;

/// A registry state change to record.
#[derive(Debug, Clone)]
pub struct StateChange {
    /// The tenant.
    pub tenant: TenantName,
    /// Its new state.
    pub state: TenantState,
    /// The error or drift to keep with it; `None` clears it.
    pub detail: Option<String>,
}

/// A store of tenants: the registry, each tenant's schema and ledger.
///
/// Every method is safe to call from several processes at once: the
/// implementation serialises work on the same tenant with locks.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Where the store is, without credentials, for messages.
    fn describe(&self) -> String;

    /// Where `tenant` lives in this store, for messages: `schema "acme"`
    /// or `file tenants/acme.db`.
    fn container(&self, tenant: &TenantName) -> String;

    /// The SQL dialect migration files for this store are written in.
    fn dialect(&self) -> crate::sql::Dialect;

    /// Which ledger the tenants hold (see [`ConnectOptions::ledger`]).
    fn ledger_kind(&self) -> LedgerKind {
        LedgerKind::Tenantgate
    }

    /// Installs or upgrades the registry; idempotent.
    async fn prepare(&self) -> Result<(), Error>;

    /// Applies the shared migrations the shared ledger lacks; returns the
    /// versions applied. Fails with [`Error::ChecksumChanged`] when an
    /// applied shared migration's file changed.
    async fn apply_shared(&self, set: &MigrationSet, limits: &Limits) -> Result<Vec<i64>, Error> {
        if set.is_empty() || plan::holds_all(set, &self.shared_ledger().await?) {
            return Ok(Vec::new());
        }
        self.apply_shared_now(set, limits).await
    }

    /// What [`Self::apply_shared`] does once a read of the shared ledger
    /// found work: takes the shared lock, reads the ledger again under it,
    /// and applies what is still missing.
    async fn apply_shared_now(
        &self,
        set: &MigrationSet,
        limits: &Limits,
    ) -> Result<Vec<i64>, Error>;

    /// The shared ledger.
    async fn shared_ledger(&self) -> Result<Vec<AppliedMigration>, Error>;

    /// Every registered tenant, with its domains, ordered by name.
    async fn tenants(&self) -> Result<Vec<Tenant>, Error>;

    /// The registered tenants among `names` (unknown names are left out).
    async fn tenants_named(&self, names: &[TenantName]) -> Result<Vec<Tenant>, Error>;

    /// Subscribes to registry state changes.
    async fn watch(&self) -> Result<Box<dyn Watch>, Error>;

    /// Creates a tenant in one transaction: its schema, the migrations of
    /// `set` up to the first no-transaction one, their ledger rows, its
    /// registry row and domains. On failure nothing of the tenant exists and
    /// the failure is recorded as an event. Returns the versions applied.
    async fn create_tenant(
        &self,
        tenant: &TenantName,
        domains: &[Domain],
        set: &MigrationSet,
        limits: &Limits,
    ) -> Result<Vec<i64>, Error>;

    /// [`Self::create_tenant`] on `placement` (`None`: the placement holding
    /// the fewest tenants). On a placement other than `default` the tenant's
    /// transaction commits there and its registry row after that commit;
    /// see [`crate::placement`]. Returns the placement and the versions applied.
    async fn create_tenant_on(
        &self,
        placement: Option<&str>,
        tenant: &TenantName,
        domains: &[Domain],
        set: &MigrationSet,
        limits: &Limits,
    ) -> Result<(String, Vec<i64>), Error> {
        match placement {
            None | Some(DEFAULT_PLACEMENT) => Ok((
                DEFAULT_PLACEMENT.to_owned(),
                self.create_tenant(tenant, domains, set, limits).await?,
            )),
            Some(_) => Err(no_placements()),
        }
    }

    /// Removes a tenant's schema, ledger, registry and domain rows in one transaction.
    async fn drop_tenant(&self, tenant: &TenantName) -> Result<(), Error>;

    /// Reads the ledgers of `tenants`.
    async fn read_ledgers(&self, tenants: &[TenantName]) -> Result<Ledgers, Error>;

    /// Compares each tenant's live catalog with the shape its applied
    /// versions promise; returns the differences of tenants that drifted.
    async fn catalog_drift(
        &self,
        set: &MigrationSet,
        tenants: &[(TenantName, Vec<i64>)],
    ) -> Result<HashMap<TenantName, Vec<String>>, Error>;

    /// Which of `tenants` (with their applied versions) are known unchanged
    /// since a deep verification found them clean with the same versions,
    /// or why that cannot be known (then every catalog is scanned).
    async fn catalog_tracking(
        &self,
        tenants: &[(TenantName, Vec<i64>)],
    ) -> Result<ChangeTracking, Error> {
        let _ = tenants;
        Ok(ChangeTracking::Unavailable(
            "every tenant file's catalog is read (each is small and read in parallel)".into(),
        ))
    }

    /// Keeps the verdicts of a deep verification (tenant, applied versions,
    /// clean) under `tracking`, for the next one.
    async fn record_verdicts(
        &self,
        verdicts: &[(TenantName, Vec<i64>, bool)],
        tracking: &ChangeTracking,
    ) -> Result<(), Error> {
        let _ = (verdicts, tracking);
        Ok(())
    }

    /// Rewrites the registry's copy of each tenant's applied versions and
    /// checksums from its ledger (the truth), and announces the change.
    async fn sync_registry(&self, tenants: &[TenantName]) -> Result<(), Error>;

    /// Records state changes in the registry and announces them.
    async fn record_states(&self, changes: &[StateChange]) -> Result<(), Error>;

    /// Opens a session for migrating tenants one after another.
    async fn open_session(&self) -> Result<Box<dyn TenantSession>, Error>;

    /// Opens a session for the tenants living on `placement`: their
    /// transactions commit there, and the registry records each after its
    /// commit.
    async fn open_session_on(&self, placement: &str) -> Result<Box<dyn TenantSession>, Error> {
        if placement == DEFAULT_PLACEMENT {
            self.open_session().await
        } else {
            Err(no_placements())
        }
    }

    /// Every placement with its tenant count, `default` first.
    async fn placements(&self) -> Result<Vec<Placement>, Error> {
        Err(no_placements())
    }

    /// Adds placement `name` at `url` (checked with
    /// [`crate::placement::check_name`] and [`crate::placement::check_url`])
    /// once it answers and holds tenantgate's record of its tenants.
    async fn add_placement(&self, name: &str, url: &str) -> Result<(), Error> {
        let _ = (name, url);
        Err(no_placements())
    }

    /// Removes placement `name`; refused while tenants live there.
    async fn remove_placement(&self, name: &str) -> Result<(), Error> {
        let _ = name;
        Err(no_placements())
    }

    /// Checks each placement other than `default` answers within
    /// `timeout`: its name and, when it does not, why.
    async fn placement_health(
        &self,
        timeout: Duration,
    ) -> Result<Vec<(String, Option<String>)>, Error> {
        let _ = timeout;
        Ok(Vec::new())
    }

    /// Moves `tenant` to placement `to` (see [`crate::moves`]), first
    /// settling a move of it an earlier run left unfinished.
    async fn move_tenant(
        &self,
        tenant: &TenantName,
        to: &str,
        set: &MigrationSet,
        options: MoveOptions,
        limits: &Limits,
    ) -> Result<MoveReport, Error> {
        let _ = (tenant, to, set, options, limits);
        Err(no_placements())
    }

    /// On a Citus placement: moves `tenant`'s distributed schema to the
    /// worker at `host:port` with Citus's online move (the tenant keeps
    /// serving; writes stall briefly).
    async fn move_to_node(&self, tenant: &TenantName, host: &str, port: u16) -> Result<(), Error> {
        let _ = (tenant, host, port);
        Err(no_placements())
    }

    /// The Citus worker (`host:port`) each of `tenants` lives on; tenants
    /// on plain servers are left out.
    async fn nodes(&self, tenants: &[TenantName]) -> Result<HashMap<TenantName, String>, Error> {
        let _ = tenants;
        Ok(HashMap::new())
    }

    /// Whether some placement is a Citus coordinator (its tenants'
    /// migrations are then linted before any runs, see [`crate::lint`]).
    async fn has_citus(&self) -> Result<bool, Error> {
        Ok(false)
    }

    /// Finishes or undoes every move an earlier run left unfinished.
    async fn settle_moves(&self) -> Result<Vec<Settled>, Error> {
        Ok(Vec::new())
    }

    /// Tenants that cannot be reached although their placement answers (on
    /// Citus: those a down worker holds), with why; each checked within
    /// `timeout`.
    async fn cut_off_tenants(
        &self,
        timeout: Duration,
    ) -> Result<HashMap<TenantName, String>, Error> {
        let _ = timeout;
        Ok(HashMap::new())
    }

    /// Tenants a placement holds that the registry does not know (a
    /// provisioning stopped between the placement's commit and the
    /// registry's), by placement; placements that cannot be read are left
    /// out.
    async fn unregistered(&self) -> Result<Vec<(String, TenantName)>, Error> {
        Ok(Vec::new())
    }

    /// A digest of each tenant's live catalog: equal digests, equal
    /// catalogs (see [`crate::peers`]). PostgreSQL only.
    async fn catalog_digests(
        &self,
        tenants: &[TenantName],
    ) -> Result<HashMap<TenantName, String>, Error> {
        let _ = tenants;
        Err(no_peers())
    }

    /// Each tenant's live catalog, one readable line per object.
    async fn catalog_lines(
        &self,
        tenants: &[TenantName],
    ) -> Result<HashMap<TenantName, BTreeSet<String>>, Error> {
        let _ = tenants;
        Err(no_peers())
    }

    /// The schemas `source` names, one row each as it gave them (see
    /// [`crate::adopt`]). Only the PostgreSQL store holds schemas to adopt.
    async fn adoption_candidates(&self, source: &AdoptSource) -> Result<Vec<Candidate>, Error> {
        let _ = source;
        Err(not_adoptable())
    }

    /// Which of `schemas` exist.
    async fn existing_schemas(&self, schemas: &[String]) -> Result<HashSet<String>, Error> {
        let _ = schemas;
        Err(not_adoptable())
    }

    /// Every registered domain with the tenant it routes to.
    async fn domain_owners(&self) -> Result<HashMap<String, String>, Error> {
        Err(not_adoptable())
    }

    /// Registers existing schemas as tenants in one transaction, with
    /// their domains, states and ledger copies; with `baseline`, also
    /// writes each one's tenantgate ledger with those migrations. Announces
    /// the change after the commit.
    async fn register_existing(
        &self,
        adoptees: &[Adoptee],
        baseline: Option<&MigrationSet>,
    ) -> Result<(), Error> {
        let _ = (adoptees, baseline);
        Err(not_adoptable())
    }

    /// Has every running guard re-read the registry and its required set
    /// (`tenantgate notify`).
    async fn announce_reload(&self) -> Result<(), Error> {
        Err(Error::Config(
            "notify reaches servers through PostgreSQL's LISTEN/NOTIFY; servers on the SQLite store see registry changes by themselves and re-read their migration folder on SIGHUP".into(),
        ))
    }
}

/// The error of a store without catalog-wide digests.
fn no_peers() -> Error {
    Error::Config(
        "comparing tenants with their peers reads PostgreSQL's catalog; on the SQLite store use verify --deep".into(),
    )
}

/// The error of a store without placements.
fn no_placements() -> Error {
    Error::Config(
        "placements are PostgreSQL servers behind one PostgreSQL registry; the SQLite store keeps every tenant in its data folder".into(),
    )
}

/// The error of a store that holds no schemas to adopt.
fn not_adoptable() -> Error {
    Error::Config(
        "adopt registers existing PostgreSQL schemas; the SQLite store's tenants are created by tenantgate".into(),
    )
}

/// A connection dedicated to migrating tenants, one transaction per tenant.
#[async_trait]
pub trait TenantSession: Send {
    /// Brings `tenant` to every migration of `set` it lacks, each transactional
    /// run committing the migrations, their ledger rows and the registry state
    /// together. Returns the versions applied. On failure the tenant's
    /// transaction is rolled back; nothing is recorded (see [`Self::record_failure`]).
    async fn migrate_tenant(
        &mut self,
        tenant: &TenantName,
        set: &MigrationSet,
        limits: &Limits,
    ) -> Result<Vec<i64>, TenantFailure>;

    /// Marks `tenant` failed with `failure` and records an event.
    async fn record_failure(
        &mut self,
        tenant: &TenantName,
        failure: &TenantFailure,
    ) -> Result<(), Error>;

    /// Runs `backfill` in `tenant`'s schema in one transaction, recording it
    /// in the tenant's backfill ledger. Skips a tenant whose ledger already
    /// holds it unless `mode.force`; rolls back when `mode.dry_run`.
    async fn run_backfill(
        &mut self,
        tenant: &TenantName,
        backfill: &Backfill,
        mode: BackfillMode,
        limits: &Limits,
    ) -> Result<BackfillOutcome, TenantFailure>;

    /// Ends the session: every registry change it committed has been
    /// announced to watchers when this returns. A session dropped without
    /// it (a run that lost its database) leaves the changes not yet
    /// announced to the watchers' periodic refresh.
    async fn close(self: Box<Self>) {}
}

/// How a backfill run treats each tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackfillMode {
    /// Run again where the ledger says it already ran.
    pub force: bool,
    /// Run, count the rows it changes, and roll back.
    pub dry_run: bool,
}

/// What a backfill did in one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackfillOutcome {
    /// The tenant's backfill ledger already held it.
    AlreadyDone,
    /// It ran (or would have, in a dry run), changing this many rows.
    Ran {
        /// Rows reported by its statements.
        rows: u64,
    },
}

/// What a store knows of which catalogs changed since they were verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeTracking {
    /// Nothing: every catalog must be read, for this reason.
    Unavailable(String),
    /// Changes are recorded: these tenants are unchanged since a clean verdict.
    Tracked {
        /// Tenants known unchanged, with the same applied versions, since clean.
        unchanged: HashSet<TenantName>,
        /// The store's snapshot taken before this scan (PostgreSQL's
        /// `pg_current_snapshot()`), kept with the new verdicts.
        since: String,
        /// The recording mechanism's identity; verdicts under another are void.
        tracker: i64,
    },
}

/// What changed in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RegistryChange {
    /// This tenant's row (or its domains) changed, or it was dropped.
    Tenant(TenantName),
    /// Anything may have changed: re-read the whole registry.
    Everything,
    /// A deploy changed what the application requires: re-read the
    /// required set, then the whole registry.
    Reload,
}

/// A subscription to registry state changes (`NOTIFY tenantgate`).
#[async_trait]
pub trait Watch: Send {
    /// The next change, or `None` when `timeout` passed without one. An
    /// error means the subscription is lost: resubscribe and re-read the
    /// whole registry, since changes may have been missed.
    async fn next(&mut self, timeout: Duration) -> Result<Option<RegistryChange>, Error>;

    /// Confirms the store still answers, within `timeout`.
    async fn heartbeat(&mut self, timeout: Duration) -> Result<(), Error>;

    /// A value that differs whenever the registry (tenants, domains, the
    /// shared ledger) changed between two reads of it; `None` where the
    /// store cannot tell. A full read of the registry that follows a read
    /// of this value sees at least what the value stands for.
    async fn registry_version(&mut self) -> Result<Option<String>, Error> {
        Ok(None)
    }
}

/// How a server learns that the registry changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum WatchMode {
    /// `LISTEN tenantgate` on a connection to the store's own URL: changes
    /// arrive within milliseconds of their commit.
    #[default]
    Listen,
    /// `LISTEN` on a direct connection to this URL, for a store reached
    /// through a transaction-pooling proxy (where a listening session does
    /// not survive the transaction).
    ListenAt(String),
    /// Re-read a digest of the registry at this interval: no session state
    /// at all, so it works through any pooler; changes arrive within one
    /// interval.
    Poll(Duration),
}

/// How to open a store.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// How [`Backend::watch`] learns of changes. PostgreSQL only: the SQLite
    /// store always polls its registry's `PRAGMA data_version`.
    pub watch: WatchMode,
    /// Which ledger each tenant schema holds. PostgreSQL only: the SQLite
    /// store keeps tenantgate's own, and refuses the others.
    pub ledger: LedgerKind,
    /// With a Django ledger: the tenant apps whose rows count (Django also
    /// records the shared apps' migrations in every schema).
    pub django_apps: Vec<String>,
}

/// The data folder of the embedded default store.
pub const DEFAULT_URL: &str = "sqlite://./tenantgate-data";

/// Opens the store a URL names: `sqlite://DIR` (a data folder, created on
/// first use) or PostgreSQL as libpq names it: `postgres://…` /
/// `postgresql://…` or `key=value` pairs, with `sslmode` up to
/// `verify-full` and `sslrootcert=FILE|system`.
pub async fn connect(url: &str) -> Result<Box<dyn Backend>, Error> {
    connect_with(url, &ConnectOptions::default()).await
}

/// [`connect`] with options.
pub async fn connect_with(url: &str, options: &ConnectOptions) -> Result<Box<dyn Backend>, Error> {
    if is_postgres(url) {
        #[cfg(feature = "postgres")]
        return Ok(Box::new(
            postgres::PgBackend::new(url)?
                .watching(options.watch.clone())
                .with_ledger(options.ledger, options.django_apps.clone()),
        ));
        #[cfg(not(feature = "postgres"))]
        return Err(not_built("postgres", url));
    }
    if let Some(dir) = sqlite_folder(url) {
        if options.ledger.is_foreign() {
            return Err(Error::Config(format!(
                "the {} ledger is read from PostgreSQL schemas; the SQLite store keeps tenantgate's own ledger",
                options.ledger
            )));
        }
        #[cfg(feature = "sqlite")]
        return Ok(Box::new(sqlite::SqliteBackend::new(dir)));
        #[cfg(not(feature = "sqlite"))]
        return Err(not_built("sqlite", dir));
    }
    let _ = options;
    Err(Error::Config(format!(
        "unsupported database URL {:?}: expected sqlite://DIR or postgres://…",
        redact(url)
    )))
}

/// The error for a store this build leaves out.
#[cfg(not(all(feature = "postgres", feature = "sqlite")))]
fn not_built(feature: &str, url: &str) -> Error {
    Error::Config(format!(
        "{:?} needs the `{feature}` store, which this build of tenantgate leaves out (cargo feature `{feature}`)",
        redact(url)
    ))
}

/// Whether `url` names a PostgreSQL database: a `postgres://` or
/// `postgresql://` URL, or libpq's `key=value` form (`host=… dbname=…`).
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://")
        || url.starts_with("postgresql://")
        || (!url.contains("://") && !url.starts_with("sqlite:") && url.contains('='))
}

/// The data folder a `sqlite://DIR` (or `sqlite:DIR`) URL names.
pub fn sqlite_folder(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite:")?;
    let dir = rest.strip_prefix("//").unwrap_or(rest);
    (!dir.is_empty()).then_some(dir)
}

/// The connection string with every password replaced by `***`, for
/// messages: in a URL's user info (`postgres://u:PW@…`), in its query
/// (`?password=PW`), and in the `key=value` form (`password=PW`,
/// `password='P W'`).
pub fn redact(conninfo: &str) -> String {
    let mut out = conninfo.to_owned();
    if let (Some(scheme_end), Some(at)) = (out.find("://"), out.rfind('@')) {
        if at > scheme_end {
            if let Some(colon) = out[scheme_end + 3..at].find(':') {
                out.replace_range(scheme_end + 3 + colon + 1..at, "***");
            }
        }
    }
    let mut redacted = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(found) = find_password_key(rest) {
        let (before, after) = rest.split_at(found);
        redacted.push_str(before);
        let after_key = &after["password".len()..];
        let spaces = after_key.len() - after_key.trim_start().len();
        let after_eq = &after_key[spaces + 1..];
        let value_spaces = after_eq.len() - after_eq.trim_start().len();
        redacted.push_str(&after[.."password".len() + spaces + 1 + value_spaces]);
        redacted.push_str("***");
        rest = skip_value(&after_eq[value_spaces..]);
    }
    redacted.push_str(rest);
    redacted
}

/// Where a `password` key (followed by `=`) starts in `text`.
fn find_password_key(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(offset) = lower[from..].find("password") {
        let at = from + offset;
        let starts_key = at == 0 || matches!(lower.as_bytes()[at - 1], b'?' | b'&' | b' ' | b'\t');
        let after = lower[at + "password".len()..].trim_start();
        if starts_key && after.starts_with('=') {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// The text after a value: a quoted value up to its closing quote, else up
/// to the next `&` or whitespace.
fn skip_value(text: &str) -> &str {
    if let Some(quoted) = text.strip_prefix('\'') {
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '\'' => return &quoted[i + 1..],
                _ => {}
            }
        }
        return "";
    }
    let end = text
        .find(|c: char| c == '&' || c.is_whitespace())
        .unwrap_or(text.len());
    &text[end..]
}

#[cfg(test)]
mod tests {
    #[test]
    fn redact_hides_passwords() {
        for (given, shown) in [
            ("postgres://u:secret@h/db", "postgres://u:***@h/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://u:p@ss@h/db", "postgres://u:***@h/db"),
            (
                "postgres://u@h/db?password=secret&sslmode=require",
                "postgres://u@h/db?password=***&sslmode=require",
            ),
            (
                "postgres://u@h/db?sslmode=require&PASSWORD=secret",
                "postgres://u@h/db?sslmode=require&PASSWORD=***",
            ),
            (
                "host=h password=secret dbname=d",
                "host=h password=*** dbname=d",
            ),
            (
                "host=h password = 'sec ret\\'s' dbname=d",
                "host=h password = *** dbname=d",
            ),
            ("password=secret", "password=***"),
            ("host=h mypassword=x", "host=h mypassword=x"),
        ] {
            assert_eq!(super::redact(given), shown, "{given}");
        }
    }

    #[test]
    fn sqlite_urls_name_a_folder() {
        assert_eq!(super::sqlite_folder("sqlite://./data"), Some("./data"));
        assert_eq!(super::sqlite_folder("sqlite:///var/tg"), Some("/var/tg"));
        assert_eq!(super::sqlite_folder("sqlite:data"), Some("data"));
        assert_eq!(super::sqlite_folder("sqlite://"), None);
        assert_eq!(super::sqlite_folder("postgres://h/db"), None);
    }
}
