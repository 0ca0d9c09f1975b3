//! The app's queries on PostgreSQL: one schema per tenant, entered with
//! `SET LOCAL search_path` inside each request's transaction.

use tenantgate::TenantName;
use tokio_postgres::{types::Type, GenericClient};

use super::{
    error::{from_postgres, AppDbError},
    Dashboard,
};

/// A pool for the app's own queries.
pub(super) fn pool(url: &str, size: usize) -> Result<deadpool_postgres::Pool, String> {
    let settings = tenantgate::backend::postgres::settings(url).map_err(|e| e.to_string())?;
    let manager = deadpool_postgres::Manager::from_config(
        settings.config,
        settings.tls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    deadpool_postgres::Pool::builder(manager)
        .max_size(size)
        .build()
        .map_err(|e| e.to_string())
}

/// A pooled connection; a pool that cannot connect means the store is
/// unavailable.
async fn checkout(pool: &deadpool_postgres::Pool) -> Result<deadpool_postgres::Object, AppDbError> {
    pool.get().await.map_err(|e| match e {
        deadpool_postgres::PoolError::Backend(e) => from_postgres(&e),
        other => AppDbError::Unavailable(other.to_string()),
    })
}

/// `SET LOCAL search_path` for the request's tenant: inside the
/// transaction, so the pooled connection never carries it further.
async fn enter_tenant(client: &impl GenericClient, tenant: &TenantName) -> Result<(), AppDbError> {
    client
        .batch_execute(&format!(
            "SET LOCAL search_path TO {}, public",
            tenant.quoted()
        ))
        .await
        .map_err(|e| from_postgres(&e))
}

pub(super) async fn dashboard(
    pool: &deadpool_postgres::Pool,
    tenant: &TenantName,
    wanted: Option<String>,
) -> Result<Option<Dashboard>, AppDbError> {
    let err = |e: tokio_postgres::Error| from_postgres(&e);
    let mut client = checkout(pool).await?;
    let tx = client.transaction().await.map_err(err)?;
    enter_tenant(&*tx, tenant).await?;
    let user = tx
        .query_typed(
            "SELECT id, display_name FROM users WHERE $1::text IS NULL OR username = $1 ORDER BY (username = $1) DESC NULLS LAST, id LIMIT 1",
            &[(&wanted, Type::TEXT)],
        )
        .await
        .map_err(err)?;
    let Some(user) = user.first() else {
        tx.commit().await.map_err(err)?;
        return Ok(None);
    };
    let (user_id, display_name): (i64, String) = (user.get(0), user.get(1));
    let status = tx
        .query_typed(
            "INSERT INTO user_statuses (user_id, is_online, last_seen) VALUES ($1, true, now())
             ON CONFLICT (user_id) DO UPDATE SET is_online = true, last_seen = EXCLUDED.last_seen
             RETURNING is_online",
            &[(&user_id, Type::INT8)],
        )
        .await
        .map_err(err)?;
    let online: bool = status[0].get(0);
    let conversations = tx
        .query_typed(
            "SELECT c.title,
                    count(m.id) FILTER (WHERE m.sender_id <> $1 AND m.sent_at > coalesce(p.last_read_at, '-infinity'))
               FROM participants p
               JOIN conversations c ON c.id = p.conversation_id
               LEFT JOIN messages m ON m.conversation_id = c.id
              WHERE p.user_id = $1
              GROUP BY c.id, c.title
              ORDER BY max(m.sent_at) DESC NULLS LAST, c.id",
            &[(&user_id, Type::INT8)],
        )
        .await
        .map_err(err)?;
    tx.commit().await.map_err(err)?;
    Ok(Some(Dashboard {
        display_name,
        online,
        conversations: conversations.iter().map(|r| (r.get(0), r.get(1))).collect(),
    }))
}

pub(super) async fn create_user(
    pool: &deadpool_postgres::Pool,
    tenant: &TenantName,
    username: &str,
    display_name: &str,
) -> Result<i64, AppDbError> {
    let err = |e: tokio_postgres::Error| from_postgres(&e);
    let mut client = checkout(pool).await?;
    let tx = client.transaction().await.map_err(err)?;
    enter_tenant(&*tx, tenant).await?;
    let row = tx
        .query_typed(
            "WITH u AS (INSERT INTO users (username, display_name) VALUES ($1, $2) RETURNING id)
             INSERT INTO user_statuses (user_id) SELECT id FROM u RETURNING user_id",
            &[(&username, Type::TEXT), (&display_name, Type::TEXT)],
        )
        .await
        .map_err(err)?;
    tx.commit().await.map_err(err)?;
    Ok(row[0].get(0))
}
