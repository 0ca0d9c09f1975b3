//! The messages app: the reference tenant application that shows
//! tenantgate at work.
//!
//! It ships its own migrations (embedded at build time, so the running code
//! and its required set cannot disagree) and shows the three defensive
//! patterns from the incident: creating a user creates its status row in the
//! same transaction; the messages view reads the status with an upsert, so a
//! missing row is created rather than a 500; and the `user-statuses`
//! backfill creates the rows that older code never wrote.

mod embedded;
mod views;

pub use embedded::{folder, required_set};
pub use views::{create_user, router, AppState};

/// Connects a pool for the app's own queries.
pub fn pool(url: &str, size: usize) -> Result<deadpool_postgres::Pool, String> {
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| format!("invalid database URL: {e}"))?;
    let manager = deadpool_postgres::Manager::from_config(
        config,
        tenantgate::backend::postgres::make_tls(),
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    deadpool_postgres::Pool::builder(manager)
        .max_size(size)
        .build()
        .map_err(|e| e.to_string())
}
