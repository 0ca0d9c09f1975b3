//! The app's queries on SQLite: one database file per tenant, opened per
//! request off the async runtime.

use std::{path::PathBuf, time::Duration};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::{
    error::{from_sqlite, AppDbError},
    Dashboard,
};

/// Opens a tenant's file (never creating one) and runs `work` in an
/// immediate transaction that commits when `work` succeeds.
async fn in_tenant<T, F>(path: PathBuf, work: F) -> Result<T, AppDbError>
where
    T: Send + 'static,
    F: FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
{
    let job = move || {
        let mut conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch("PRAGMA foreign_keys = ON;")?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = work(&tx)?;
        tx.commit()?;
        Ok::<_, rusqlite::Error>(value)
    };
    match tokio::task::spawn_blocking(job).await {
        Ok(result) => result.map_err(|e| from_sqlite(&e)),
        Err(e) => Err(AppDbError::Failed(format!("the database task failed: {e}"))),
    }
}

/// Runs a script in a tenant's file in one transaction (for seeding).
pub async fn run_in_tenant_file(path: PathBuf, sql: String) -> Result<(), AppDbError> {
    in_tenant(path, move |tx| tx.execute_batch(&sql)).await
}

pub(super) async fn dashboard(
    path: PathBuf,
    wanted: Option<String>,
) -> Result<Option<Dashboard>, AppDbError> {
    in_tenant(path, move |tx| {
        let user: Option<(i64, String)> = tx
            .query_row(
                "SELECT id, display_name FROM users WHERE ?1 IS NULL OR username = ?1
                  ORDER BY (username = ?1) DESC NULLS LAST, id LIMIT 1",
                [&wanted],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((user_id, display_name)) = user else {
            return Ok(None);
        };
        let online: bool = tx.query_row(
            "INSERT INTO user_statuses (user_id, is_online, last_seen)
             VALUES (?1, 1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
             ON CONFLICT (user_id) DO UPDATE SET is_online = 1, last_seen = excluded.last_seen
             RETURNING is_online",
            [user_id],
            |r| r.get(0),
        )?;
        let mut statement = tx.prepare(
            "SELECT c.title,
                    count(m.id) FILTER (WHERE m.sender_id <> ?1 AND m.sent_at > coalesce(p.last_read_at, ''))
               FROM participants p
               JOIN conversations c ON c.id = p.conversation_id
               LEFT JOIN messages m ON m.conversation_id = c.id
              WHERE p.user_id = ?1
              GROUP BY c.id, c.title
              ORDER BY max(m.sent_at) DESC NULLS LAST, c.id",
        )?;
        let conversations = statement
            .query_map([user_id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<(String, i64)>>>()?;
        Ok(Some(Dashboard {
            display_name,
            online,
            conversations,
        }))
    })
    .await
}

pub(super) async fn create_user(
    path: PathBuf,
    username: &str,
    display_name: &str,
) -> Result<i64, AppDbError> {
    let (username, display_name) = (username.to_owned(), display_name.to_owned());
    in_tenant(path, move |tx| {
        tx.execute(
            "INSERT INTO users (username, display_name) VALUES (?1, ?2)",
            params![username, display_name],
        )?;
        let id = tx.last_insert_rowid();
        tx.execute("INSERT INTO user_statuses (user_id) VALUES (?1)", [id])?;
        Ok(id)
    })
    .await
}
