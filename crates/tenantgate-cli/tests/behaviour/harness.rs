//! A scenario's world: a fresh database in the shared test cluster, a
//! migration folder, and the `tenantgate` binary pointed at both.

use std::{
    path::Path,
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
            }
        )*
    };
}

static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// One scenario's database, migration folder and binary.
pub(crate) struct Harness {
    /// The store's URL as the binary receives it.
    pub(crate) url: String,
    folder: tempfile::TempDir,
    client: Client,
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

impl Harness {
    /// A fresh database in the shared cluster and an empty migration folder.
    pub(crate) async fn postgres() -> Self {
        let base = cluster_url();
        let db = format!(
            "tg_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        connect(&base)
            .await
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .expect("create test database");
        let url = with_database(&base, &db);
        let folder = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(folder.path().join("tenant")).unwrap();
        let client = connect(&url).await;
        Self {
            url,
            folder,
            client,
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

    /// A connection to the store, for setting up and inspecting scenarios.
    pub(crate) fn db(&self) -> &Client {
        &self.client
    }

    /// Runs SQL inside a tenant's schema.
    pub(crate) async fn exec_in_tenant(&self, tenant: &str, sql: &str) {
        self.client
            .batch_execute(&format!(
                "BEGIN; SET LOCAL search_path TO \"{tenant}\"; {sql}; COMMIT;"
            ))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Whether the tenant's schema exists.
    pub(crate) async fn schema_exists(&self, tenant: &str) -> bool {
        self.count(
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
            tenant,
        )
        .await
            > 0
    }

    /// Registry rows (tenants, domains) of a tenant.
    pub(crate) async fn registry_rows(&self, tenant: &str) -> (i64, i64) {
        (
            self.count(
                "SELECT count(*) FROM tenantgate.tenants WHERE name = $1",
                tenant,
            )
            .await,
            self.count(
                "SELECT count(*) FROM tenantgate.domains WHERE tenant = $1",
                tenant,
            )
            .await,
        )
    }

    /// Versions in a tenant's ledger.
    pub(crate) async fn ledger(&self, tenant: &str) -> Vec<i64> {
        self.client
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
            .collect()
    }

    /// The registry state of a tenant.
    pub(crate) async fn state(&self, tenant: &str) -> String {
        self.client
            .query_one(
                "SELECT state FROM tenantgate.tenants WHERE name = $1",
                &[&tenant],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// A `count(*)` query with one text parameter.
    pub(crate) async fn count(&self, sql: &str, param: &str) -> i64 {
        self.client.query_one(sql, &[&param]).await.unwrap().get(0)
    }

    /// Provisions tenants, asserting success.
    pub(crate) async fn create(&self, tenants: &[&str]) {
        for t in tenants {
            self.run(&["tenants", "create", t]).await.expect(0);
        }
    }
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
