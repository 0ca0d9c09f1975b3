//! The app's own queries, once per store: the same pages and the same
//! defensive patterns whether tenants are schemas or files.

mod error;
mod postgres;
mod sqlite;

use tenantgate::{backend::sqlite::DataDir, TenantName};

pub use error::AppDbError;
pub use sqlite::run_in_tenant_file;

/// What the messages page shows for the signed-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dashboard {
    /// The user's display name.
    pub display_name: String,
    /// Whether the status row says online (the page view sets it).
    pub online: bool,
    /// Conversation titles with the user's unread count, newest first.
    pub conversations: Vec<(String, i64)>,
}

/// Where the app's tenant data lives.
#[derive(Clone)]
pub enum AppDb {
    /// A pool to the PostgreSQL database holding the tenant schemas.
    Postgres(deadpool_postgres::Pool),
    /// The data folder holding the tenant files.
    Sqlite(DataDir),
}

impl AppDb {
    /// Connects to the store a database URL names (lazily for PostgreSQL).
    pub fn connect(url: &str, pool_size: usize) -> Result<Self, String> {
        match tenantgate::backend::sqlite_folder(url) {
            Some(dir) => Ok(AppDb::Sqlite(DataDir::new(dir))),
            None => postgres::pool(url, pool_size).map(AppDb::Postgres),
        }
    }

    /// Loads the messages page of the user named `wanted` (or the first
    /// user), marking them online with an upsert of their status row, so a
    /// user without one gets one rather than an error. `None` when the
    /// tenant has no users.
    pub async fn dashboard(
        &self,
        tenant: &TenantName,
        wanted: Option<String>,
    ) -> Result<Option<Dashboard>, AppDbError> {
        match self {
            AppDb::Postgres(pool) => postgres::dashboard(pool, tenant, wanted).await,
            AppDb::Sqlite(dir) => sqlite::dashboard(dir.tenant(tenant), wanted).await,
        }
    }

    /// Creates a user and its status row in one transaction: both or neither.
    pub async fn create_user(
        &self,
        tenant: &TenantName,
        username: &str,
        display_name: &str,
    ) -> Result<i64, AppDbError> {
        match self {
            AppDb::Postgres(pool) => {
                postgres::create_user(pool, tenant, username, display_name).await
            }
            AppDb::Sqlite(dir) => {
                sqlite::create_user(dir.tenant(tenant), username, display_name).await
            }
        }
    }
}
