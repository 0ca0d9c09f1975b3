//! Moving a tenant between placements; see [`crate::moves`] for the
//! guarantees and the recovery rule.

use std::{
    collections::{BTreeSet, HashMap},
    pin::pin,
    time::Instant,
};

use futures::{SinkExt, StreamExt};
use tokio_postgres::{types::Type, Client};

use super::{
    apply::{rollback, segment_sql, Target},
    connect::{Connector, ServerKind},
    fingerprint,
    placements::in_placement,
    registry::{notify, record_event},
    sql::{error_while, limits_sql, literal, lock_key, one_row, xact_lock_sql},
    PgBackend,
};
use crate::{
    backend::Limits,
    moves::{MoveOptions, MoveReport, Settled},
    placement::DEFAULT_PLACEMENT,
    Error, LedgerKind, Migration, MigrationSet, TenantName,
};

/// The registry's view of a tenant being (or about to be) moved.
struct Placed {
    placement: String,
    moving_to: Option<String>,
    state: String,
    versions: Vec<i64>,
    checksums: Vec<Vec<u8>>,
}

/// What the copy did, for the report.
#[derive(Default)]
struct Copied {
    tables: usize,
    rows: u64,
    bytes: u64,
    kept_source: Option<String>,
}

/// `name` as a quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl PgBackend {
    /// See [`crate::Backend::move_tenant`].
    pub(super) async fn move_now(
        &self,
        tenant: &TenantName,
        to: &str,
        set: &MigrationSet,
        options: MoveOptions,
        limits: &Limits,
    ) -> Result<MoveReport, Error> {
        let started = Instant::now();
        let _held = self
            .move_lock(tenant)
            .await?
            .ok_or_else(|| Error::MoveFailed {
                tenant: tenant.to_string(),
                from: "its current placement".into(),
                reason: "another process is moving it right now".into(),
            })?;
        let mut row = self.placed(tenant).await?;
        if let Some(earlier) = row.moving_to.clone() {
            self.settle_one(tenant, &row.placement, &earlier).await?;
            row = self.placed(tenant).await?;
        }
        let from = row.placement.clone();
        let refuse = |reason: String| Error::MoveFailed {
            tenant: tenant.to_string(),
            from: from.clone(),
            reason,
        };
        if from == to {
            return Err(refuse(format!("it already lives on placement {to}")));
        }
        let segment = self.replay_of(&row, set).map_err(&refuse)?;
        let (source, target) = (
            self.connector_of(&from).await?,
            self.connector_of(to).await?,
        );
        for (placement, connector) in [(from.as_str(), &source), (to, &target)] {
            let kind = connector
                .kind()
                .await
                .map_err(|e| in_placement(placement, e))?;
            if kind == ServerKind::Citus {
                return Err(refuse(format!(
                    "placement {placement} is a Citus coordinator: moves to or from one are not supported yet (between its workers, use --to-node)"
                )));
            }
        }
        if schema_exists(&target, tenant)
            .await
            .map_err(|e| in_placement(to, e))?
        {
            return Err(refuse(format!(
                "placement {to} already has a schema named {tenant}; drop or rename it first"
            )));
        }
        self.mark_moving(tenant, to).await?;
        let copied = self
            .copy(
                tenant,
                &row,
                (&from, &source),
                (to, &target),
                &segment,
                options,
                limits,
            )
            .await;
        match copied {
            Ok(copied) => {
                self.switch(tenant, &from, to).await?;
                Ok(MoveReport {
                    tenant: tenant.clone(),
                    from,
                    to: to.to_owned(),
                    tables: copied.tables,
                    rows: copied.rows,
                    bytes: copied.bytes,
                    kept_source: copied.kept_source,
                    duration: started.elapsed(),
                })
            }
            Err(e) => {
                // The servers' catalogs say whether the source was dropped.
                match self.settle_one(tenant, &from, to).await {
                    Ok(Settled::Finished { .. }) => {
                        tracing::warn!(tenant = %tenant, error = %e, "the move's last step failed after the source was dropped; the registry now routes to the copy");
                    }
                    Ok(_) => {}
                    Err(settling) => {
                        tracing::warn!(tenant = %tenant, error = %settling, "could not settle the failed move; the next move or verify does");
                    }
                }
                Err(match e {
                    e @ Error::MoveFailed { .. } => e,
                    other => refuse(other.to_string()),
                })
            }
        }
    }

    /// See [`crate::Backend::settle_moves`].
    pub(super) async fn settle_all(&self) -> Result<Vec<Settled>, Error> {
        let rows = {
            let mut client = self.connector.checkout().await?;
            let rows = client
                .query_typed(
                    "SELECT name, placement, moving_to FROM tenantgate.tenants WHERE moving_to IS NOT NULL ORDER BY name",
                    &[],
                )
                .await
                .map_err(|e| error_while("reading unfinished moves", &e))?;
            client.keep(true);
            rows
        };
        let mut settled = Vec::with_capacity(rows.len());
        for row in rows {
            let tenant =
                crate::registry::read_back("the tenant name", row.get(0), TenantName::parse)?;
            let (from, to): (String, String) = (row.get(1), row.get(2));
            let outcome = match self.move_lock(&tenant).await? {
                None => Settled::InProgress { tenant, to },
                Some(_held) => match self.settle_one(&tenant, &from, &to).await {
                    Ok(outcome) => outcome,
                    Err(e) => Settled::Stuck {
                        tenant,
                        to,
                        reason: e.to_string(),
                    },
                },
            };
            settled.push(outcome);
        }
        Ok(settled)
    }

    /// The session-level lock that keeps two processes from moving (or
    /// settling) the same tenant at once: a connection holding it, or
    /// `None` when another process holds it. Closing the connection (or the
    /// process dying) releases it.
    async fn move_lock(&self, tenant: &TenantName) -> Result<Option<Client>, Error> {
        let client = self.connector.connect().await?;
        let (class, key) = lock_key(&format!("tenantgate move {tenant}"));
        let taken: bool = one_row(
            &client,
            &format!("SELECT pg_try_advisory_lock({class}, {key})"),
            &[],
            "taking the move lock",
        )
        .await?
        .get(0);
        Ok(taken.then_some(client))
    }

    /// The registry row of `tenant`.
    async fn placed(&self, tenant: &TenantName) -> Result<Placed, Error> {
        let mut client = self.connector.checkout().await?;
        let rows = client
            .query_typed(
                "SELECT placement, moving_to, state, applied_versions, applied_checksums FROM tenantgate.tenants WHERE name = $1",
                &[(&tenant.as_str(), Type::TEXT)],
            )
            .await
            .map_err(|e| error_while(&format!("reading tenant {tenant}"), &e))?;
        client.keep(true);
        let row = rows.first().ok_or_else(|| Error::UnknownTenant {
            tenant: tenant.to_string(),
        })?;
        Ok(Placed {
            placement: row.get(0),
            moving_to: row.get(1),
            state: row.get(2),
            versions: row.get(3),
            checksums: row.get(4),
        })
    }

    /// The migrations that rebuild the tenant's schema on the target: the
    /// ones its ledger holds, each with the file it was applied from.
    fn replay_of<'a>(
        &self,
        row: &Placed,
        set: &'a MigrationSet,
    ) -> Result<Vec<&'a Migration>, String> {
        if self.ledger.kind == LedgerKind::Django {
            return Err("a Django ledger's migrations are Python, which tenantgate cannot replay to rebuild the schema".into());
        }
        let mut segment = Vec::with_capacity(row.versions.len());
        for (version, checksum) in row.versions.iter().zip(&row.checksums) {
            let migration = set.get(*version).ok_or_else(|| {
                format!(
                    "applied migration {version} has no file here; deploy the folder that has it"
                )
            })?;
            if &migration.checksum != checksum {
                return Err(format!(
                    "{} changed since it was applied; restore it first",
                    migration.file
                ));
            }
            if migration.no_transaction {
                return Err(format!(
                    "{} runs outside a transaction, and a move rebuilds the schema in one; not supported yet",
                    migration.file
                ));
            }
            segment.push(migration);
        }
        Ok(segment)
    }

    /// Marks the tenant as moving (the guard stops serving it) and announces it.
    async fn mark_moving(&self, tenant: &TenantName, to: &str) -> Result<(), Error> {
        let mut client = self.connector.checkout().await?;
        client
            .query_typed(
                "WITH u AS (UPDATE tenantgate.tenants SET moving_to = $2, updated_at = now()
                             WHERE name = $1 RETURNING name)
                 SELECT pg_notify('tenantgate', name) FROM u",
                &[(&tenant.as_str(), Type::TEXT), (&to, Type::TEXT)],
            )
            .await
            .map_err(|e| error_while(&format!("marking tenant {tenant} as moving"), &e))?;
        client.keep(true);
        Ok(())
    }

    /// Routes the tenant to `to` and clears the mark; one transaction,
    /// announced at its commit.
    async fn switch(&self, tenant: &TenantName, from: &str, to: &str) -> Result<(), Error> {
        let err = |e| error_while(&format!("routing tenant {tenant} to placement {to}"), &e);
        let mut client = self.connector.checkout().await?;
        let tx = client.transaction().await.map_err(err)?;
        record_event(
            &tx,
            tenant.as_str(),
            "moved",
            None,
            &format!("{from} -> {to}"),
        )
        .await
        .map_err(err)?;
        tx.query_typed(
            "UPDATE tenantgate.tenants SET placement = $2, moving_to = NULL, updated_at = now() WHERE name = $1",
            &[(&tenant.as_str(), Type::TEXT), (&to, Type::TEXT)],
        )
        .await
        .map_err(err)?;
        notify(&tx, tenant.as_str()).await.map_err(err)?;
        tx.commit().await.map_err(err)?;
        client.keep(true);
        Ok(())
    }

    /// Finishes or undoes the move of `tenant` from `from` to `to`, as the
    /// two servers' catalogs say (see [`crate::moves`]); the caller holds
    /// the move lock.
    async fn settle_one(
        &self,
        tenant: &TenantName,
        from: &str,
        to: &str,
    ) -> Result<Settled, Error> {
        let (source, target) = (self.connector_of(from).await?, self.connector_of(to).await?);
        let on_source = schema_exists(&source, tenant)
            .await
            .map_err(|e| in_placement(from, e))?;
        let on_target = schema_exists(&target, tenant)
            .await
            .map_err(|e| in_placement(to, e))?;
        match (on_source, on_target) {
            (true, target_copy) => {
                if target_copy {
                    drop_copy(&target, tenant, to != DEFAULT_PLACEMENT)
                        .await
                        .map_err(|e| in_placement(to, e))?;
                }
                let mut client = self.connector.checkout().await?;
                client
                    .query_typed(
                        "WITH u AS (UPDATE tenantgate.tenants SET moving_to = NULL, updated_at = now()
                                     WHERE name = $1 RETURNING name)
                         SELECT pg_notify('tenantgate', name) FROM u",
                        &[(&tenant.as_str(), Type::TEXT)],
                    )
                    .await
                    .map_err(|e| error_while(&format!("undoing the move of {tenant}"), &e))?;
                client.keep(true);
                Ok(Settled::Undone {
                    tenant: tenant.clone(),
                    to: to.to_owned(),
                })
            }
            (false, true) => {
                self.switch(tenant, from, to).await?;
                Ok(Settled::Finished {
                    tenant: tenant.clone(),
                    to: to.to_owned(),
                })
            }
            (false, false) => Ok(Settled::Stuck {
                tenant: tenant.clone(),
                to: to.to_owned(),
                reason: format!(
                    "neither placement {from} nor {to} holds its schema; restore it from a backup"
                ),
            }),
        }
    }

    /// The copy itself: locks the source, rebuilds and fills the target,
    /// checks it, commits it, then drops (or renames) the source.
    #[allow(clippy::too_many_arguments)]
    async fn copy(
        &self,
        tenant: &TenantName,
        row: &Placed,
        (from, source): (&str, &Connector),
        (to, target): (&str, &Connector),
        segment: &[&Migration],
        options: MoveOptions,
        limits: &Limits,
    ) -> Result<Copied, Error> {
        let src = source.connect().await.map_err(|e| in_placement(from, e))?;
        let dst = target.connect().await.map_err(|e| in_placement(to, e))?;
        let result = async {
            let schema = tenant.quoted();
            let begin = format!("BEGIN; {} {}", limits_sql(limits), xact_lock_sql(tenant.as_str()));
            let at_source = |e| in_placement(from, error_while("locking the source against writes", &e));
            src.batch_execute(&begin).await.map_err(at_source)?;
            let tables = tables_in(&src, tenant).await.map_err(|e| in_placement(from, e))?;
            if !tables.is_empty() {
                let all: Vec<String> = tables.iter().map(|(t, _)| format!("{schema}.{}", ident(t))).collect();
                src.batch_execute(&format!("LOCK TABLE {} IN EXCLUSIVE MODE", all.join(", ")))
                    .await
                    .map_err(at_source)?;
            }
            let at_target = |e| in_placement(to, error_while("building the copy", &e));
            let target_ledger = Target {
                registry_row: false,
                ..Target::tenant(tenant, self.ledger.kind)
            };
            dst.batch_execute(&format!(
                "{begin} CREATE SCHEMA {schema}; {} SET LOCAL search_path TO {schema}, public; {}",
                target_ledger.create_ledger_sql(),
                segment_sql(&target_ledger, segment, false, &[])
            ))
            .await
            .map_err(at_target)?;
            let built = tables_in(&dst, tenant).await.map_err(|e| in_placement(to, e))?;
            if !built.is_empty() {
                let all: Vec<String> = built.iter().map(|(t, _)| format!("{schema}.{}", ident(t))).collect();
                dst.batch_execute(&format!("TRUNCATE {}", all.join(", ")))
                    .await
                    .map_err(at_target)?;
            }
            // The rows satisfied every constraint at the source, under its
            // locks: load them without firing triggers (a user trigger
            // would change or add rows; foreign-key checks would be repaid
            // row by row). That takes a superuser; without one, user
            // triggers are switched off table by table and keys checked.
            // Plain indexes are built once after the load, as pg_restore
            // does, instead of maintained row by row.
            let deferred = deferred_indexes(&dst, tenant).await.map_err(at_target)?;
            let drops: String = deferred
                .iter()
                .map(|(name, _)| format!("DROP INDEX {schema}.{};", ident(name)))
                .collect();
            dst.batch_execute(&drops).await.map_err(at_target)?;
            let replica = dst
                .batch_execute("SAVEPOINT load; SET LOCAL session_replication_role = replica;")
                .await
                .is_ok();
            if !replica {
                dst.batch_execute("ROLLBACK TO SAVEPOINT load").await.map_err(at_target)?;
                switch_user_triggers(&dst, &schema, &built, "DISABLE").await.map_err(at_target)?;
            }
            let mut copied = Copied::default();
            for table in load_order(&tables) {
                let name = format!("{schema}.{}", ident(&table));
                let (rows, bytes) = stream_table(&src, &dst, &name)
                    .await
                    .map_err(|e| error_while(&format!("copying {name}"), &e))?;
                let source_rows = count(&src, &name).await.map_err(|e| in_placement(from, e))?;
                if rows != source_rows {
                    return Err(Error::MoveFailed {
                        tenant: tenant.to_string(),
                        from: from.to_owned(),
                        reason: format!("{name}: {rows} row(s) copied, the source holds {source_rows}"),
                    });
                }
                copied.tables += 1;
                copied.rows += rows;
                copied.bytes += bytes;
            }
            copy_sequences(&src, &dst, tenant).await?;
            let builds: String = deferred.iter().map(|(_, create)| format!("{create};")).collect();
            dst.batch_execute(&builds).await.map_err(at_target)?;
            if replica {
                dst.batch_execute("SET LOCAL session_replication_role = origin")
                    .await
                    .map_err(at_target)?;
            } else {
                switch_user_triggers(&dst, &schema, &built, "ENABLE").await.map_err(at_target)?;
            }
            let (before, after) = (
                fingerprint::lines(&src, std::slice::from_ref(tenant)).await?,
                fingerprint::lines(&dst, std::slice::from_ref(tenant)).await?,
            );
            let (before, after) = (
                before.get(tenant).cloned().unwrap_or_default(),
                after.get(tenant).cloned().unwrap_or_default(),
            );
            if before != after {
                let differences: Vec<String> = before
                    .symmetric_difference(&after)
                    .take(3)
                    .map(|line| {
                        let side = if before.contains(line) { "only at the source" } else { "only in the copy" };
                        format!("{line} ({side})")
                    })
                    .collect();
                return Err(Error::MoveFailed {
                    tenant: tenant.to_string(),
                    from: from.to_owned(),
                    reason: format!(
                        "the rebuilt schema differs from the source's catalog (drift? run verify --deep): {}",
                        differences.join("; ")
                    ),
                });
            }
            if to != DEFAULT_PLACEMENT {
                dst.query_typed(
                    "INSERT INTO tenantgate.tenants (name, state, applied_versions, applied_checksums) VALUES ($1, $2, $3, $4)",
                    &[
                        (&tenant.as_str(), Type::TEXT),
                        (&row.state, Type::TEXT),
                        (&row.versions, Type::INT8_ARRAY),
                        (&row.checksums, Type::BYTEA_ARRAY),
                    ],
                )
                .await
                .map_err(at_target)?;
            }
            dst.batch_execute("COMMIT").await.map_err(at_target)?;
            // The copy is committed; the source goes in its locking
            // transaction, so no write lands between the copy and the drop.
            if options.keep_source {
                let kept = kept_name(tenant);
                src.batch_execute(&format!("ALTER SCHEMA {schema} RENAME TO {}", ident(&kept)))
                    .await
                    .map_err(at_source)?;
                copied.kept_source = Some(kept);
            } else {
                src.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
                    .await
                    .map_err(at_source)?;
            }
            if from != DEFAULT_PLACEMENT {
                src.query_typed(
                    "DELETE FROM tenantgate.tenants WHERE name = $1",
                    &[(&tenant.as_str(), Type::TEXT)],
                )
                .await
                .map_err(at_source)?;
            }
            src.batch_execute("COMMIT").await.map_err(at_source)?;
            Ok(copied)
        }
        .await;
        if result.is_err() {
            rollback(&dst).await;
            rollback(&src).await;
        }
        result
    }
}

/// The copy's indexes that back no constraint and belong to no partitioned
/// index, with the statement that builds each.
async fn deferred_indexes(
    client: &Client,
    tenant: &TenantName,
) -> Result<Vec<(String, String)>, tokio_postgres::Error> {
    let rows = client
        .query_typed(
            "SELECT i.relname::text, pg_get_indexdef(i.oid)
               FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
               JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
              WHERE n.nspname = $1 AND t.relkind = 'r' AND NOT i.relispartition
                AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)",
            &[(&tenant.as_str(), Type::TEXT)],
        )
        .await?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// `ENABLE`s or `DISABLE`s the user triggers of every table of the copy.
async fn switch_user_triggers(
    client: &Client,
    schema: &str,
    tables: &[(String, Vec<String>)],
    action: &str,
) -> Result<(), tokio_postgres::Error> {
    let sql: String = tables
        .iter()
        .map(|(table, _)| {
            format!(
                "ALTER TABLE {schema}.{} {action} TRIGGER USER;",
                ident(table)
            )
        })
        .collect();
    client.batch_execute(&sql).await
}

/// Whether the server at `connector` holds `tenant`'s schema.
async fn schema_exists(connector: &Connector, tenant: &TenantName) -> Result<bool, Error> {
    let mut client = connector.checkout().await?;
    let exists: bool = one_row(
        &client,
        "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
        &[(&tenant.as_str(), Type::TEXT)],
        "looking for the tenant's schema",
    )
    .await?
    .get(0);
    client.keep(true);
    Ok(exists)
}

/// Drops a committed copy (and, on a placement other than `default`, the
/// placement's record of it) in one transaction.
async fn drop_copy(
    connector: &Connector,
    tenant: &TenantName,
    with_record: bool,
) -> Result<(), Error> {
    let err = |e| error_while(&format!("dropping the unfinished copy of {tenant}"), &e);
    let mut client = connector.checkout().await?;
    let mut sql = format!(
        "BEGIN; {} DROP SCHEMA IF EXISTS {} CASCADE;",
        xact_lock_sql(tenant.as_str()),
        tenant.quoted()
    );
    if with_record {
        sql.push_str(&format!(
            "DELETE FROM tenantgate.tenants WHERE name = {};",
            literal(tenant.as_str())
        ));
    }
    sql.push_str("COMMIT;");
    client.batch_execute(&sql).await.map_err(err)?;
    client.keep(true);
    Ok(())
}

/// The tenant's tables that hold rows (`r`, partitions included) with the
/// tables of its schema each references, read in the current transaction.
async fn tables_in(
    client: &Client,
    tenant: &TenantName,
) -> Result<Vec<(String, Vec<String>)>, Error> {
    let rows = client
        .query_typed(
            "SELECT c.relname::text,
                    coalesce(array_agg(DISTINCT r.relname::text) FILTER (WHERE r.oid IS NOT NULL AND r.oid <> c.oid), '{}')
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               LEFT JOIN pg_constraint f ON f.conrelid = c.oid AND f.contype = 'f'
               LEFT JOIN pg_class r ON r.oid = f.confrelid AND r.relnamespace = n.oid
              WHERE n.nspname = $1 AND c.relkind = 'r'
              GROUP BY c.relname ORDER BY c.relname",
            &[(&tenant.as_str(), Type::TEXT)],
        )
        .await
        .map_err(|e| error_while("listing the tenant's tables", &e))?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// Tables in an order that loads referenced tables first (the rest, in a
/// cycle, last: their foreign keys then decide).
fn load_order(tables: &[(String, Vec<String>)]) -> Vec<String> {
    let mut pending: HashMap<&str, BTreeSet<&str>> = tables
        .iter()
        .map(|(t, refs)| (t.as_str(), refs.iter().map(String::as_str).collect()))
        .collect();
    let mut order = Vec::with_capacity(tables.len());
    loop {
        let mut ready: Vec<&str> = pending
            .iter()
            .filter(|(_, refs)| refs.iter().all(|r| !pending.contains_key(r)))
            .map(|(t, _)| *t)
            .collect();
        if ready.is_empty() {
            let mut rest: Vec<&str> = pending.keys().copied().collect();
            rest.sort_unstable();
            order.extend(rest.into_iter().map(str::to_owned));
            return order;
        }
        ready.sort_unstable();
        for table in ready {
            pending.remove(table);
            order.push(table.to_owned());
        }
    }
}

/// Streams one table from `src` to `dst` in PostgreSQL's binary `COPY`
/// format; returns rows loaded and bytes streamed.
async fn stream_table(
    src: &Client,
    dst: &Client,
    table: &str,
) -> Result<(u64, u64), tokio_postgres::Error> {
    let out = src
        .copy_out(&format!("COPY {table} TO STDOUT (FORMAT binary)"))
        .await?;
    let sink = dst
        .copy_in(&format!("COPY {table} FROM STDIN (FORMAT binary)"))
        .await?;
    let (mut out, mut sink) = (pin!(out), pin!(sink));
    let mut bytes = 0;
    while let Some(chunk) = out.next().await {
        let chunk = chunk?;
        bytes += chunk.len() as u64;
        sink.feed(chunk).await?;
    }
    let rows = sink.as_mut().finish().await?;
    Ok((rows, bytes))
}

/// `count(*)` of `table`.
async fn count(client: &Client, table: &str) -> Result<u64, Error> {
    let n: i64 = one_row(
        client,
        &format!("SELECT count(*) FROM {table}"),
        &[],
        &format!("counting the rows of {table}"),
    )
    .await?
    .get(0);
    Ok(n as u64)
}

/// Sets each sequence of the copy where the source's stands.
async fn copy_sequences(src: &Client, dst: &Client, tenant: &TenantName) -> Result<(), Error> {
    let sequences = src
        .query_typed(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relkind = 'S'",
            &[(&tenant.as_str(), Type::TEXT)],
        )
        .await
        .map_err(|e| error_while("listing the tenant's sequences", &e))?;
    for row in sequences {
        let name = format!("{}.{}", tenant.quoted(), ident(row.get::<_, &str>(0)));
        let state = one_row(
            src,
            &format!("SELECT last_value, is_called FROM {name}"),
            &[],
            &format!("reading sequence {name}"),
        )
        .await?;
        let (last, called): (i64, bool) = (state.get(0), state.get(1));
        one_row(
            dst,
            "SELECT setval($1::text::regclass, $2, $3)",
            &[
                (&name, Type::TEXT),
                (&last, Type::INT8),
                (&called, Type::BOOL),
            ],
            &format!("setting sequence {name}"),
        )
        .await?;
    }
    Ok(())
}

/// The name a kept source schema gets: the tenant's (shortened to fit)
/// and the time of the move.
fn kept_name(tenant: &TenantName) -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name: String = tenant.as_str().chars().take(40).collect();
    format!("{name}_moved_{seconds}")
}
