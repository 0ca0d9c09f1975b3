//! A scenario's world: a fresh store (a database in the shared PostgreSQL
//! test cluster, or a data folder for SQLite), a migration folder, and the
//! `tenantgate` binary pointed at both.
//!
//! Scenarios talk to the store only through the helpers here, which say the
//! same thing in each store's terms, so one scenario checks both backends.

use std::{
    path::{Path, PathBuf},
    process::Output,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use tokio_postgres::{Client, NoTls};

/// Runs each named scenario against every backend.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::harness::Harness::postgres().await).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::harness::Harness::sqlite().await).await
                }
            }
        )*
    };
}

/// Runs each named scenario against one backend only: a behaviour that
/// exists on that backend alone (see ARCHITECTURE.md, "Two stores").
#[macro_export]
macro_rules! only_on {
    ($backend:ident: $($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $backend() {
                    super::$name($crate::harness::Harness::$backend().await).await
                }
            }
        )*
    };
}

static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// The store under test and a way to look inside it.
enum Store {
    Postgres(Client),
    Sqlite(PathBuf),
}

/// One scenario's store, migration folder and binary.
pub(crate) struct Harness {
    /// The store's URL as the binary receives it.
    pub(crate) url: String,
    folder: tempfile::TempDir,
    store: Store,
}

/// The result of one run of the binary.
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// The stdout parsed as JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts the exit code, showing the output when it differs.
    #[track_caller]
    pub(crate) fn expect(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// The URL of the shared test cluster, set by `scripts/test`.
pub(crate) fn cluster_url() -> String {
    std::env::var("TENANTGATE_TEST_PG_URL")
        .expect("TENANTGATE_TEST_PG_URL is not set: run the suite with ./scripts/test, which starts PostgreSQL")
}

/// `base` with its database name replaced.
pub(crate) fn with_database(base: &str, db: &str) -> String {
    let (before, after) = base
        .split_once('?')
        .map_or((base, None), |(b, a)| (b, Some(a)));
    let root = &before[..before.rfind('/').expect("a URL with a database")];
    match after {
        Some(query) => format!("{root}/{db}?{query}"),
        None => format!("{root}/{db}"),
    }
}

pub(crate) async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to the test cluster");
    tokio::spawn(connection);
    client
}

/// A SQLite connection to `path` that waits for other writers.
fn sqlite(path: &Path) -> rusqlite::Connection {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn
}

/// A lock held on a tenant until dropped (see [`Harness::hold_lock`]).
pub(crate) enum HeldLock {
    Postgres(Client),
    Sqlite(rusqlite::Connection),
}

impl Harness {
    /// A fresh database in the shared cluster and an empty migration folder.
    pub(crate) async fn postgres() -> Self {
        let base = cluster_url();
        // Unique across runs against one cluster, where process ids repeat.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let db = format!(
            "tg_{}_{nanos}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        connect(&base)
            .await
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .expect("create test database");
        let url = with_database(&base, &db);
        let client = connect(&url).await;
        Self::with_store(url, Store::Postgres(client))
    }

    /// A fresh data folder and an empty migration folder.
    pub(crate) async fn sqlite() -> Self {
        let data = tempfile::tempdir().expect("temp dir").keep().join("data");
        Self::with_store(format!("sqlite://{}", data.display()), Store::Sqlite(data))
    }

    fn with_store(url: String, store: Store) -> Self {
        let folder = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(folder.path().join("tenant")).unwrap();
        Self { url, folder, store }
    }

    /// Whether the store is SQLite, for the few facts only one store has.
    pub(crate) fn is_sqlite(&self) -> bool {
        matches!(self.store, Store::Sqlite(_))
    }

    /// The first text on PostgreSQL, the second on SQLite.
    pub(crate) fn pick<'a>(&self, postgres: &'a str, sqlite: &'a str) -> &'a str {
        if self.is_sqlite() {
            sqlite
        } else {
            postgres
        }
    }

    /// The migration folder.
    pub(crate) fn migrations(&self) -> &Path {
        self.folder.path()
    }

    /// Writes `tenant/<file>` (or `shared/<file>` when `file` starts with `shared/`).
    pub(crate) fn write(&self, file: &str, sql: &str) {
        let path = if file.contains('/') {
            self.folder.path().join(file)
        } else {
            self.folder.path().join("tenant").join(file)
        };
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, sql).unwrap();
    }

    /// Removes `tenant/<file>`.
    pub(crate) fn remove(&self, file: &str) {
        std::fs::remove_file(self.folder.path().join("tenant").join(file)).unwrap();
    }

    /// Writes a small valid tenant migration set of `n` files creating tables t1..tn.
    pub(crate) fn write_tables(&self, n: usize) {
        for i in 1..=n {
            self.write(
                &format!("{i:04}_table_{i}.sql"),
                &format!("CREATE TABLE t{i} (id bigint PRIMARY KEY, note text);"),
            );
        }
    }

    /// The messages app's migration set for this store, its tenant part
    /// only up to version `through` when given.
    pub(crate) fn use_demo_migrations(&self, through: Option<i64>) {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../migrations")
            .join(self.pick("postgres", "sqlite"));
        for dir in ["shared", "tenant", "backfills"] {
            let _ = std::fs::remove_dir_all(self.migrations().join(dir));
            std::fs::create_dir_all(self.migrations().join(dir)).unwrap();
            for entry in std::fs::read_dir(source.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_str().unwrap().to_owned();
                let version: Option<i64> = name.split('_').next().and_then(|v| v.parse().ok());
                if dir == "tenant" && through.is_some_and(|t| version.is_some_and(|v| v > t)) {
                    continue;
                }
                std::fs::copy(&path, self.migrations().join(dir).join(&name)).unwrap();
            }
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantgate"));
        command
            .args(args)
            .env("DATABASE_URL", &self.url)
            .env("TENANTGATE_MIGRATIONS", self.folder.path())
            .env_remove("RUST_LOG")
            .kill_on_drop(true);
        command
    }

    /// Runs the binary to completion.
    pub(crate) async fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().await.expect("run tenantgate"))
    }

    /// The binary's command with more environment (which may override the
    /// harness's own `TENANTGATE_MIGRATIONS`), to start by hand.
    pub(crate) fn command_with_env(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> tokio::process::Command {
        let mut command = self.command(args);
        command.envs(env.iter().copied());
        command
    }

    /// Runs the binary with more environment (see [`Self::command_with_env`]).
    pub(crate) async fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        Run::from(
            self.command_with_env(args, env)
                .output()
                .await
                .expect("run tenantgate"),
        )
    }

    /// Runs the binary against another database URL.
    pub(crate) async fn run_with_url(&self, url: &str, args: &[&str]) -> Run {
        Run::from(
            self.command(args)
                .env("DATABASE_URL", url)
                .output()
                .await
                .expect("run tenantgate"),
        )
    }

    /// Starts the binary with piped output.
    pub(crate) fn spawn(&self, args: &[&str]) -> tokio::process::Child {
        self.command(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn tenantgate")
    }

    /// A connection to the PostgreSQL store, for PostgreSQL-only scenarios.
    pub(crate) fn db(&self) -> &Client {
        match &self.store {
            Store::Postgres(client) => client,
            Store::Sqlite(_) => panic!("a PostgreSQL-only helper used on SQLite"),
        }
    }

    fn data(&self) -> &Path {
        match &self.store {
            Store::Sqlite(data) => data,
            Store::Postgres(_) => panic!("a SQLite-only helper used on PostgreSQL"),
        }
    }

    /// The data folder of the SQLite store.
    pub(crate) fn data_folder(&self) -> &Path {
        self.data()
    }

    /// The database file of a tenant of the SQLite store.
    pub(crate) fn tenant_file(&self, tenant: &str) -> PathBuf {
        self.data().join("tenants").join(format!("{tenant}.db"))
    }

    /// A connection to a tenant's file of the SQLite store, as an
    /// application opens it (WAL, waiting for other writers).
    pub(crate) fn tenant_connection(&self, tenant: &str) -> rusqlite::Connection {
        sqlite(&self.tenant_file(tenant))
    }

    fn registry(&self) -> rusqlite::Connection {
        sqlite(&self.data().join("registry.db"))
    }

    /// Runs SQL inside a tenant (its schema, or its file), committed.
    pub(crate) async fn exec_in_tenant(&self, tenant: &str, sql: &str) {
        match &self.store {
            Store::Postgres(client) => client
                .batch_execute(&format!(
                    "BEGIN; SET LOCAL search_path TO \"{tenant}\"; {sql}; COMMIT;"
                ))
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
            Store::Sqlite(_) => sqlite(&self.tenant_file(tenant))
                .execute_batch(&format!("BEGIN IMMEDIATE; {sql}; COMMIT;"))
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
        }
    }

    /// Runs SQL against the registry's tables (named without a schema).
    pub(crate) async fn exec_in_registry(&self, sql: &str) {
        match &self.store {
            Store::Postgres(client) => client
                .batch_execute(&format!(
                    "BEGIN; SET LOCAL search_path TO tenantgate; {sql}; COMMIT;"
                ))
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
            Store::Sqlite(_) => self
                .registry()
                .execute_batch(sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
        }
    }

    /// A single integer a query returns inside a tenant.
    pub(crate) async fn scalar_in_tenant(&self, tenant: &str, sql: &str) -> i64 {
        match &self.store {
            Store::Postgres(client) => {
                let tx_sql = format!("SET search_path TO \"{tenant}\"");
                client.batch_execute(&tx_sql).await.unwrap();
                let value: i64 = client
                    .query_one(&format!("SELECT ({sql})::bigint"), &[])
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
                    .get(0);
                client.batch_execute("RESET search_path").await.unwrap();
                value
            }
            Store::Sqlite(_) => sqlite(&self.tenant_file(tenant))
                .query_row(sql, [], |r| r.get(0))
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
        }
    }

    /// A single integer a query returns in the shared schema (or shared.db).
    pub(crate) async fn scalar_shared(&self, sql: &str) -> i64 {
        match &self.store {
            Store::Postgres(client) => client
                .query_one(&format!("SELECT ({sql})::bigint"), &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .get(0),
            Store::Sqlite(data) => sqlite(&data.join("shared.db"))
                .query_row(sql, [], |r| r.get(0))
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
        }
    }

    /// Whether the tenant's schema (or file) exists.
    pub(crate) async fn tenant_exists(&self, tenant: &str) -> bool {
        match &self.store {
            Store::Postgres(_) => {
                self.count(
                    "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
                    tenant,
                )
                .await
                    > 0
            }
            Store::Sqlite(_) => self.tenant_file(tenant).exists(),
        }
    }

    /// Whether the tenant has `table`.
    pub(crate) async fn has_table(&self, tenant: &str, table: &str) -> bool {
        let sql = self.pick(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = '{}'",
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = '{}'",
        );
        self.scalar_in_tenant(tenant, &sql.replace("{}", table))
            .await
            > 0
    }

    /// Whether the tenant has `index`.
    pub(crate) async fn has_index(&self, tenant: &str, index: &str) -> bool {
        let sql = self.pick(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() AND indexname = '{}'",
            "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name = '{}'",
        );
        self.scalar_in_tenant(tenant, &sql.replace("{}", index))
            .await
            > 0
    }

    /// Makes a tenant's schema (or file) holding table `keep`, without a
    /// registry row.
    pub(crate) async fn make_stray(&self, tenant: &str) {
        match &self.store {
            Store::Postgres(client) => client
                .batch_execute(&format!(
                    "CREATE SCHEMA {tenant}; CREATE TABLE {tenant}.keep (id int)"
                ))
                .await
                .unwrap(),
            Store::Sqlite(_) => {
                let path = self.tenant_file(tenant);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                rusqlite::Connection::open(&path)
                    .unwrap()
                    .execute_batch("CREATE TABLE keep (id int)")
                    .unwrap();
            }
        }
    }

    /// A registry query returning one integer (`$1`/`?1` is `param`).
    async fn registry_count(&self, postgres: &str, sqlite_sql: &str, param: &str) -> i64 {
        match &self.store {
            Store::Postgres(_) => self.count(postgres, param).await,
            Store::Sqlite(_) => self
                .registry()
                .query_row(sqlite_sql, [param], |r| r.get(0))
                .unwrap(),
        }
    }

    /// Registry rows (tenants, domains) of a tenant.
    pub(crate) async fn registry_rows(&self, tenant: &str) -> (i64, i64) {
        (
            self.registry_count(
                "SELECT count(*) FROM tenantgate.tenants WHERE name = $1",
                "SELECT count(*) FROM tenants WHERE name = ?1",
                tenant,
            )
            .await,
            self.registry_count(
                "SELECT count(*) FROM tenantgate.domains WHERE tenant = $1",
                "SELECT count(*) FROM domains WHERE tenant = ?1",
                tenant,
            )
            .await,
        )
    }

    /// Events of `kind` recorded for a tenant.
    pub(crate) async fn events(&self, tenant: &str, kind: &str) -> i64 {
        let param = format!("{tenant} {kind}");
        self.registry_count(
            "SELECT count(*) FROM tenantgate.events WHERE tenant || ' ' || kind = $1",
            "SELECT count(*) FROM events WHERE tenant || ' ' || kind = ?1",
            &param,
        )
        .await
    }

    /// Versions in a tenant's ledger.
    pub(crate) async fn ledger(&self, tenant: &str) -> Vec<i64> {
        match &self.store {
            Store::Postgres(client) => client
                .query(
                    &format!(
                        "SELECT version FROM \"{tenant}\"._tenantgate_migrations ORDER BY version"
                    ),
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect(),
            Store::Sqlite(_) => {
                let conn = sqlite(&self.tenant_file(tenant));
                let mut statement = conn
                    .prepare("SELECT version FROM _tenantgate_migrations ORDER BY version")
                    .unwrap();
                let versions = statement.query_map([], |r| r.get(0)).unwrap();
                versions.map(Result::unwrap).collect()
            }
        }
    }

    /// The registry's state, last error and applied versions of a tenant.
    pub(crate) async fn registry_row(&self, tenant: &str) -> (String, Option<String>, Vec<i64>) {
        match &self.store {
            Store::Postgres(client) => {
                let row = client
                    .query_one(
                        "SELECT state, last_error, applied_versions FROM tenantgate.tenants WHERE name = $1",
                        &[&tenant],
                    )
                    .await
                    .unwrap();
                (row.get(0), row.get(1), row.get(2))
            }
            Store::Sqlite(_) => self
                .registry()
                .query_row(
                    "SELECT state, last_error, applied_versions FROM tenants WHERE name = ?1",
                    [tenant],
                    |r| {
                        let versions: String = r.get(2)?;
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            versions.split(',').filter_map(|v| v.parse().ok()).collect(),
                        ))
                    },
                )
                .unwrap(),
        }
    }

    /// The registry state of a tenant.
    pub(crate) async fn state(&self, tenant: &str) -> String {
        self.registry_row(tenant).await.0
    }

    /// SQL that keeps a migration busy for about `seconds`.
    pub(crate) fn slow_sql(&self, seconds: f64) -> String {
        match self.store {
            Store::Postgres(_) => format!("SELECT pg_sleep({seconds});"),
            Store::Sqlite(_) => format!(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {})
                 SELECT count(*) FROM c;",
                (seconds * 2_000_000.0) as u64
            ),
        }
    }

    /// How many tenants (or tenant files being built) a migration is busy in.
    pub(crate) async fn busy_tenants(&self) -> usize {
        match &self.store {
            Store::Postgres(_) => self
                .count(
                    "SELECT count(*) FROM pg_stat_activity
                      WHERE datname = current_database() AND query LIKE $1 AND pid <> pg_backend_pid()",
                    "%pg_sleep(%",
                )
                .await as usize,
            Store::Sqlite(data) => {
                let Ok(entries) = std::fs::read_dir(data.join("tenants")) else {
                    return 0;
                };
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "db" || x == "building"))
                    .filter(|p| {
                        let Ok(conn) = rusqlite::Connection::open_with_flags(
                            p,
                            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE,
                        ) else {
                            return false;
                        };
                        conn.busy_timeout(Duration::ZERO).unwrap();
                        let locked = conn.execute_batch("BEGIN IMMEDIATE").is_err();
                        let _ = conn.execute_batch("ROLLBACK");
                        locked
                    })
                    .count()
            }
        }
    }

    /// Holds a lock on the tenant's table `t1` (PostgreSQL) or its whole file
    /// (SQLite) until the returned guard is released with [`Self::release`].
    pub(crate) async fn hold_lock(&self, tenant: &str) -> HeldLock {
        match &self.store {
            Store::Postgres(_) => {
                let blocker = connect(&self.url).await;
                blocker
                    .batch_execute(&format!(
                        "BEGIN; LOCK TABLE {tenant}.t1 IN ACCESS EXCLUSIVE MODE"
                    ))
                    .await
                    .unwrap();
                HeldLock::Postgres(blocker)
            }
            Store::Sqlite(_) => {
                let conn = sqlite(&self.tenant_file(tenant));
                conn.execute_batch("BEGIN IMMEDIATE").unwrap();
                HeldLock::Sqlite(conn)
            }
        }
    }

    /// Releases a lock taken with [`Self::hold_lock`].
    pub(crate) async fn release(&self, lock: HeldLock) {
        match lock {
            HeldLock::Postgres(client) => client.batch_execute("ROLLBACK").await.unwrap(),
            HeldLock::Sqlite(conn) => conn.execute_batch("ROLLBACK").unwrap(),
        }
    }

    /// Files in the SQLite data folder's `tenants/` that are not tenant
    /// files (leftovers of interrupted runs); always empty on PostgreSQL.
    pub(crate) fn leftovers(&self) -> Vec<String> {
        let Store::Sqlite(data) = &self.store else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(data.join("tenants")) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !(n.ends_with(".db") || n.ends_with(".db-wal") || n.ends_with(".db-shm")))
            .collect()
    }

    /// A `count(*)` query with one text parameter (PostgreSQL).
    pub(crate) async fn count(&self, sql: &str, param: &str) -> i64 {
        self.db()
            .query_one(sql, &[&param])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
            .get(0)
    }

    /// Provisions tenants, asserting success.
    pub(crate) async fn create(&self, tenants: &[&str]) {
        for t in tenants {
            self.run(&["tenants", "create", t]).await.expect(0);
        }
    }

    /// Provisions `n` tenants named `t_0`, `t_1`…, asserting success;
    /// returns their names.
    pub(crate) async fn create_numbered(&self, n: usize) -> Vec<String> {
        let names: Vec<String> = (0..n).map(|i| format!("t_{i}")).collect();
        for name in &names {
            self.run(&["tenants", "create", name]).await.expect(0);
        }
        names
    }
}

/// The entry of tenant `name` in a verify or fleet report (`--json`).
pub(crate) fn report_tenant<'a>(
    report: &'a serde_json::Value,
    name: &str,
) -> &'a serde_json::Value {
    report["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"] == name)
        .unwrap_or_else(|| panic!("{name} in {report}"))
}

/// The names of the tenants of a verify or fleet report (`--json`) that
/// `keep` selects, in report order.
pub(crate) fn tenants_where(
    report: &serde_json::Value,
    keep: impl Fn(&serde_json::Value) -> bool,
) -> Vec<String> {
    report["tenants"]
        .as_array()
        .expect("a report with tenants")
        .iter()
        .filter(|t| keep(t))
        .map(|t| t["tenant"].as_str().expect("a tenant name").to_owned())
        .collect()
}

/// Polls `check` until it holds or `timeout` passes.
pub(crate) async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A PostgreSQL cluster of a scenario's own (`scripts/pg-cluster`), for
/// scenarios that need several servers or stop one; removed when dropped.
pub(crate) struct Cluster {
    /// Its URL (database `postgres`, no password: the cluster trusts local users).
    pub(crate) url: String,
    dir: String,
}

impl Cluster {
    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-cluster")
    }

    /// Starts a fresh cluster on a free local port.
    pub(crate) async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// A cluster that keeps every commit through a crash ([`Self::pause`]):
    /// the shared test clusters trade that for speed.
    pub(crate) async fn durable() -> Self {
        Self::start_with(&[("TENANTGATE_PG_DURABLE", "1")]).await
    }

    /// A cluster whose server presents a self-signed X.509 v1 certificate,
    /// as a stock Citus node does.
    pub(crate) async fn with_v1_certificate() -> Self {
        Self::start_with(&[("TENANTGATE_PG_CERT", "v1")]).await
    }

    async fn start_with(env: &[(&str, &str)]) -> Self {
        let output = tokio::process::Command::new(Self::script())
            .arg("start")
            .envs(env.iter().copied())
            .output()
            .await
            .expect("run scripts/pg-cluster");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "scripts/pg-cluster start failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let export = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(&format!("export {name}='")))
                .and_then(|rest| rest.strip_suffix('\''))
                .unwrap_or_else(|| panic!("scripts/pg-cluster printed no {name}: {text}"))
                .to_owned()
        };
        Self {
            url: export("TENANTGATE_TEST_PG_URL"),
            dir: export("TENANTGATE_PG_DIR"),
        }
    }

    async fn script_on(&self, action: &str) {
        let status = tokio::process::Command::new(Self::script())
            .args([action, &self.dir])
            .status()
            .await
            .expect("run scripts/pg-cluster");
        assert!(status.success(), "scripts/pg-cluster {action} failed");
    }

    /// The server's certificate (PEM).
    pub(crate) fn certificate(&self) -> PathBuf {
        Path::new(&self.dir).join("data/server.crt")
    }

    /// Stops the server at once, as an outage would (its data kept).
    pub(crate) async fn pause(&self) {
        self.script_on("pause").await;
    }

    /// Starts it again after [`Self::pause`].
    pub(crate) async fn resume(&self) {
        self.script_on("resume").await;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new(Self::script())
            .args(["stop", &self.dir])
            .status();
    }
}
