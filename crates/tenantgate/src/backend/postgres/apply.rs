//! Applying a migration set to one schema: the heart of provisioning, fleet
//! migration and shared migrations.
//!
//! A transactional run is one transaction: the advisory lock on the target,
//! `SET LOCAL search_path`, the pending migrations with their ledger rows and
//! (for tenants) the registry row, sent as one simple-query batch. `COMMIT`
//! goes separately, only once the batch succeeded, so a client killed
//! mid-run leaves an open transaction that the server rolls back.

use tokio_postgres::{Client, SimpleQueryMessage};

use super::announce::announce_sql;
use super::sql::{db_error, is_lock_timeout, limits_sql, literal, tenant_ledger, xact_lock_call};
pub(crate) use crate::backend::failure::ApplyFailure;
use crate::{
    backend::{
        plan::{next_step, Step},
        Limits,
    },
    migrations::{Migration, MigrationRef},
    FailureKind, LedgerKind, MigrationSet, TenantName,
};

/// Where a migration set is applied.
pub(crate) struct Target {
    /// The name the advisory lock is keyed on.
    pub(crate) lock_name: String,
    /// The quoted schema the migrations run in.
    pub(crate) schema: String,
    /// The quoted, schema-qualified ledger table.
    pub(crate) ledger: String,
    /// Whether a tenant registry row (named after the schema) is kept in step.
    pub(crate) registry_row: bool,
    /// What `NOTIFY tenantgate` announces after a commit: the tenant, or
    /// `*`; `None` when the caller announces.
    pub(crate) announce: Option<String>,
    /// Send each statement as its own message (Citus forwards a message's
    /// whole text to its workers, which refuse some statements in a
    /// multi-statement message); still one transaction.
    pub(crate) one_by_one: bool,
}

impl Target {
    /// A tenant's schema, its `kind` ledger and its registry row.
    pub(crate) fn tenant(tenant: &TenantName, kind: LedgerKind) -> Self {
        Self {
            lock_name: tenant.as_str().to_owned(),
            schema: tenant.quoted(),
            ledger: tenant_ledger(tenant, kind),
            registry_row: true,
            announce: Some(tenant.to_string()),
            one_by_one: false,
        }
    }

    /// The shared (public) schema and the shared ledger.
    pub(crate) fn shared() -> Self {
        Self {
            lock_name: "tenantgate shared".into(),
            schema: "public".into(),
            ledger: "tenantgate._shared_migrations".into(),
            registry_row: false,
            // Shared changes concern every tenant: watchers re-read everything.
            announce: Some("*".into()),
            one_by_one: false,
        }
    }

    /// The same target on a server of `kind`.
    pub(crate) fn on(mut self, kind: super::connect::ServerKind) -> Self {
        self.one_by_one = kind == super::connect::ServerKind::Citus;
        self
    }

    /// Runs `sql` (statements of a migration file, or tenantgate's own):
    /// one batch, or one statement per message on a server that needs it.
    pub(crate) async fn execute(
        &self,
        client: &Client,
        sql: &str,
    ) -> Result<(), tokio_postgres::Error> {
        if !self.one_by_one {
            return client.batch_execute(sql).await;
        }
        match crate::sql::split(crate::sql::Dialect::Postgres, sql) {
            Ok(statements) => {
                for statement in statements {
                    client.batch_execute(&statement.sql).await?;
                }
                Ok(())
            }
            // Unreadable text was refused when the folder loaded; the server
            // says what is wrong with anything else.
            Err(_) => client.batch_execute(sql).await,
        }
    }

    /// Starts a run (see [`Self::begin_sql`]); when that fails part-way (a
    /// lock timeout), the transaction is rolled back so the connection is
    /// usable again.
    pub(crate) async fn begin(
        &self,
        client: &Client,
        limits: &Limits,
    ) -> Result<(), tokio_postgres::Error> {
        let begun = client.batch_execute(&self.begin_sql(limits)).await;
        if begun.is_err() {
            rollback(client).await;
        }
        begun
    }

    /// Commits, then (unless the caller announces) announces the change on
    /// channel `tenantgate` in the same round trip. The announcement runs
    /// after the commit, in its own tiny transaction: notifying inside the
    /// tenant's transaction would serialise every parallel tenant's commit
    /// on the notification queue's lock. A lost announcement is covered by
    /// watchers' periodic refresh.
    pub(crate) async fn commit_and_announce(
        &self,
        client: &Client,
    ) -> Result<(), tokio_postgres::Error> {
        let Some(payload) = &self.announce else {
            return client.batch_execute("COMMIT").await;
        };
        let announce = announce_sql(std::slice::from_ref(payload));
        let (committed, announced) = futures::join!(
            client.batch_execute("COMMIT"),
            client.batch_execute(&announce)
        );
        committed?;
        if let Err(e) = announced {
            tracing::warn!(error = %e, announce = %payload, "could not announce a registry change");
        }
        Ok(())
    }

    /// The same target, whose commits the caller announces (see
    /// [`super::announce::Announcer`]).
    pub(crate) fn announced_by_caller(mut self) -> Self {
        self.announce = None;
        self
    }

    /// `BEGIN`, limits, the lock and the search path: the start of every
    /// run (the limits in a statement before the lock, which they bound).
    pub(crate) fn begin_sql(&self, limits: &Limits) -> String {
        format!(
            "BEGIN; {} SELECT {}, set_config('search_path', {}, true);",
            limits_sql(limits),
            xact_lock_call(&self.lock_name),
            literal(&format!("{}, public", self.schema))
        )
    }

    /// The DDL of an empty ledger table with sqlx's six columns.
    pub(crate) fn create_ledger_sql(&self) -> String {
        format!(
            "CREATE TABLE {} (
                version bigint PRIMARY KEY,
                description text NOT NULL,
                installed_on timestamptz NOT NULL DEFAULT now(),
                success boolean NOT NULL,
                checksum bytea NOT NULL,
                execution_time bigint NOT NULL
            );",
            self.ledger
        )
    }

    /// Brings the registry row in step with the ledger: state `ready` (or
    /// `pending` when `complete` is false), unless it is `drift`, which only
    /// a deep verification clears.
    /// `ledger`: the whole ledger after this run, when the run knows it
    /// (it read the ledger under the tenant's lock), which spares reading
    /// it again (on Citus a round trip to a worker); else it is read.
    fn registry_sync_sql(&self, complete: bool, ledger: Option<&[(i64, Vec<u8>)]>) -> String {
        if !self.registry_row {
            return String::new();
        }
        let state = if complete { "ready" } else { "pending" };
        let copy = match ledger {
            Some(rows) => format!(
                "(SELECT ARRAY[{}]::bigint[] AS versions, ARRAY[{}]::bytea[] AS checksums)",
                rows.iter()
                    .map(|(v, _)| v.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                rows.iter()
                    .map(|(_, c)| format!("'\\x{}'::bytea", hex::encode(c)))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            None => format!(
                "(SELECT array_agg(version ORDER BY version) AS versions,
                         array_agg(checksum ORDER BY version) AS checksums FROM {})",
                self.ledger
            ),
        };
        // `current_schema()` is a `name`, collated "C": compared as it is,
        // the registry's primary key (default collation) cannot be used and
        // every tenant's update scans the whole registry.
        format!(
            "UPDATE tenantgate.tenants t SET
                state = CASE WHEN t.state = 'drift' THEN 'drift' ELSE '{state}' END,
                last_error = CASE WHEN t.state = 'drift' THEN t.last_error END,
                applied_versions = coalesce(l.versions, '{{}}'),
                applied_checksums = coalesce(l.checksums, '{{}}'),
                updated_at = now()
              FROM {copy} l
              WHERE t.name = current_schema()::text COLLATE \"default\";"
        )
    }
}

impl ApplyFailure {
    pub(crate) fn db(e: &tokio_postgres::Error, migration: Option<MigrationRef>) -> Self {
        let error = db_error(e);
        let kind = if error.connection_lost {
            FailureKind::ConnectionLost
        } else if is_lock_timeout(&error) {
            FailureKind::LockTimeout
        } else {
            FailureKind::Migration
        };
        Self {
            kind,
            migration: migration.map(Box::new),
            error,
        }
    }
}

/// The statement that records `m` in `ledger`, with `execution_time` (an
/// SQL expression for nanoseconds).
fn ledger_insert_sql(ledger: &str, m: &Migration, execution_time: &str) -> String {
    format!(
        "INSERT INTO {ledger} (version, description, installed_on, success, checksum, execution_time) \
         VALUES ({version}, {description}, now(), true, '\\x{checksum}'::bytea, {execution_time});\n",
        version = m.version,
        description = literal(&m.description),
        checksum = hex::encode(&m.checksum),
    )
}

/// The statements that run one migration and record it in the ledger,
/// timing it on the server.
fn migration_sql(ledger: &str, m: &Migration) -> String {
    format!(
        "SELECT set_config('tenantgate.t0', clock_timestamp()::text, true);\n{sql}\n;\n{insert}",
        sql = m.sql,
        insert = ledger_insert_sql(
            ledger,
            m,
            "(extract(epoch FROM clock_timestamp() - current_setting('tenantgate.t0')::timestamptz) * 1e9)::bigint"
        ),
    )
}

/// The batch for a transactional run of `segment`.
/// `before`: the ledger's rows before this run (read under the tenant's lock).
pub(crate) fn segment_sql(
    target: &Target,
    segment: &[&Migration],
    complete: bool,
    before: &[(i64, Vec<u8>)],
) -> String {
    let mut sql: String = segment
        .iter()
        .map(|m| migration_sql(&target.ledger, m))
        .collect();
    let mut after: Vec<(i64, Vec<u8>)> = before.to_vec();
    after.extend(segment.iter().map(|m| (m.version, m.checksum.clone())));
    after.sort_by_key(|(version, _)| *version);
    sql.push_str(&target.registry_sync_sql(complete, Some(&after)));
    sql
}

/// Applied (version, checksum) pairs, read inside the current transaction.
async fn read_ledger(
    client: &Client,
    target: &Target,
) -> Result<Vec<(i64, Vec<u8>)>, tokio_postgres::Error> {
    let messages = client.simple_query(&ledger_sql(target)).await?;
    Ok(ledger_rows(&messages))
}

/// Starts a run (see [`Target::begin_sql`]) and reads the ledger under the
/// tenant's lock, in one round trip. On failure the transaction is rolled
/// back; a ledger that cannot be read is [`FailureKind::LedgerMissing`].
async fn begin_reading_ledger(
    client: &Client,
    target: &Target,
    limits: &Limits,
) -> Result<Vec<(i64, Vec<u8>)>, ApplyFailure> {
    let sql = format!("{} {}", target.begin_sql(limits), ledger_sql(target));
    match client.simple_query(&sql).await {
        Ok(messages) => Ok(ledger_rows(&messages)),
        Err(e) => {
            rollback(client).await;
            let mut failure = ApplyFailure::db(&e, None);
            if failure.kind == FailureKind::Migration {
                failure.kind = FailureKind::LedgerMissing;
            }
            Err(failure)
        }
    }
}

/// The query of applied (version, hex checksum) pairs, in version order.
fn ledger_sql(target: &Target) -> String {
    format!(
        "SELECT version, encode(checksum, 'hex') FROM {} WHERE success ORDER BY version;",
        target.ledger
    )
}

/// The (version, checksum) pairs [`ledger_sql`] returned, as the last
/// statement of a batch (the batch's earlier statements may return rows
/// of their own: the advisory lock's).
fn ledger_rows(messages: &[SimpleQueryMessage]) -> Vec<(i64, Vec<u8>)> {
    let completes = |m: &SimpleQueryMessage| matches!(m, SimpleQueryMessage::CommandComplete(_));
    let end = messages
        .iter()
        .rposition(completes)
        .unwrap_or(messages.len());
    let start = messages[..end]
        .iter()
        .rposition(completes)
        .map_or(0, |at| at + 1);
    messages[start..end]
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some((
                row.get(0).and_then(|v| v.parse().ok()).unwrap_or(-1),
                row.get(1)
                    .and_then(|c| hex::decode(c).ok())
                    .unwrap_or_default(),
            )),
            _ => None,
        })
        .collect()
}

/// Rolls back, ignoring errors: the connection may already be gone, and then
/// the server rolls back on its own.
pub(crate) async fn rollback(client: &Client) {
    let _ = client.batch_execute("ROLLBACK").await;
}

/// Applies every migration of `set` the target's ledger lacks. Transactional
/// migrations run in as few transactions as the no-transaction ones allow.
/// Returns the versions applied.
pub(crate) async fn apply_set(
    client: &Client,
    target: &Target,
    set: &MigrationSet,
    limits: &Limits,
) -> Result<Vec<i64>, ApplyFailure> {
    let mut applied_now = Vec::new();
    loop {
        let ledger = begin_reading_ledger(client, target, limits).await?;
        let (segment, complete) = match next_step(set, &ledger) {
            Err(failure) => {
                rollback(client).await;
                return Err(failure);
            }
            Ok(Step::Alone { migration, last }) => {
                rollback(client).await;
                apply_no_transaction(client, target, migration, last, limits).await?;
                applied_now.push(migration.version);
                continue;
            }
            Ok(Step::Transaction { segment, complete }) => (segment, complete),
        };
        let batch = segment_sql(target, &segment, complete, &ledger);
        if let Err(e) = target.execute(client, &batch).await {
            rollback(client).await;
            return Err(blame(client, target, &segment, limits, &e, "").await);
        }
        target
            .commit_and_announce(client)
            .await
            .map_err(|e| ApplyFailure::db(&e, None))?;
        applied_now.extend(segment.iter().map(|m| m.version));
        if complete {
            return Ok(applied_now);
        }
    }
}

/// Finds which migration of a failed batch failed, by replaying the
/// migrations one statement batch at a time in a transaction that is rolled
/// back. Falls back to the batch's own error when the replay passes.
pub(crate) async fn blame(
    client: &Client,
    target: &Target,
    segment: &[&Migration],
    limits: &Limits,
    batch_error: &tokio_postgres::Error,
    setup: &str,
) -> ApplyFailure {
    let failure = ApplyFailure::db(batch_error, None);
    if failure.kind != FailureKind::Migration {
        return failure;
    }
    let begin = format!("{} {setup}", target.begin_sql(limits));
    if client.batch_execute(&begin).await.is_err() {
        rollback(client).await;
        return failure;
    }
    for m in segment {
        if let Err(e) = target.execute(client, &m.sql).await {
            rollback(client).await;
            return ApplyFailure::db(&e, Some(m.reference()));
        }
    }
    rollback(client).await;
    failure
}

/// Runs one `-- no-transaction` migration: under a session-level advisory
/// lock, re-checking the ledger, then records it in its own transaction.
async fn apply_no_transaction(
    client: &Client,
    target: &Target,
    m: &Migration,
    last: bool,
    limits: &Limits,
) -> Result<(), ApplyFailure> {
    let (class, key) = super::sql::lock_key(&target.lock_name);
    let reference = || Some(m.reference());
    client
        .batch_execute(&format!("SELECT pg_advisory_lock({class}, {key})"))
        .await
        .map_err(|e| ApplyFailure::db(&e, reference()))?;
    let result = async {
        let already = read_ledger(client, target)
            .await
            .map_err(|e| ApplyFailure::db(&e, reference()))?
            .iter()
            .any(|(v, _)| *v == m.version);
        if already {
            return Ok(());
        }
        // A no-transaction statement cannot share a message with SET LOCAL;
        // the session setting is reset right after, on this dedicated connection.
        client
            .batch_execute(&format!("SET search_path TO {}, public", target.schema))
            .await
            .map_err(|e| ApplyFailure::db(&e, reference()))?;
        let started = std::time::Instant::now();
        let run = client.batch_execute(&m.sql).await;
        let _ = client.batch_execute("RESET search_path").await;
        run.map_err(|e| ApplyFailure::db(&e, reference()))?;
        let record = format!(
            "{} {} {}",
            target.begin_sql(limits),
            ledger_insert_sql(&target.ledger, m, &started.elapsed().as_nanos().to_string()),
            target.registry_sync_sql(last, None),
        );
        if let Err(e) = client.batch_execute(&record).await {
            rollback(client).await;
            return Err(ApplyFailure::db(&e, reference()));
        }
        target
            .commit_and_announce(client)
            .await
            .map_err(|e| ApplyFailure::db(&e, reference()))
    }
    .await;
    let _ = client
        .batch_execute(&format!("SELECT pg_advisory_unlock({class}, {key})"))
        .await;
    result
}
